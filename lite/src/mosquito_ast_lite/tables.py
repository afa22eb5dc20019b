"""predict's outputs, one definition for the tool and the field runtime: the file and window rows, their
columns, and the writers that take rows as they come (to disk, atomically, or to memory).

`prediction_files` streams window rows to `<stem>_windows.csv` and to a spool of the JSON's window list while
the recordings are scored, so memory holds one row at a time however long they are; the per-file CSV and the
JSON are written when the last file is done, every file moved into place atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence

import numpy as np

from .io import atomic_path, atomic_write_text
from .labels import BACKGROUND, NO_DETECTION, UNCERTAIN

DECIMALS = 4  # probabilities and times in every table


def file_columns(labels: Sequence[str], top_k: int) -> list[str]:
    top = [f"top{r}_{kind}" for r in range(1, min(top_k, len(labels)) + 1) for kind in ("label", "probability")]
    return ["path", "windows", "detections", "error", "label", "confidence", *top, *labels]


def window_columns(labels: Sequence[str]) -> list[str]:
    return ["path", "start_s", "end_s", "presence_db", "label", "confidence", *labels]


def decide(probabilities: np.ndarray, labels: Sequence[str], min_confidence: float) -> str:
    best = int(np.argmax(probabilities))
    return UNCERTAIN if probabilities[best] < min_confidence else labels[best]


def is_detection(row: dict) -> bool:
    """A window (or file) with an insect of a named species: the gate found a tone, the species is confident
    enough, and it is not the `background` class."""
    return row["label"] not in ("", NO_DETECTION, UNCERTAIN) and row["label"].lower() != BACKGROUND


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(value), DECIMALS) for value in values]


def file_row(path: str, probabilities: np.ndarray | None, windows: int, detections: int, labels: Sequence[str],
             top_k: int, min_confidence: float) -> dict:
    """The mean over the windows the gate passed (`detections` of `windows`); None when it passed none."""
    row = {"path": path, "windows": windows, "detections": detections, "error": ""}
    if probabilities is None:
        return {**row, "label": NO_DETECTION, "confidence": math.nan}
    order = np.argsort(-probabilities)[: min(top_k, len(labels))]
    row.update(label=decide(probabilities, labels, min_confidence), confidence=_rounded([probabilities[order[0]]])[0])
    for rank, index in enumerate(order, start=1):
        row[f"top{rank}_label"] = labels[index]
        row[f"top{rank}_probability"] = _rounded([probabilities[index]])[0]
    row.update(zip(labels, _rounded(probabilities)))
    return row


def error_row(path: str, problem: str) -> dict:
    return {"path": path, "windows": 0, "detections": 0, "error": problem, "label": "", "confidence": math.nan}


def window_row(path: str, start: float, end: float, presence_db: float, probabilities: np.ndarray | None,
               labels: Sequence[str], min_confidence: float) -> dict:
    """One window's row; `probabilities` None: the presence gate found no flight tone, nothing was scored."""
    row = {"path": path, "start_s": round(start, DECIMALS), "end_s": round(end, DECIMALS),
           "presence_db": round(float(presence_db), 2)}
    if probabilities is None:
        return {**row, "label": NO_DETECTION, "confidence": math.nan}
    return {**row, "label": decide(probabilities, labels, min_confidence),
            "confidence": _rounded([probabilities.max()])[0], **dict(zip(labels, _rounded(probabilities)))}


def closing_line(files: Sequence[dict], windows: int, seconds: float, outputs: Sequence[str]) -> str:
    """What a run found, counted from its file rows: predict's and the runtime's last line."""
    detections = sum(row["detections"] for row in files)
    failed = sum(1 for row in files if row["error"])
    counts = {label: sum(1 for row in files if row["label"] == label) for label in (UNCERTAIN, NO_DETECTION)}
    return (f"{len(files)} files ({windows} windows, {detections} with a flight tone, "
            f"{windows / max(seconds, 1e-9):.1f} windows/s): {failed} unreadable, {counts[UNCERTAIN]} uncertain, "
            f"{counts[NO_DETECTION]} without a flight tone -> {', '.join(outputs)}")


def _csv_cells(row: dict) -> dict:
    """NaN as an empty cell, as pandas' `to_csv` writes it."""
    return {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _json_cells(row: dict) -> dict:
    """NaN as null: JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def csv_text(rows: Iterable[dict], columns: Sequence[str]) -> str:
    """CSV as pandas' `to_csv(index=False)` writes these rows: NaN and missing cells empty, floats as repr."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(map(_csv_cells, rows))
    return buffer.getvalue()


def windows_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + "_windows.csv")


def output_paths(output: str | Path) -> list[Path]:
    """The files predict (the tool's and the runtime's) writes for `output`: per file, per window, JSON."""
    output = Path(output)
    return [output, windows_path(output), output.with_suffix(".json")]


@dataclass
class CollectedRows:
    """Rows kept in memory (the Python API, tests): for a few files, not for days of audio."""

    labels: list[str]
    files: list[dict] = field(default_factory=list)
    windows: list[dict] = field(default_factory=list)

    def window(self, row: dict) -> None:
        self.windows.append(row)

    def file(self, row: dict) -> None:
        self.files.append(row)

    def mark(self) -> int:
        return len(self.windows)

    def withdraw(self, mark: int) -> None:
        """Drop the window rows written since `mark` (a file found unreadable after its first windows)."""
        del self.windows[mark:]


class DetectionsOnly:
    """Passes on the window rows with a detection (`is_detection`) and every file row (`--detections-only`)."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def window(self, row: dict) -> None:
        if is_detection(row):
            self.sink.window(row)

    def file(self, row: dict) -> None:
        self.sink.file(row)

    def mark(self) -> object:
        return self.sink.mark()

    def withdraw(self, mark: object) -> None:
        self.sink.withdraw(mark)


class StreamedRows:
    """Window rows straight to the windows CSV and the JSON spool; file rows (one per file) kept."""

    def __init__(self, labels: Sequence[str], table: IO[str], spool: IO[bytes]) -> None:
        self.labels = list(labels)
        self.files: list[dict] = []
        self.table, self.spool = table, spool
        self.writer = csv.DictWriter(table, fieldnames=window_columns(labels), restval="", lineterminator="\n")
        self.writer.writeheader()

    def window(self, row: dict) -> None:
        self.writer.writerow(_csv_cells(row))
        item = json.dumps(_json_cells(row), indent=2, default=str).replace("\n", "\n    ")
        self.spool.write(f"    {item},\n".encode("utf-8"))

    def file(self, row: dict) -> None:
        self.files.append(row)

    def mark(self) -> tuple[int, int]:
        return self.table.tell(), self.spool.tell()

    def withdraw(self, mark: tuple[int, int]) -> None:
        for handle, position in zip((self.table, self.spool), mark):
            handle.seek(position)
            handle.truncate()


@contextmanager
def prediction_files(output: str | Path, labels: Sequence[str], top_k: int, header: dict) -> Iterator[StreamedRows]:
    """Rows given to the yielded writer end up in `output` (per file), `<stem>_windows.csv` and `<stem>.json`
    (`header`, labels included, then "files" and "windows"), each written atomically when the block ends without an error."""
    output, per_window, summary = output_paths(output)
    with atomic_path(per_window) as table_path, tempfile.TemporaryFile(dir=summary.parent) as spool:
        with open(table_path, "w", newline="", encoding="utf-8") as table:
            rows = StreamedRows(labels, table, spool)
            yield rows
        atomic_write_text(output, csv_text(rows.files, file_columns(labels, top_k)))
        files = [_json_cells(row) for row in rows.files]
        head = json.dumps({**header, "files": files, "windows": []}, indent=2, default=str)
        with atomic_path(summary) as json_path, open(json_path, "wb") as handle:
            _write_json(handle, head, spool)


def _write_json(handle: IO[bytes], head: str, spool: IO[bytes]) -> None:
    """`head` (JSON ending in an empty "windows" list) with the spooled window items put into that list, laid
    out as `json.dumps(..., indent=2)` lays it out, copied a block at a time."""
    size = spool.tell()
    if not size:
        handle.write(f"{head}\n".encode("utf-8"))
        return
    handle.write(head.removesuffix("[]\n}").encode("utf-8") + b"[\n")
    spool.seek(0)
    remaining = size - len(",\n")
    while remaining > 0:
        block = spool.read(min(remaining, 1 << 20))
        handle.write(block)
        remaining -= len(block)
    handle.write(b"\n  ]\n}\n")
