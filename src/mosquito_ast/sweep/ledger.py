"""The sweep ledger `<output>/sweep.jsonl`: one JSON record per finished attempt, appended and fsynced,
so an interrupted sweep keeps every result it had and a re-run knows what is done."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LEDGER_NAME = "sweep.jsonl"
SUMMARY_NAME = "sweep_summary.csv"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """Append-only records keyed by (dataset, postfix); the latest record of a run is its status."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {self.path}:{number}: unreadable record skipped (torn write?)")
        return records

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["dataset"], r["postfix"]): r for r in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably; a torn last line from a killed writer is closed off first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=str, ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell():
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = "\n" + line
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
