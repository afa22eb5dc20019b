"""Kaldi-compatible log-mel fbank features, their normalization, and a shared on-disk cache.

The fbank is the field runtime's (`mosquito_ast_lite.fbank`, numpy), so a member and its export see the same
numbers; it equals `ASTFeatureExtractor`'s at its defaults (16 kHz, 25 ms window, 10 ms hop, 128 mel bins up to
8 kHz) to 1e-5, so features match what AST checkpoints were trained on. Window and hop are set in time and the
mel band can stop below Nyquist, so any sample rate gives the same frames per second and no constant bins. The
cache stores un-normalized fbank keyed by file content and extraction settings, so every command (train,
pretrain, evaluate, predict) and every sweep member reuses one computation.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import platformdirs
import torch

from mosquito_ast_lite.audio import AudioError, cut_short, cut_short_warning, load_clip
from mosquito_ast_lite.fbank import Fbank, FbankSettings
from mosquito_ast_lite.io import atomic_path

from .data import DatasetError

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
# Raise when the fbank's output changes, so caches filled by an earlier computation are not reused
# (3: the field runtime's numpy fbank, `mosquito_ast_lite.fbank`, replaced transformers' audio utilities).
FBANK_REVISION = 3
COMPUTATION_KEY = f"fbank-r{FBANK_REVISION}"


@dataclass(frozen=True)
class FeatureSettings:
    """Everything needed to turn a file into model input; stored in every member's config."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    num_mel_bins: int = 128
    max_length: int = 0  # frames fed to the model; 0 = the frames of one clip (100 for 1 s)
    window_ms: float = 25.0
    hop_ms: float = 10.0
    max_frequency: float = 0.0  # top of the mel band in Hz; 0 = Nyquist
    norm_mean: float = AUDIOSET_MEAN
    norm_std: float = AUDIOSET_STD

    def __post_init__(self) -> None:
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if self.max_length == 0 and self.hop_ms > 0:
            frames = int(round(self.clip_seconds * 1000 / self.hop_ms))
            object.__setattr__(self, "max_length", frames)
        fbank_settings(self)  # the runtime's checks of window, hop and band
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

    @property
    def label(self) -> str:
        """How progress bars and messages name a feature setting: "16 kHz, 1 s clips" plus what differs
        from AST's."""
        text = f"{self.sample_rate / 1000:g} kHz, {self.clip_seconds:g} s clips"
        if self.num_mel_bins != 128:
            text += f", {self.num_mel_bins} mel bins"
        if (self.window_ms, self.hop_ms) != (25.0, 10.0):
            text += f", {self.window_ms:g}/{self.hop_ms:g} ms"
        return text + (f", up to {self.max_frequency:g} Hz" if self.max_frequency else "")

    @property
    def top_frequency(self) -> float:
        return self.max_frequency or self.sample_rate / 2

    def extraction_key(self) -> str:
        """Settings that change the un-normalized fbank (normalization does not). Window, hop and band
        appear only when they differ from AST's, so caches and members of earlier versions keep their key."""
        key = f"sr{self.sample_rate}_clip{self.clip_seconds:g}_mel{self.num_mel_bins}_len{self.max_length}"
        if (self.window_ms, self.hop_ms) != (25.0, 10.0):
            key += f"_win{self.window_ms:g}_hop{self.hop_ms:g}"
        if self.max_frequency:
            key += f"_fmax{self.max_frequency:g}"
        return key


def fbank_settings(settings: FeatureSettings) -> FbankSettings:
    """The field runtime's view of `settings`: what the fbank needs (normalization stays with the member)."""
    return FbankSettings.from_dict(settings.to_dict())


def make_extractor(settings: FeatureSettings) -> Fbank:
    """The field runtime's fbank for `settings`, built once and reused for many clips."""
    return Fbank(fbank_settings(settings))


def fbank(wave: np.ndarray, settings: FeatureSettings, extractor: Fbank | None = None) -> np.ndarray:
    """Un-normalized log-mel fbank of one clip, padded or cut to `max_length` frames: (T, mel). For a batch
    of clips (clips, samples), call `make_extractor(settings)` on it."""
    return (extractor or make_extractor(settings))(np.squeeze(wave))


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
        """Keyed by the file's content, the settings, and the revision of the code that computes the fbank."""
        digest = file_digest(path)
        return self.root / COMPUTATION_KEY / settings.extraction_key() / digest[:2] / f"{digest}.npy"

    def load(self, entry: Path, settings: FeatureSettings | None = None) -> np.ndarray | None:
        """The stored features, or None (computed anew and stored again) when the entry is missing, empty,
        unreadable, of another shape than `settings` give, or not finite."""
        try:
            features = np.load(entry)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None
        if settings is not None and features.shape != (settings.max_length, settings.num_mel_bins):
            return None
        return features if np.isfinite(features).all() else None

    def store(self, entry: Path, features: np.ndarray) -> None:
        with atomic_path(entry, suffix=".npy") as temporary:
            np.save(temporary, features)


def open_cache(cache_dir: str | Path | None, no_cache: bool = False) -> FeatureCache | None:
    """The cache a command uses: `cache_dir` (default: the user cache directory), or none."""
    return None if no_cache else FeatureCache(cache_dir)


def check_bad_files(source: str | Path, bad: list[AudioError], total: int, max_fraction: float) -> None:
    """Report skipped files; refuse when more than `max_fraction` of the data set is bad."""
    if not bad:
        return
    listing = "\n".join(f"  {error}" for error in bad)
    if len(bad) > max_fraction * total:
        raise DatasetError(
            f"{source}: {len(bad)} of {total} files are unusable (allowed: {max_fraction:.1%}, "
            f"raise --max-bad-fraction to skip them):\n{listing}"
        )
    print(f"warning: {source}: skipped {len(bad)} of {total} unusable files:\n{listing}")


@dataclass
class FeatureTable:
    """Un-normalized features of many files, with the files that could not be read."""

    paths: list[str]
    features: np.ndarray  # (N, T, mel) for the readable files, in `paths` order
    bad: list[AudioError] = field(default_factory=list)


@dataclass
class _Decoded:
    """One file's features, or its problem; `cut_short` and `uncached` are problems of the file or the
    cache that did not cost the features."""

    index: int
    features: np.ndarray | None = None
    error: AudioError | None = None
    cut_short: str | None = None
    uncached: str | None = None


class _FileFeatures(torch.utils.data.Dataset):
    """One file's features per item, so DataLoader workers decode in parallel."""

    def __init__(self, paths: Sequence[str], settings: FeatureSettings, cache: FeatureCache | None) -> None:
        self.paths = list(paths)
        self.settings = settings
        self.cache = cache
        self.extractor = make_extractor(settings)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Decoded:
        path = self.paths[index]
        try:
            entry = self.cache.entry(path, self.settings) if self.cache else None
            cached = self.cache.load(entry, self.settings) if entry is not None else None
            if cached is not None:
                return _Decoded(index, cached, cut_short=cut_short(path))
            wave = load_clip(path, self.settings.sample_rate, self.settings.clip_seconds)
        except AudioError as error:
            return _Decoded(index, error=error)
        except OSError as error:
            return _Decoded(index, error=AudioError(path, f"cannot read file ({error})"))
        features = fbank(wave, self.settings, self.extractor)
        return _Decoded(index, features, cut_short=cut_short(path), uncached=self._store(entry, features))

    def _store(self, entry: Path | None, features: np.ndarray) -> str | None:
        """None, or why the entry could not be written: a read-only or full cache costs only the caching."""
        if entry is None:
            return None
        try:
            self.cache.store(entry, features)
        except OSError as error:
            return f"{error.strerror or error} ({entry.parent})"
        return None


def _one_item(item: _Decoded) -> _Decoded:
    """The DataLoader's collate for items that are already whole (a named function, so worker processes
    can be spawned on macOS and Windows, where a lambda cannot be pickled)."""
    return item


def _report_notes(items: list[_Decoded], paths: Sequence[str]) -> None:
    """One warning per kind of problem that did not cost a file, counted, with the first case named."""
    uncached = [item.uncached for item in items if item.uncached]
    if uncached:
        print(f"warning: feature cache not written for {len(uncached)} of {len(paths)} files ({uncached[0]}); "
              "their features were computed and used, and will be computed again next time "
              "(free space, make the folder writable, or pass --cache-dir / --no-cache)", file=sys.stderr)
    cut = [(paths[item.index], item.cut_short) for item in items if item.cut_short]
    if cut:
        print(cut_short_warning(cut, len(paths), "the audio present is used, zero-padded to the clip length"),
              file=sys.stderr)


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
        dataset, batch_size=None, num_workers=num_workers, collate_fn=_one_item
    )
    results: dict[int, np.ndarray] = {}
    bad: list[AudioError] = []
    noted: list[_Decoded] = []
    for item in tqdm(loader, total=len(paths), desc=description, disable=not progress, leave=False):
        if item.error is not None:
            bad.append(item.error)
        else:
            results[item.index] = np.asarray(item.features)
        if item.cut_short or item.uncached:
            noted.append(item)
    _report_notes(noted, paths)
    good = sorted(results)
    shape = (0, settings.max_length, settings.num_mel_bins)
    stacked = np.stack([results[i] for i in good]) if good else np.zeros(shape, np.float32)
    return FeatureTable(paths=[paths[i] for i in good], features=stacked, bad=bad)

