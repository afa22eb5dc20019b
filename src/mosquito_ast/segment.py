"""Cut long recordings into fixed-length 16 kHz clips that keep their recording (group).

Clips are written below the same class and session folders as their source, named
`<source stem>_s<index>.wav`, and listed in `manifest.csv` (path, label, group, source), so the
group survives whichever `--group-by` rule found it: a folder rule sees the same folders, a file-name
rule sees the same leading tokens, and the manifest carries the group itself.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from mosquito_ast_lite.audio import AudioError, clip_samples, load_audio
from mosquito_ast_lite.io import FolderKind, atomic_write_json, atomic_write_text, check_replaceable

from .data import DatasetError, Sample, discover

TAILS = ("drop", "pad")
SEGMENTS_NAME = "segments.json"
MANIFEST_NAME = "manifest.csv"
CLIPS_FOLDER = FolderKind("a clip folder of `split --segment`", (SEGMENTS_NAME,))


@dataclass(frozen=True)
class SegmentSettings:
    clip_seconds: float
    hop_seconds: float | None = None  # None: clips do not overlap (hop = clip length)
    tail: str = "drop"  # a last clip shorter than clip_seconds is dropped or zero-padded
    min_rms_db: float | None = None  # clips quieter than this (dBFS) are dropped
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds: must be positive, got {self.clip_seconds}")
        if self.hop_seconds is not None and self.hop_seconds <= 0:
            raise ValueError(f"hop_seconds: must be positive, got {self.hop_seconds}")
        if self.tail not in TAILS:
            raise ValueError(f"tail: {self.tail!r} is not one of {', '.join(TAILS)}")


def clip_starts(num_samples: int, clip: int, hop: int, tail: str) -> list[int]:
    """Start samples of the clips of a recording: every `hop` samples; a partial last clip is kept
    (to be padded) only with tail='pad', and a recording shorter than one clip gives one padded clip."""
    if num_samples >= clip:
        count = (num_samples - clip) // hop + 1
        if tail == "pad" and (count - 1) * hop + clip < num_samples:
            count += 1
    else:
        count = 1 if tail == "pad" else 0
    return [k * hop for k in range(count)]


def rms_db(wave: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def segment_wave(wave: np.ndarray, settings: SegmentSettings) -> list[np.ndarray]:
    """Clips of one decoded recording, silent ones (below min_rms_db) left out."""
    clip = clip_samples(settings.sample_rate, settings.clip_seconds)
    hop = clip_samples(settings.sample_rate, settings.hop_seconds or settings.clip_seconds)
    clips = []
    for start in clip_starts(len(wave), clip, hop, settings.tail):
        piece = wave[start:start + clip]
        piece = np.pad(piece, (0, clip - len(piece)))
        if settings.min_rms_db is None or rms_db(piece) >= settings.min_rms_db:
            clips.append(piece)
    return clips


def relative_location(sample: Sample, source: Path) -> PurePosixPath:
    """Where a file goes below `<tree>/<class>/`: its path below its class folder for a folder
    input, `<group>/<name>` for a manifest input, so the group stays readable from the path."""
    if source.is_dir():
        return PurePosixPath(Path(sample.path).relative_to(source / sample.label).as_posix())
    parts = [p for p in PurePosixPath(sample.group).parts if p not in ("", ".", "..", "/")]
    return PurePosixPath(*parts, Path(sample.path).name)


def segment_recordings(data: str | Path, output: str | Path, settings: SegmentSettings, group_by: str = "auto",
                       overwrite: bool = False, progress: bool = True) -> list[Sample]:
    """Cut every recording of `data` into clips under `output`; return the clips as samples.

    A finished output with the same data and settings is reused; a different one is refused
    unless `overwrite`. Unreadable recordings stop the run with their names.
    """
    data, output = Path(data), Path(output)
    record = {"data": str(data.resolve()), "group_by": group_by, **asdict(settings)}
    if (output / SEGMENTS_NAME).is_file() and (output / MANIFEST_NAME).is_file():
        if json.loads((output / SEGMENTS_NAME).read_text()) == record:
            return discover(output / MANIFEST_NAME, "column:group")
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output}: holds clips of other data or settings (use --overwrite to replace them)")
        shutil.rmtree(check_replaceable(output, CLIPS_FOLDER))
    clips: list[Sample] = []
    rows = []
    errors = []
    for sample in tqdm(discover(data, group_by), desc="segment", unit="file", disable=not progress):
        try:
            wave = load_audio(sample.path, settings.sample_rate)
        except AudioError as error:
            errors.append(str(error))
            continue
        location = relative_location(sample, data)
        folder = output / sample.label / location.parent
        folder.mkdir(parents=True, exist_ok=True)
        for index, piece in enumerate(segment_wave(wave, settings)):
            path = folder / f"{location.stem}_s{index:04d}.wav"
            sf.write(path, np.clip(piece, -1, 1), settings.sample_rate, subtype="PCM_16")
            clips.append(Sample(str(path), sample.label, sample.group))
            rows.append((path.relative_to(output).as_posix(), sample.label, sample.group, sample.path))
    if errors:
        raise DatasetError("unreadable recordings:\n" + "\n".join(f"  {e}" for e in errors))
    if not clips:
        raise DatasetError(f"{data}: no clips of {settings.clip_seconds} s (recordings too short or all below "
                           f"--min-rms-db {settings.min_rms_db})")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "group", "source"])
    writer.writerows(rows)
    atomic_write_text(output / MANIFEST_NAME, buffer.getvalue())
    atomic_write_json(output / SEGMENTS_NAME, record)
    return clips
