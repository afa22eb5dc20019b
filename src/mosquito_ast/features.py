"""Kaldi-compatible log-mel fbank features, their normalization, and a shared on-disk cache.

Features come from transformers' `ASTFeatureExtractor`, so they match what AST checkpoints were
trained on. The cache stores un-normalized fbank keyed by file content and extraction settings, so
every command (train, pretrain, evaluate, predict) and every sweep member reuses one computation.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import platformdirs
import torch
from transformers import ASTFeatureExtractor

from .audio import AudioError, load_clip
from .io import atomic_path

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
FRAME_SHIFT_MS = 10


@dataclass(frozen=True)
class FeatureSettings:
    """Everything needed to turn a file into model input; stored in every member's config."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    num_mel_bins: int = 128
    max_length: int = 0  # frames fed to the model; 0 = the frames of one clip (100 for 1 s)
    norm_mean: float = AUDIOSET_MEAN
    norm_std: float = AUDIOSET_STD

    def __post_init__(self) -> None:
        if self.max_length == 0:
            frames = int(round(self.clip_seconds * 1000 / FRAME_SHIFT_MS))
            object.__setattr__(self, "max_length", frames)
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.norm_std <= 0:
            raise ValueError(f"norm_std must be positive, got {self.norm_std}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureSettings":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)

    def with_stats(self, mean: float, std: float) -> "FeatureSettings":
        return FeatureSettings(**{**self.to_dict(), "norm_mean": float(mean), "norm_std": float(std)})

    def extraction_key(self) -> str:
        """Settings that change the un-normalized fbank (normalization does not)."""
        return f"sr{self.sample_rate}_clip{self.clip_seconds:g}_mel{self.num_mel_bins}_len{self.max_length}"


def make_extractor(settings: FeatureSettings) -> ASTFeatureExtractor:
    with warnings.catch_warnings():  # 128 Kaldi mel bins at 16 kHz leave one empty filter, as in AST itself
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        return ASTFeatureExtractor(
            sampling_rate=settings.sample_rate,
            num_mel_bins=settings.num_mel_bins,
            max_length=settings.max_length,
            do_normalize=False,
        )


def fbank(wave: np.ndarray, settings: FeatureSettings, extractor: ASTFeatureExtractor | None = None) -> np.ndarray:
    """Un-normalized log-mel fbank of one clip, padded or cut to `max_length` frames: (T, mel)."""
    extractor = extractor or make_extractor(settings)
    return extractor._extract_fbank_features(wave, settings.max_length).astype(np.float32)


def normalize(features: np.ndarray | torch.Tensor, settings: FeatureSettings):
    """AST's normalization: (x - mean) / (2 * std)."""
    return (features - settings.norm_mean) / (2 * settings.norm_std)


def dataset_stats(features: np.ndarray) -> tuple[float, float]:
    """Mean and std of un-normalized fbank over a training set (for `--norm-stats dataset`)."""
    return float(features.mean()), float(features.std())


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOSQUITO_AST_CACHE", platformdirs.user_cache_dir("mosquito-ast")))


def file_digest(path: str | Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FeatureCache:
    """Content-addressed `.npy` store; entries are written atomically so processes can share it."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, path: str | Path, settings: FeatureSettings) -> Path:
        digest = file_digest(path)
        return self.root / settings.extraction_key() / digest[:2] / f"{digest}.npy"

    def load(self, entry: Path) -> np.ndarray | None:
        try:
            return np.load(entry)
        except (FileNotFoundError, ValueError, OSError):
            return None

    def store(self, entry: Path, features: np.ndarray) -> None:
        with atomic_path(entry, suffix=".npy") as temporary:
            np.save(temporary, features)


@dataclass
class FeatureTable:
    """Un-normalized features of many files, with the files that could not be read."""

    paths: list[str]
    features: np.ndarray  # (N, T, mel) for the readable files, in `paths` order
    bad: list[AudioError] = field(default_factory=list)


class _FileFeatures(torch.utils.data.Dataset):
    """One file's features per item, so DataLoader workers decode in parallel."""

    def __init__(self, paths: Sequence[str], settings: FeatureSettings, cache: FeatureCache | None) -> None:
        self.paths = list(paths)
        self.settings = settings
        self.cache = cache
        self.extractor = make_extractor(settings)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = self.paths[index]
        try:
            entry = self.cache.entry(path, self.settings) if self.cache else None
            cached = self.cache.load(entry) if entry is not None else None
            if cached is not None:
                return index, cached, None
            wave = load_clip(path, self.settings.sample_rate, self.settings.clip_seconds)
            features = fbank(wave, self.settings, self.extractor)
            if entry is not None:
                self.cache.store(entry, features)
            return index, features, None
        except AudioError as error:
            return index, None, error
        except OSError as error:
            return index, None, AudioError(path, f"cannot read file ({error})")


def compute_features(
    paths: Sequence[str | Path],
    settings: FeatureSettings,
    cache: FeatureCache | None = None,
    num_workers: int = 0,
    description: str = "features",
    progress: bool = True,
) -> FeatureTable:
    """Decode and featurize every file once (from the cache when possible); bad files are collected."""
    from tqdm.auto import tqdm

    paths = [str(p) for p in paths]
    dataset = _FileFeatures(paths, settings, cache)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=num_workers, collate_fn=lambda item: item
    )
    results: dict[int, np.ndarray] = {}
    bad: list[AudioError] = []
    for index, features, error in tqdm(loader, total=len(paths), desc=description, disable=not progress, leave=False):
        if error is not None:
            bad.append(error)
        else:
            results[index] = np.asarray(features)
    good = sorted(results)
    shape = (0, settings.max_length, settings.num_mel_bins)
    stacked = np.stack([results[i] for i in good]) if good else np.zeros(shape, np.float32)
    return FeatureTable(paths=[paths[i] for i in good], features=stacked, bad=bad)

