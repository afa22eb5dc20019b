"""The Python API for notebooks: an ensemble loaded once that predicts and evaluates as the `predict`
and `evaluate` commands do (same windows, features, soft vote and metrics: their code, called here).

    from mosquito_ast import Ensemble

    ensemble = Ensemble.load("runs/best")            # a folder of members, one member, or a list of folders
    table = ensemble.predict(["clip.wav", "recordings/"])  # path x (label, confidence, one column per class)
    evaluation = ensemble.evaluate("data/validation")    # the EnsembleEvaluation `evaluate` computes
    ensemble.members[0].save_pretrained("hf/member")     # a transformers folder
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mosquito_ast_lite.runtime import expand_inputs

from .checkpoints import model_folders
from .checkpoints.transformers_format import save_for_transformers, write_transformers_folder
from .config import EvaluateParams, PredictParams
from .commands.evaluate import evaluate
from .inference.forest import ForestMember, load_forests
from .inference.members import Member, ensemble_labels, load_members
from .evaluation.results import EnsembleEvaluation
from .commands.predict import check_one_window_length, predict_files

__all__ = ["Ensemble", "EnsembleMember", "save_for_transformers"]

Paths = str | Path | Sequence[str | Path]


class EnsembleMember(Member):
    """A loaded member (`name`, `folder`, `model`, `config`, `features`) that can be written for transformers."""

    def save_pretrained(self, output_dir: str | Path, overwrite: bool = False) -> Path:
        """Write this member as a transformers folder (`checkpoints.transformers_format`): load it with
        `AutoModelForAudioClassification.from_pretrained(output_dir, trust_remote_code=True)` for the
        member's own probabilities.

        >>> ensemble.members[0].save_pretrained("hf/member")  # doctest: +SKIP
        """
        return write_transformers_folder(self.model, self.features, output_dir, overwrite)


class Ensemble:
    """The members of one or several folders, with the class order of every table they return.

    >>> ensemble = Ensemble.load(["sweep-a/best", "sweep-b/best"])  # doctest: +SKIP
    >>> ensemble.labels, [member.name for member in ensemble.members]  # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Member], models: Paths, old_labels: Sequence[str] | None = None,
                 forests: Sequence[ForestMember] = ()) -> None:
        self.members = [EnsembleMember(**{f.name: getattr(m, f.name) for f in fields(m)}) for m in members]
        self.forests = list(forests)  # the spectrum forests (`ensemble.forest`), voting beside the members
        self.models = [str(folder) for folder in model_folders(models)]
        self.old_labels = list(old_labels) if old_labels else None

    @classmethod
    def load(cls, models: Paths, old_labels: Sequence[str] | None = None) -> Ensemble:
        """Every member and spectrum forest under `models` (a folder searched recursively, or a list of them),
        as `--models` finds them; `old_labels` are the old id order old-notebook members need (`--labels`).

        >>> ensemble = Ensemble.load("runs/best")  # doctest: +SKIP
        """
        members = load_members(models, old_labels)
        return cls(members, models, old_labels, load_forests(models, ensemble_labels(members)))

    @property
    def labels(self) -> list[str]:
        """Class names, in the column order of `predict`'s probabilities."""
        return ensemble_labels(self.members)

    def predict(self, paths: Paths, **options: Any) -> pd.DataFrame:
        """The soft vote per file, as `predict` writes it to its per-file CSV: index `path`, columns `label`,
        `confidence` and one probability per class (recordings longer than a clip are windowed and pooled).
        Folders are searched for audio; unreadable files are left out with a warning. `options` are
        `predict`'s parameters (hop_seconds, weights, abstain_below, batch_size, precision, ...). Members
        are cast once to the precision of their first use; for another one, load the ensemble again.

        >>> ensemble.predict("recordings/").sort_values("confidence")  # doctest: +SKIP
        """
        inputs = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
        files = expand_inputs(inputs)
        if not files:
            raise FileNotFoundError(f"no audio files found in {', '.join(inputs) or 'an empty list of paths'}")
        params = PredictParams(inputs=inputs, models=self.models, labels=self.old_labels,
                               **{"progress": False, **options})
        forests = self.forests if params.spectrum_forest else []
        check_one_window_length([*self.members, *forests])
        table = predict_files(self.members, files, params, forests).files
        return table[table["error"] == ""].set_index("path")[["label", "confidence", *self.labels]]

    def evaluate(self, data_dir: str | Path, **options: Any) -> EnsembleEvaluation:
        """Members, votes and baselines scored on the labelled clips in `data_dir` (a folder-per-class tree
        or a manifest CSV), exactly as `evaluate` computes them; `options` are its parameters (weights,
        bootstrap, group_by, ...). `report.write_outputs(result)` writes the command's files.

        >>> ensemble.evaluate("data/validation").summary  # doctest: +SKIP
        """
        params = EvaluateParams(models=self.models, data=str(data_dir), labels=self.old_labels,
                                **{"progress": False, **options})
        return evaluate(params, self.members, self.forests if params.spectrum_forest else [])
