"""The ensemble a distilled student learns from: the AST members' weighted soft vote and, with `distill
--spectrum-forest`, the spectrum forests voting beside them at their share, as `predict` and `export` vote,
so the student learns the ensemble that is deployed (off by default: on the 2-fold sessions it cost the
student 0.066 balanced accuracy, benchmarks/README.md).

`Teachers.vote` scores un-normalized fbank once (`--teaching fixed`); `TeacherVote` scores every augmented
batch as the student sees it (`--teaching consistent`, function matching).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..features import FeatureSettings
from .forest import ForestMember, vote_weights
from .members import Member, ensemble_labels, score_features
from .onnx_graphs import EnsembleGraph
from .votes import soft_vote

SMALLEST_PROBABILITY = 1e-12  # floor before the log: a float32 softmax can underflow to 0


@dataclass
class Teachers:
    members: list[Member]
    weights: np.ndarray  # the members' soft-vote weights, summing to 1
    forests: list[ForestMember] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return ensemble_labels(self.members)

    def with_forests(self, member_vote: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The members' vote (items, classes) joined by the forests' on the same un-normalized fbank, weighed
        by `forest.vote_weights`: (1 - share) * members + share * mean of the forests."""
        if not self.forests:
            return member_vote
        soft, _ = vote_weights(np.ones(1), self.forests)
        forests = np.stack([forest.probabilities(raw, self.labels) for forest in self.forests])
        return soft[0] * member_vote + np.tensordot(soft[1:], forests, axes=1)

    def vote(self, raw: np.ndarray, precision: str, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """The soft vote (items, classes) on un-normalized fbank (items, frames, mel)."""
        tables = {self.members[0].features.extraction_key(): raw}
        member_vote = soft_vote(score_features(self.members, tables, precision, batch_size, progress=progress),
                                self.weights)
        return self.with_forests(member_vote, raw)


class TeacherVote:
    """The teachers' soft vote at temperature T on a batch as the student sees it (normalized with the
    student's statistics, augmented): `EnsembleGraph`, the vote export puts in its graphs, gives each
    member the batch in its own normalization, and the forests take the un-normalized fbank as they do in
    `predict`. Run inside the training step, under its autocast, which also serves members already cast to
    bf16. With `int8` each member runs its int8 onnxruntime graph (`member.scorer`, picked by
    `mosquito_ast.inference.int8.attach`), as `evaluate --precision int8` does. A plain object, not a
    submodule, so the teachers neither train nor enter the student's checkpoints."""

    def __init__(self, teachers: Teachers, student: FeatureSettings, temperature: float, int8: bool = False) -> None:
        self.teachers, self.student, self.temperature = teachers, student, temperature
        self.graph = None if int8 else EnsembleGraph(teachers.members, teachers.weights).eval()

    @torch.no_grad()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        raw = features.float() * (2 * self.student.norm_std) + self.student.norm_mean
        if self.graph is None:
            vote = torch.from_numpy(self.teachers.vote(raw.cpu().numpy(), "int8", len(raw)))
        else:
            vote = self.graph.to(features.device)(raw)
            if self.teachers.forests:
                vote = torch.from_numpy(self.teachers.with_forests(vote.float().cpu().numpy(), raw.cpu().numpy()))
        vote = vote.to(features.device).float()
        return torch.softmax(torch.log(vote.clamp_min(SMALLEST_PROBABILITY)) / self.temperature, dim=-1)


def forest_record(forests: Sequence[ForestMember]) -> list[dict]:
    """What a student's config records of the forests among its teachers."""
    return [{"name": f.name, "folder": str(f.folder), "vote_share": f.share} for f in forests]
