"""Audio decoding: any soundfile format to mono float32 at the model's sample rate."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterator, Sequence

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


def audio_seconds(path: str | Path) -> float:
    """A recording's length from its header, for a progress bar in seconds of audio (0 where unreadable)."""
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # soundfile raises several types for undecodable input; the loop reports it
        return 0.0


BLOCK_FRAMES = 1 << 16  # source frames decoded at a time: 4 s at 16 kHz


def stream_audio(path: str | Path, sample_rate: int = 16000, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Decode a file block by block to mono float32 at `sample_rate`, so memory stays one block whatever the
    recording's length (soxr's stream gives the very samples of a one-shot resampling). Files a model cannot
    learn from are `AudioError`s; an all-zero file is known only at its end, after its blocks."""
    try:
        handle = sf.SoundFile(str(path))
    except Exception as error:  # soundfile raises several types for undecodable input
        raise AudioError(path, f"unreadable audio ({error})") from error
    with handle:
        source_rate = handle.samplerate
        resampler = (soxr.ResampleStream(source_rate, sample_rate, 1, dtype="float32", quality="HQ")
                     if source_rate != sample_rate else None)
        decoded, heard, last = 0, False, False
        while not last:
            try:
                data = handle.read(block_frames, dtype="float32", always_2d=True)
            except Exception as error:
                raise AudioError(path, f"unreadable audio ({error})") from error
            last = len(data) < block_frames
            decoded += len(data)
            if last and decoded == 0:
                raise AudioError(path, "empty audio (0 samples)")
            wave = data.mean(axis=1)
            if not np.all(np.isfinite(wave)):
                raise AudioError(path, "audio contains NaN or infinite samples")
            heard = heard or bool(np.any(wave))
            if resampler is not None:
                wave = resampler.resample_chunk(wave, last=last)
            if len(wave):
                yield np.ascontiguousarray(wave, dtype=np.float32)
    if not heard:
        raise AudioError(path, "audio is all zeros (silent)")


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """A whole file, decoded as `stream_audio` decodes it: for clips, not for recordings of any length."""
    return np.concatenate(list(stream_audio(path, sample_rate)))


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
