"""Generated wingbeat-like recordings for the demo and the tests.

Each species has a fundamental frequency range and a harmonic profile; each recording (a session)
draws its own gain, noise floor, frequency offset and harmonic jitter, so clips of one recording
resemble each other more than clips of another recording of the same species. That is what makes a
random split look better than an independent one, as with real recordings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

@dataclass(frozen=True)
class Species:
    name: str
    fundamental_hz: float
    harmonics: tuple[float, ...]


DEFAULT_SPECIES = (
    Species("Ae. aegypti", 480.0, (1.0, 0.55, 0.35, 0.20, 0.10)),
    Species("An. gambiae", 440.0, (1.0, 0.30, 0.45, 0.15, 0.12)),
    Species("C. pipiens", 400.0, (1.0, 0.60, 0.20, 0.25, 0.05)),
    Species("C. quinquefasciatus", 370.0, (1.0, 0.40, 0.40, 0.10, 0.15)),
)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", name).lower()


def wingbeat_clip(
    rng: np.random.Generator,
    species: Species,
    seconds: float,
    sample_rate: int,
    offset: float,
    gain: float,
    noise: float,
    harmonic_jitter: np.ndarray,
) -> np.ndarray:
    """One flight-tone clip: harmonic series with slow pitch wobble, amplitude envelope and noise."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    f0 = species.fundamental_hz * (1 + offset + rng.normal(0, 0.01))
    wobble = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * wobble) / sample_rate
    wave = sum(
        amplitude * jitter * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi))
        for k, (amplitude, jitter) in enumerate(zip(species.harmonics, harmonic_jitter))
    )
    envelope = np.clip(np.sin(np.pi * np.clip((t - rng.uniform(0, 0.2 * seconds)) / (0.7 * seconds), 0, 1)), 0, 1)
    wave = gain * envelope * wave / len(species.harmonics) + noise * rng.standard_normal(len(t))
    return np.clip(wave, -1, 1).astype(np.float32)


def generate_dataset(
    root: str | Path,
    species: tuple[Species, ...] = DEFAULT_SPECIES,
    recordings_per_species: int = 4,
    clips_per_recording: int = 8,
    clip_seconds: float = 1.0,
    sample_rate: int = 16000,
    seed: int = 0,
    first_recording: int = 0,
) -> list[Path]:
    """Write `<root>/<species>/<slug>_r<recording>_c<clip>.wav`; the first two tokens name the recording.
    Recordings are numbered from `first_recording`, so separately generated sets do not share names."""
    rng = np.random.default_rng(seed)
    written = []
    for kind in species:
        folder = Path(root) / kind.name
        folder.mkdir(parents=True, exist_ok=True)
        for recording in range(first_recording, first_recording + recordings_per_species):
            offset = rng.uniform(-0.08, 0.08)
            gain = rng.uniform(0.3, 1.0)
            noise = rng.uniform(0.01, 0.12)
            jitter = rng.uniform(0.5, 1.5, size=len(kind.harmonics))
            for clip in range(clips_per_recording):
                wave = wingbeat_clip(rng, kind, clip_seconds, sample_rate, offset, gain, noise, jitter)
                path = folder / f"{slug(kind.name)}_r{recording:02d}_c{clip:03d}.wav"
                sf.write(path, wave, sample_rate, subtype="PCM_16")
                written.append(path)
    return written
