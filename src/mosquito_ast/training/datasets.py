"""Labeled clip sets as feature tensors, and the datamodule that batches them per epoch."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import lightning as L
import numpy as np
import torch

from mosquito_ast_lite.audio import AudioError

from ..data import UNLABELLED, Sample, discover, discover_unlabelled, label_names
from ..features import FeatureSettings, check_bad_files, compute_features, open_cache
from ..param_groups import DataParams, ReadParams
from ..params import ConfigError


@dataclass
class ClipSet:
    """The readable clips of a data set with their un-normalized features, and the skipped files."""

    samples: list[Sample]
    features: np.ndarray
    bad: list[AudioError] = field(default_factory=list)

    def targets(self, labels: list[str]) -> torch.Tensor:
        """Class ids in `labels` order; -1 for an unlabelled clip."""
        index = {name: i for i, name in enumerate(labels)} | {UNLABELLED: -1}
        return torch.tensor([index[s.label] for s in self.samples], dtype=torch.long)

    def groups(self) -> list[str]:
        return sorted({s.group for s in self.samples})

    def group_ids(self) -> torch.Tensor:
        """Each clip's recording (group) as an index into `groups()`."""
        index = {name: i for i, name in enumerate(self.groups())}
        return torch.tensor([index[s.group] for s in self.samples], dtype=torch.long)


def feature_settings(params: DataParams) -> FeatureSettings:
    try:
        return FeatureSettings(sample_rate=params.sample_rate, clip_seconds=params.clip_seconds,
                               num_mel_bins=params.num_mel_bins, window_ms=params.window_ms, hop_ms=params.hop_ms,
                               max_frequency=params.max_frequency)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_clip_set(source: str | Path, params: ReadParams, settings: FeatureSettings,
                  progress: bool = True, unlabelled: bool = False) -> ClipSet:
    """The readable clips of `source` and their features (`unlabelled`: manifest rows may lack a label)."""
    samples = discover(source, params.group_by, unlabelled)
    table = compute_features([s.path for s in samples], settings, open_cache(params.cache_dir, params.no_cache),
                             num_workers=params.num_workers, description=f"features {Path(source).name}",
                             progress=progress)
    check_bad_files(source, table.bad, len(samples), params.max_bad_fraction)
    readable = set(table.paths)
    kept = [s for s in samples if s.path in readable]
    lost = sorted(set(label_names(samples)) - set(label_names(kept)) - {UNLABELLED})
    if lost:
        print(f"warning: {source}: every file of class(es) {', '.join(lost)} was skipped as unusable, so the "
              "data set has no such class", file=sys.stderr)
    return ClipSet(kept, table.features, table.bad)


def load_unlabelled(source: str | Path, params: ReadParams, settings: FeatureSettings,
                    progress: bool = True) -> tuple[list[str], np.ndarray]:
    """(readable paths, un-normalized features) of every audio file of `source`, a folder or a manifest;
    bad files as in `load_clip_set`. `params`: ReadParams' fields (pretrain's parameters have them too)."""
    paths = discover_unlabelled(source)
    table = compute_features(paths, settings, open_cache(params.cache_dir, params.no_cache),
                             num_workers=params.num_workers, description=f"features {Path(source).name}",
                             progress=progress)
    check_bad_files(source, table.bad, len(paths), params.max_bad_fraction)
    return table.paths, table.features


def validation_set(source: str | Path | None, params: ReadParams, settings: FeatureSettings, progress: bool,
                   like: ClipSet) -> ClipSet:
    """The validation clips of `source`, or none (features shaped as `like`'s) without a validation folder."""
    if source:
        return load_clip_set(source, params, settings, progress)
    return ClipSet([], np.zeros((0, *like.features.shape[1:]), np.float32))


class EpochShuffle(torch.utils.data.Sampler):
    """A shuffled order that depends on `seed` alone, the same at every `iter()`. Lightning 2.6 iterates a
    freshly loaded training loader twice in an uninterrupted epoch (after the first) but once in the
    first epoch of a resumed run, so a shuffle drawn from a shared generator gave a resumed run other
    batches than the uninterrupted one."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed)).tolist())


class ClipDataModule(L.LightningDataModule):
    """Batches of in-memory features; the training batch size follows a per-epoch schedule, and
    shuffling is seeded per epoch so a resumed run sees the same batches as an uninterrupted one."""

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
                 batch_size_for: Callable[[int], int], seed: int, train_groups: torch.Tensor | None = None,
                 eval_batch_size: int = 64) -> None:
        super().__init__()
        # with `train_groups`, training batches are (features, targets, group ids)
        extra = () if train_groups is None else (train_groups,)
        self.train_set = torch.utils.data.TensorDataset(train_x, train_y, *extra)
        self.val_set = torch.utils.data.TensorDataset(val_x, val_y)
        self.batch_size_for = batch_size_for
        self.seed = seed
        self.eval_batch_size = eval_batch_size

    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        epoch = self.current_epoch()
        seed = self.seed * 100_003 + epoch
        # the generator only seeds the loader's iterators, so they never draw from the global RNG either
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.batch_size_for(epoch),
                                           sampler=EpochShuffle(len(self.train_set), seed),
                                           generator=torch.Generator().manual_seed(seed))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.eval_batch_size)
