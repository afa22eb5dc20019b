"""The leakage audit of a train side against a held-out side (validation or test): recordings on both
sides, files with the same audio.

A split made elsewhere (by hand, by another tool) is checked here before its scores are trusted; with two
sessions per species a split has no validation side, and train is checked against test.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm.auto import tqdm

from mosquito_ast_lite.audio import AudioError, load_audio

from .data import discover

HELD_OUT_SIDES = ("validation", "test")


def held_out_side(path: str | Path) -> str:
    """The name the held-out side is reported by: test for a folder or manifest named test, else validation."""
    return "test" if Path(path).stem.lower() == "test" else "validation"


@dataclass
class LeakageReport:
    """What a train side and a held-out side (validation or test) share: recording groups, and files with
    identical audio."""

    train_files: int
    held_out_files: int
    shared_groups: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> clips per side
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (train path, held-out path)
    near_duplicates: list[tuple[str, str, float]] = field(default_factory=list)  # (train, held-out, similarity)
    held_out: str = "validation"  # one of HELD_OUT_SIDES

    @property
    def leaks(self) -> bool:
        return bool(self.shared_groups or self.duplicates or self.near_duplicates)

    def summary(self) -> str:
        side = self.held_out
        lines = [f"train: {self.train_files} files, {side}: {self.held_out_files} files"]
        lines.append(f"recording groups on both sides: {len(self.shared_groups)}")
        lines += [f"  {group}: {n['train']} train, {n[side]} {side} clips"
                  for group, n in sorted(self.shared_groups.items())]
        lines.append(f"files with identical audio on both sides: {len(self.duplicates)}")
        lines += [f"  {a} == {b}" for a, b in self.duplicates]
        lines.append(f"files with the same audio re-encoded (lossy, resampled or louder) on both sides: "
                     f"{len(self.near_duplicates)}")
        lines += [f"  {a} ~ {b} (waveform correlation {similarity:.3f})" for a, b, similarity in self.near_duplicates]
        lines.append("LEAKAGE FOUND" if self.leaks else "no leakage found")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"train_files": self.train_files, f"{self.held_out}_files": self.held_out_files,
                "shared_groups": self.shared_groups, "duplicates": [list(d) for d in self.duplicates],
                "near_duplicates": [list(d) for d in self.near_duplicates], "leaks": self.leaks}


# An mp3 or resampled, louder copy of a clip correlates above 0.99 with its source; distinct clips of the
# shared wingbeat corpus reach at most 0.85 (206 clips, each against its 3 closest in average spectrum).
SAME_AUDIO_CORRELATION = 0.95
FINGERPRINT_RATE = 8000
CANDIDATES = 3  # closest training clips (by average spectrum) whose waveforms are compared with each held-out clip


@dataclass
class Fingerprint:
    """A clip at a common rate and loudness, and its average log spectrum to find candidate copies fast."""

    path: str
    wave: np.ndarray | None
    spectrum: np.ndarray | None


def fingerprint(path: str, wave: np.ndarray) -> Fingerprint:
    wave = (wave - wave.mean()) / (wave.std() + 1e-12)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(wave, (0, max(0, 256 - len(wave)))), 256)[::128]
    spectrum = np.log(np.abs(np.fft.rfft(frames * np.hanning(256), axis=1)) ** 2 + 1e-8).mean(axis=0)
    spectrum = (spectrum - spectrum.mean()) / (spectrum.std() + 1e-12)
    return Fingerprint(path, wave, spectrum)


def examine(path: str) -> tuple[str, Fingerprint]:
    """From one decoding: a hash of the samples at the file's own rate (so a renamed or losslessly
    re-encoded copy matches), and the fingerprint that finds lossy copies. Files that do not decode to
    usable audio are hashed by their bytes and have no fingerprint."""
    try:
        rate = sf.info(str(path)).samplerate
        wave = load_audio(path, rate)
    except (AudioError, RuntimeError, sf.LibsndfileError):
        return "bytes:" + hashlib.sha256(Path(path).read_bytes()).hexdigest(), Fingerprint(path, None, None)
    digest = hashlib.sha256(np.int32(rate).tobytes() + wave.tobytes()).hexdigest()
    common = wave if rate == FINGERPRINT_RATE else soxr.resample(wave, rate, FINGERPRINT_RATE, quality="HQ")
    return digest, fingerprint(path, np.asarray(common, np.float32))


def waveform_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The largest normalized cross-correlation at any shift (encoders add a delay), over the overlap."""
    size = 1 << (len(a) + len(b) - 1).bit_length()
    correlation = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(np.abs(correlation).max() / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def re_encoded_copies(train: list[Fingerprint], held_out: list[Fingerprint], exact: set[str],
                      progress: bool) -> list[tuple[str, str, float]]:
    """Held-out clips whose waveform matches a training clip's up to encoding, rate, delay and gain."""
    usable = [f for f in train if f.wave is not None]
    if not usable:
        return []
    spectra = np.stack([f.spectrum for f in usable])
    found = []
    for clip in tqdm(held_out, desc="compare audio", unit="file", disable=not progress):
        if clip.wave is None or clip.path in exact:
            continue
        closest = np.argsort(-(spectra @ clip.spectrum))[:CANDIDATES]
        scores = [(waveform_similarity(usable[i].wave, clip.wave), usable[i].path) for i in closest]
        similarity, match = max(scores)
        if similarity >= SAME_AUDIO_CORRELATION:
            found.append((match, clip.path, similarity))
    return found


def check_split(train_dir: str | Path, held_out_dir: str | Path, group_by: str = "auto",
                progress: bool = False) -> LeakageReport:
    """Audit a split: recording groups found on both sides, held-out files whose decoded audio equals a
    training file's, and held-out files that are re-encoded copies of one. `.leaks` is True when any is
    found; the held-out side is named by its folder (`held_out_side`)."""
    side = held_out_side(held_out_dir)
    train, held_out = discover(train_dir, group_by), discover(held_out_dir, group_by)
    train_groups = Counter(s.group for s in train)
    held_out_groups = Counter(s.group for s in held_out)
    shared = {g: {"train": train_groups[g], side: held_out_groups[g]}
              for g in sorted(set(train_groups) & set(held_out_groups))}
    train_seen = [examine(s.path) for s in tqdm(train, desc="read train", unit="file", disable=not progress)]
    held_out_seen = [examine(s.path) for s in tqdm(held_out, desc=f"read {side}", unit="file", disable=not progress)]
    digests: dict[str, str] = {}
    for sample, (digest, _) in zip(train, train_seen):
        digests.setdefault(digest, sample.path)
    duplicates = [(digests[digest], sample.path) for sample, (digest, _) in zip(held_out, held_out_seen)
                  if digest in digests]
    near = re_encoded_copies([seen[1] for seen in train_seen], [seen[1] for seen in held_out_seen],
                             {path for _, path in duplicates}, progress)
    return LeakageReport(len(train), len(held_out), shared, duplicates, near, side)
