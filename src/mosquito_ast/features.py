"""Kaldi-compatible log-mel fbank features, their normalization, and a shared on-disk cache.

Features are computed with transformers' audio utilities exactly as `ASTFeatureExtractor` computes
them at its defaults (16 kHz, 25 ms window, 10 ms hop, 128 mel bins up to 8 kHz), so they match what
AST checkpoints were trained on; window and hop are set in time and the mel band can stop below
Nyquist, so any sample rate gives the same frames per second and no constant bins. The cache stores un-normalized fbank keyed by file content and extraction settings, so
every command (train, pretrain, evaluate, predict) and every sweep member reuses one computation.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import platformdirs
import torch
import transformers
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from mosquito_ast_lite.audio import AudioError, cut_short, cut_short_warning, load_clip
from mosquito_ast_lite.io import atomic_path

from .data import DatasetError

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
KALDI_MEL_FLOOR = 1.192092955078125e-07
LOWEST_MEL_HZ = 20.0
# Raise when this module's fbank output changes, so caches filled by an earlier computation are not reused.
FBANK_REVISION = 2
COMPUTATION_KEY = f"fbank-r{FBANK_REVISION}-transformers{transformers.__version__}"


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
        if self.hop_ms <= 0 or self.window_ms < self.hop_ms:
            raise ValueError(f"need 0 < hop_ms <= window_ms, got hop {self.hop_ms} ms, window {self.window_ms} ms")
        if not 0 <= self.max_frequency <= self.sample_rate / 2 or 0 < self.max_frequency <= LOWEST_MEL_HZ:
            raise ValueError(f"max_frequency must be 0 (Nyquist) or between {LOWEST_MEL_HZ:g} Hz and "
                             f"{self.sample_rate / 2:g} Hz, got {self.max_frequency}")
        if self.max_length == 0:
            frames = int(round(self.clip_seconds * 1000 / self.hop_ms))
            object.__setattr__(self, "max_length", frames)
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


@dataclass(frozen=True)
class FbankExtractor:
    """Kaldi-style fbank (povey-free Hann window, pre-emphasis 0.97, DC removal, power spectrum, Kaldi mel
    scale), the numpy path of `ASTFeatureExtractor` with window and hop in milliseconds."""

    settings: FeatureSettings
    frame_length: int
    hop_length: int
    fft_length: int
    window: np.ndarray
    mel_filters: np.ndarray

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        frames, bins = self.settings.max_length, self.settings.num_mel_bins
        wave = np.squeeze(wave)
        if len(wave) < self.frame_length:
            wave = np.pad(wave, (0, self.frame_length - len(wave)))
        log_mel = spectrogram(wave, self.window, frame_length=self.frame_length, hop_length=self.hop_length,
                              fft_length=self.fft_length, power=2.0, center=False, preemphasis=0.97,
                              mel_filters=self.mel_filters, log_mel="log", mel_floor=KALDI_MEL_FLOOR,
                              remove_dc_offset=True).T
        out = np.zeros((frames, bins), np.float32)
        kept = min(frames, len(log_mel))
        out[:kept] = log_mel[:kept]
        return out


def make_extractor(settings: FeatureSettings) -> FbankExtractor:
    frame_length = int(round(settings.sample_rate * settings.window_ms / 1000))
    hop_length = max(1, int(round(settings.sample_rate * settings.hop_ms / 1000)))
    fft_length = 1 << (frame_length - 1).bit_length()
    with warnings.catch_warnings():  # 128 Kaldi mel bins at 16 kHz leave one empty filter, as in AST itself
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        mel_filters = mel_filter_bank(num_frequency_bins=fft_length // 2 + 1, num_mel_filters=settings.num_mel_bins,
                                      min_frequency=LOWEST_MEL_HZ, max_frequency=settings.top_frequency,
                                      sampling_rate=settings.sample_rate, norm=None, mel_scale="kaldi",
                                      triangularize_in_mel_space=True)
    return FbankExtractor(settings, frame_length, hop_length, fft_length,
                          window_function(frame_length, "hann", periodic=False), mel_filters)


def fbank(wave: np.ndarray, settings: FeatureSettings, extractor: FbankExtractor | None = None) -> np.ndarray:
    """Un-normalized log-mel fbank of one clip, padded or cut to `max_length` frames: (T, mel)."""
    return (extractor or make_extractor(settings))(wave)


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
        """Keyed by the file's content, the settings, and the code that computes the fbank (this module's
        revision and the transformers release whose audio utilities it calls)."""
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

