"""The leakage audit of a train/validation pair: recordings on both sides, files with identical audio.

A split made elsewhere (by hand, by another tool) is checked here before its scores are trusted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from .audio import AudioError, load_audio
from .data import discover

@dataclass
class LeakageReport:
    """What a train/validation pair shares: recording groups, and files with identical audio."""

    train_files: int
    validation_files: int
    shared_groups: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> clips per side
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (train path, validation path)

    @property
    def leaks(self) -> bool:
        return bool(self.shared_groups or self.duplicates)

    def summary(self) -> str:
        lines = [f"train: {self.train_files} files, validation: {self.validation_files} files"]
        lines.append(f"recording groups on both sides: {len(self.shared_groups)}")
        lines += [f"  {group}: {n['train']} train, {n['validation']} validation clips"
                  for group, n in sorted(self.shared_groups.items())]
        lines.append(f"files with identical audio on both sides: {len(self.duplicates)}")
        lines += [f"  {a} == {b}" for a, b in self.duplicates]
        lines.append("LEAKAGE FOUND" if self.leaks else "no leakage found")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"train_files": self.train_files, "validation_files": self.validation_files,
                "shared_groups": self.shared_groups, "duplicates": [list(d) for d in self.duplicates],
                "leaks": self.leaks}


def audio_digest(path: str | Path) -> str:
    """Hash of the decoded samples at the file's own rate (so a re-encoded or renamed copy matches);
    files that do not decode to usable audio are hashed by their bytes."""
    try:
        rate = sf.info(str(path)).samplerate
        wave = load_audio(path, rate)
        return hashlib.sha256(np.int32(rate).tobytes() + wave.tobytes()).hexdigest()
    except (AudioError, RuntimeError, sf.LibsndfileError):
        return "bytes:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_split(train_dir: str | Path, validation_dir: str | Path, group_by: str = "auto",
                progress: bool = False) -> LeakageReport:
    """Audit a split: recording groups found on both sides and validation files whose audio equals a
    training file's. `.leaks` is True when either is found."""
    train, validation = discover(train_dir, group_by), discover(validation_dir, group_by)
    train_groups = Counter(s.group for s in train)
    validation_groups = Counter(s.group for s in validation)
    shared = {g: {"train": train_groups[g], "validation": validation_groups[g]}
              for g in sorted(set(train_groups) & set(validation_groups))}
    digests: dict[str, str] = {}
    for sample in tqdm(train, desc="hash train", unit="file", disable=not progress):
        digests.setdefault(audio_digest(sample.path), sample.path)
    duplicates = []
    for sample in tqdm(validation, desc="hash validation", unit="file", disable=not progress):
        match = digests.get(audio_digest(sample.path))
        if match is not None:
            duplicates.append((match, sample.path))
    return LeakageReport(len(train), len(validation), shared, duplicates)
