"""Audio decoding: any soundfile format to mono float32 at the model's sample rate."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3")


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode a file to mono float32 at `sample_rate`; reject files a model cannot learn from."""
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for undecodable input
        raise AudioError(path, f"unreadable audio ({error})") from error
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    wave = data.mean(axis=1)
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "audio contains NaN or infinite samples")
    if not np.any(wave):
        raise AudioError(path, "audio is all zeros (silent)")
    if source_rate != sample_rate:
        wave = soxr.resample(wave, source_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Zero-pad at the end or trim to exactly `num_samples`."""
    if len(wave) >= num_samples:
        return wave[:num_samples]
    return np.pad(wave, (0, num_samples - len(wave)))


def load_clip(path: str | Path, sample_rate: int, clip_seconds: float) -> np.ndarray:
    return fit_length(load_audio(path, sample_rate), clip_samples(sample_rate, clip_seconds))


def clip_samples(sample_rate: int, clip_seconds: float) -> int:
    return int(round(sample_rate * clip_seconds))


def cut_short(path: str | Path) -> str | None:
    """How much of a WAV file's declared audio is missing, or None. libsndfile quietly decodes what is
    there, so a copy cut off mid-transfer became a short, zero-padded clip without a word."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        return None
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                return None
            size = path.stat().st_size
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    present = size - handle.tell()
                    if length == 0xFFFFFFFF or present >= length:  # streamed WAVs leave the size unset
                        return None
                    return f"WAV data cut short: the header declares {length} bytes, the file holds {present}"
                handle.seek(length + (length & 1), 1)
    except OSError:
        return None


def cut_short_warning(cut: Sequence[tuple[str, str]], total: int, used: str = "the audio present is used") -> str:
    """The one counted warning every command gives for WAV files cut short (`cut`: path, problem), naming
    the first ten."""
    listing = "\n".join(f"  {path}: {problem}" for path, problem in cut[:10])
    more = f"\n  ... and {len(cut) - 10} more" if len(cut) > 10 else ""
    return f"warning: {len(cut)} of {total} WAV files are cut short (incomplete copies?); {used}:\n{listing}{more}"
