"""predict's loop, the one the tool and the field runtime share: recordings of any length, decoded, cut into
windows, scored and written a bounded block at a time, so memory does not depend on a recording's length.

What scores the windows is plugged in (`WindowScorer`): the runtime's ONNX model (`runtime.LiteModel`), or the
tool's members (PyTorch or int8 graphs, `mosquito_ast.commands.predict.EnsembleScorer`). Windows are
clip-length, `hop_seconds` apart, the last one aligned to the recording's end, a short recording padded to one
window (its row ends where the recording does). The presence gate (`presence.PresenceGate`) scores every
window first; only windows with a flight tone go to the scorer, and a file's probabilities are the mean over
those (a file with none is NO_DETECTION).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from .audio import BLOCK_FRAMES, AudioError, clip_samples, cut_short, cut_short_warning, fit_length, stream_audio
from .labels import DEFAULT_MIN_CONFIDENCE, DEFAULT_PRESENCE_DB
from .presence import PresenceGate
from .tables import error_row, file_row, window_row


class WindowScorer(Protocol):
    """Probabilities of a block of windows, columns in `labels` order. `waves` holds the block decoded at
    each of `sample_rates`: rate -> (windows, clip samples at that rate)."""

    labels: list[str]
    clip_seconds: float
    sample_rates: tuple[int, ...]

    def __call__(self, waves: dict[int, np.ndarray]) -> np.ndarray: ...


class RowSink(Protocol):
    """Where rows go as they come (`tables.StreamedRows`: files on disk; `tables.CollectedRows`: memory)."""

    def window(self, row: dict) -> None: ...

    def file(self, row: dict) -> None: ...

    def mark(self) -> object: ...

    def withdraw(self, mark: object) -> None: ...


@dataclass(frozen=True)
class RowOptions:
    """predict's options that shape the rows (the same flags in the tool and the runtime)."""

    hop_seconds: float = 0.5
    top_k: int = 3
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # the one threshold: rows whose top probability is below it are `uncertain`
    presence_db: float = DEFAULT_PRESENCE_DB  # the presence gate's threshold (0 = off)
    batch_size: int = 32  # windows scored at once
    # Gather a block's windows across files (short clips run in full batches). Off: a block holds one file's
    # windows only; dynamic int8 quantizes activations per batch, so there a window's probabilities depend
    # on the windows scored beside it, and keeping them within the file keeps a file's scores its own.
    gather_files: bool = True


def recording_windows(path: str | Path, sample_rate: int, clip_seconds: float, hop_seconds: float,
                      block_frames: int = BLOCK_FRAMES) -> Iterator[tuple[float, float, np.ndarray]]:
    """(start and end in seconds, clip-length wave) of every window of one recording, decoded as they are
    needed: starts `hop_seconds` apart, plus one aligned to the end when the last does not reach it; a
    recording shorter than a window is one window, padded, that ends where the recording ends."""
    window = clip_samples(sample_rate, clip_seconds)
    hop = max(1, int(round(hop_seconds * sample_rate)))
    kept, offset, start, total, last = np.zeros(0, np.float32), 0, 0, 0, None  # kept: samples from `offset`
    for block in stream_audio(path, sample_rate, block_frames):
        kept = np.concatenate([kept, block])
        total += len(block)
        while start + window <= total:
            yield start / sample_rate, (start + window) / sample_rate, kept[start - offset:start - offset + window].copy()
            last, start = start, start + hop
        keep_from = max(offset, min(start, total - window))
        kept, offset = kept[keep_from - offset:], keep_from
    if last is None:
        yield 0.0, total / sample_rate, fit_length(kept, window)
    elif last + window < total:
        yield (total - window) / sample_rate, total / sample_rate, kept[len(kept) - window:].copy()


def scorer_windows(path: str | Path, scorer: WindowScorer,
                   hop_seconds: float) -> Iterator[tuple[float, float, dict[int, np.ndarray]]]:
    """Each window of `path` at every rate the scorer needs, in step (start and end from the first rate)."""
    streams = [recording_windows(path, rate, scorer.clip_seconds, hop_seconds) for rate in scorer.sample_rates]
    for windows in zip(*streams, strict=True):
        yield windows[0][0], windows[0][1], {rate: wave for rate, (_, _, wave) in zip(scorer.sample_rates, windows)}


class _Scoring:
    """Windows waiting to be scored, gathered across files, and the running sums of the files they belong to."""

    def __init__(self, scorer: WindowScorer, sink: RowSink, options: RowOptions,
                 progress: Callable[[float], None] | None = None) -> None:
        self.scorer, self.sink, self.options, self.progress = scorer, sink, options, progress
        self.reached: dict[int, float] = {}  # file -> the end of its last scored window, in seconds
        self.gate = PresenceGate(scorer.sample_rates[0], options.presence_db) if options.presence_db > 0 else None
        self.pending: list[tuple[int, str, float, float, dict[int, np.ndarray]]] = []
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, list[int]] = {}  # file -> [windows, detections]
        self.marks: dict[int, object] = {}
        self.done: list[tuple[int, str]] = []  # files whose windows are all queued, waiting for their row
        self.windows = 0

    def add(self, index: int, path: str, start: float, end: float, waves: dict[int, np.ndarray]) -> None:
        self.pending.append((index, path, start, end, waves))
        if len(self.pending) >= self.options.batch_size:
            self.flush()

    def flush(self) -> None:
        """Score the queued windows, write their rows, then the rows of the files now complete."""
        if self.pending:
            self._score()
        o = self.options
        for index, path in self.done:
            windows, detections = self.counts.pop(index, (0, 0))
            self.reached.pop(index, None)
            pooled = (self.sums.pop(index) / detections).astype(np.float32) if detections else None
            self.sink.file(file_row(path, pooled, windows, detections, self.scorer.labels, o.top_k, o.min_confidence))
            self.marks.pop(index, None)
        self.done.clear()

    def _probabilities(self, passed: np.ndarray) -> np.ndarray:
        """The scorer's probabilities of the windows the gate passed (NaN rows for the others)."""
        probabilities = np.full((len(self.pending), len(self.scorer.labels)), np.nan, np.float32)
        if passed.any():
            waves = {rate: np.stack([item[4][rate] for item, keep in zip(self.pending, passed) if keep])
                     for rate in self.scorer.sample_rates}
            probabilities[passed] = np.asarray(self.scorer(waves), np.float32)
        return probabilities

    def _score(self) -> None:
        if self.gate is None:  # --presence-db 0: every window is scored, no presence column
            presence, gated = np.full(len(self.pending), np.nan), np.ones(len(self.pending), bool)
        else:
            presence = self.gate.scores(np.stack([item[4][self.gate.sample_rate] for item in self.pending]))
            gated = self.gate.present(presence)
        probabilities = self._probabilities(gated)
        labels, threshold = self.scorer.labels, self.options.min_confidence
        for (index, path, start, end, _), score, passed, row in zip(self.pending, presence, gated, probabilities):
            if index not in self.marks:
                self.marks[index] = self.sink.mark()
            self.sink.window(window_row(path, start, end, score, row if passed else None, labels, threshold))
            counts = self.counts.setdefault(index, [0, 0])
            counts[0] += 1
            if passed:
                counts[1] += 1
                self.sums[index] = self.sums.get(index, 0.0) + row.astype(np.float64)
        self.windows += len(self.pending)
        if self.progress:
            self.progress(self._advance())
        self.pending.clear()

    def _advance(self) -> float:
        """Seconds of audio the pending windows cover beyond what their files' earlier windows covered."""
        seconds = 0.0
        for index, _, _, end, _ in self.pending:
            seconds += max(0.0, end - self.reached.get(index, 0.0))
            self.reached[index] = max(end, self.reached.get(index, 0.0))
        return seconds

    def finish(self, index: int, path: str) -> None:
        """All of the file's windows are queued: its row comes once they are scored (rows in file order)."""
        self.done.append((index, path))
        if not self.options.gather_files:
            self.flush()

    def fail(self, index: int, path: str, problem: str) -> None:
        """Withdraw what the file already wrote and queued; its row says why."""
        self.pending = [item for item in self.pending if item[0] != index]
        if index in self.marks:
            self.sink.withdraw(self.marks.pop(index))
        self.sums.pop(index, None)
        self.counts.pop(index, None)
        self.reached.pop(index, None)
        self.flush()
        self.sink.file(error_row(path, problem))


def stream_predictions(scorer: WindowScorer, files: Sequence[str | Path], sink: RowSink, options: RowOptions,
                       warn: Callable[[str], None] | None = print,
                       progress: Callable[[float], None] | None = None) -> int:
    """Score every window of every file and give each row to `sink` as it comes; returns the windows scored.
    Unreadable files get a row with their error (and none of their windows) and a warning. `progress` is
    called with the seconds of audio each scored block covers (a bar over hours of one recording moves)."""
    scoring, cut = _Scoring(scorer, sink, options, progress), []
    for index, path in enumerate(map(str, files)):
        problem = _queue_file(scoring, index, path)
        if problem is not None:
            if warn:
                warn(f"warning: {path}: skipped ({problem})")
            scoring.fail(index, path, problem)
            continue
        if missing := cut_short(path):
            cut.append((path, missing))
        scoring.finish(index, path)
    scoring.flush()
    if cut and warn:
        warn(cut_short_warning(cut, len(files)))
    return scoring.windows


def _queue_file(scoring: _Scoring, index: int, path: str) -> str | None:
    """Queue every window of one file; the problem that stopped its decoding, or None. Only decoding errors
    are the file's: one raised while scoring is the model's and stops the run."""
    windows = scorer_windows(path, scoring.scorer, scoring.options.hop_seconds)
    while True:
        try:
            start, end, waves = next(windows)
        except StopIteration:
            return None
        except (AudioError, OSError, ValueError, RuntimeError, MemoryError) as error:
            return error.problem if isinstance(error, AudioError) else f"{type(error).__name__}: {error}"
        scoring.add(index, path, start, end, waves)
