"""Raven Pro selection tables (`predict --raven DIR`, the runtime's too): one per recording, for reviewing
detections in Raven, as BirdNET-Analyzer and OpenSoundscape users do.

A selection is a run of detection windows (`tables.is_detection`) of one species that overlap or touch; its
confidence is the highest of its windows', its frequency range the presence gate's band (where the flight
tone was found). The tables mirror the recordings' folders below their common folder, so recordings of one
name in two sessions get two tables; a recording's table is written, atomically, when its last window is
scored (with a header only when nothing was detected; none for an unreadable file).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

from .io import OutputFolderError, atomic_write_text, check_writable
from .tables import DECIMALS, DetectionsOnly, is_detection

COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
           "Species", "Confidence"]
SUFFIX = ".selections.txt"


def table_paths(files: Sequence[str | Path], folder: str | Path) -> dict[str, Path]:
    """Each recording's table in `folder`; refused before any work when two recordings would share one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: is a file; --raven names the folder for the selection tables")
    parents = [os.path.abspath(Path(path).parent) for path in files]
    root = os.path.commonpath(parents) if parents else ""
    paths: dict[str, Path] = {}
    for path, parent in zip(map(str, files), parents):
        table = folder / os.path.relpath(parent, root) / (Path(path).stem + SUFFIX)
        clash = next((other for other, taken in paths.items() if taken == table), None)
        if clash is not None:
            raise OutputFolderError(f"{path} and {clash} would share the Raven table {table}; "
                                    "rename one or predict them separately")
        paths[path] = table
    check_writable(folder if folder.is_dir() else folder.parent)
    return paths


def table_text(selections: Sequence[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(selections)
    return buffer.getvalue()


class RavenTables:
    """A row sink in front of another: passes every row on, and merges the detections of each recording into
    selections, written as its table once the recording's file row comes."""

    def __init__(self, sink, tables: dict[str, Path], band: tuple[float, float]) -> None:
        self.sink, self.tables, self.band = sink, tables, band
        self.selections: dict[str, list[dict]] = {}
        self.written = 0

    def window(self, row: dict) -> None:
        self.sink.window(row)
        if not is_detection(row):
            return
        selections = self.selections.setdefault(row["path"], [])
        last = selections[-1] if selections else None
        if last and last["Species"] == row["label"] and row["start_s"] <= last["End Time (s)"]:
            last["End Time (s)"] = max(last["End Time (s)"], row["end_s"])
            last["Confidence"] = max(last["Confidence"], row["confidence"])
            return
        selections.append({"Selection": len(selections) + 1, "View": "Spectrogram 1", "Channel": 1,
                           "Begin Time (s)": row["start_s"], "End Time (s)": row["end_s"],
                           "Low Freq (Hz)": round(self.band[0], DECIMALS), "High Freq (Hz)": round(self.band[1], DECIMALS),
                           "Species": row["label"], "Confidence": row["confidence"]})

    def file(self, row: dict) -> None:
        selections = self.selections.pop(row["path"], [])
        if not row["error"]:
            atomic_write_text(self.tables[row["path"]], table_text(selections))
            self.written += 1
        self.sink.file(row)

    def mark(self) -> object:
        return self.sink.mark()

    def withdraw(self, mark: object) -> None:
        self.sink.withdraw(mark)


def review_sink(rows, detections_only: bool, tables: dict[str, Path] | None, band: tuple[float, float]):
    """`rows` behind the options that pick what a reviewer sees: `--detections-only` filters the window
    rows; `--raven` writes the tables from every window (it picks the detections itself)."""
    sink = DetectionsOnly(rows) if detections_only else rows
    return RavenTables(sink, tables, band) if tables is not None else sink
