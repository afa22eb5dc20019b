"""Load an exported model folder (model.json + ONNX) and label recordings with onnxruntime, no PyTorch.

Recordings are cut into clip-length windows exactly as `mosquito-ast predict` cuts them (`--hop-seconds`
apart, the last one aligned to the end, short ones padded); a file's probability is the mean over its
windows. The per-file and per-window CSVs have predict's columns; with `abstain_below`, files and windows
whose top probability is below it are labelled `uncertain` (their probabilities are kept).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .audio import AudioError, cut_short, cut_short_warning, fit_length, is_audio_file, load_audio
from .files import files_under, inside_folder
from .io import atomic_write_json, atomic_write_text
from .fbank import KALDI_MEL_FLOOR, Fbank, FbankSettings
from .graph_meta import ModelError, check_graph_labels

MODEL_FORMAT = "mosquito-ast-onnx"
INPUT_NAME = "fbank"
OUTPUT_NAME = "probabilities"
UNCERTAIN = "uncertain"
REQUIRED_FEATURES = ("sample_rate", "clip_seconds", "num_mel_bins", "max_length")


@dataclass
class LiteModel:
    folder: Path
    meta: dict
    labels: list[str]
    settings: FbankSettings
    session: object  # onnxruntime.InferenceSession
    input_name: str
    output_name: str
    fixed_batch: int | None = None  # the graph's batch size when it is not dynamic
    fbank: Fbank = field(init=False)

    def __post_init__(self) -> None:
        self.fbank = Fbank(self.settings)

    def probabilities(self, features: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(N, frames, mel) un-normalized fbank -> (N, classes) probabilities, in batches."""
        step = self.fixed_batch or max(1, batch_size)
        out = []
        for start in range(0, len(features), step):
            batch = np.ascontiguousarray(features[start:start + step], dtype=np.float32)
            real = len(batch)
            if self.fixed_batch and real < self.fixed_batch:
                batch = np.concatenate([batch, np.zeros((self.fixed_batch - real, *batch.shape[1:]), np.float32)])
            result = np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
            out.append(result[:real])
        probabilities = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(self.labels):
            raise ModelError(f"{self.folder}: the model returned shape {probabilities.shape}, "
                             f"expected (batch, {len(self.labels)}) for the {len(self.labels)} labels in model.json")
        return probabilities


def read_model_json(folder: str | Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    path = folder / "model.json"
    if not path.is_file():
        raise ModelError(f"{folder}: no model.json (not a folder written by `mosquito-ast export`)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: unreadable JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path}: format is {found!r}, expected {MODEL_FORMAT!r}")
    labels = meta.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise ModelError(f"{path}: 'labels' must be a non-empty list of class names")
    if len(set(labels)) != len(labels):
        raise ModelError(f"{path}: 'labels' has duplicates")
    features = meta.get("features")
    missing = [k for k in REQUIRED_FEATURES if not isinstance(features, dict) or k not in features]
    if missing:
        raise ModelError(f"{path}: 'features' lacks {', '.join(missing)}")
    if not isinstance(meta.get("onnx"), str) or not meta["onnx"]:
        raise ModelError(f"{path}: 'onnx' must name the ONNX file")
    for key in ("onnx", "onnx_fp32"):
        if isinstance(meta.get(key), str) and not inside_folder(meta[key]):
            raise ModelError(f"{path}: {key!r} is {meta[key]!r}, outside the model folder; it must name a file in it")
    return meta


def load_model(folder: str | Path, threads: int = 0, fp32: bool = False) -> LiteModel:
    """Read model.json and open the ONNX file it names under "onnx" (with `fp32`: under "onnx_fp32", the
    unquantized graph an int8 export keeps beside it) on the CPU with `threads` intra-op threads
    (0 = onnxruntime's default). Every problem is a `ModelError` naming the folder."""
    folder = Path(folder)
    meta = read_model_json(folder)
    if fp32 and meta.get("precision") == "int8":
        if not isinstance(meta.get("onnx_fp32"), str) or not meta["onnx_fp32"]:
            raise ModelError(f"{folder / 'model.json'}: no 'onnx_fp32' graph to run instead of the int8 one")
        meta = {**meta, "onnx": meta["onnx_fp32"], "precision": "fp32"}
    try:
        settings = FbankSettings.from_dict(meta["features"])
    except (TypeError, ValueError) as error:
        raise ModelError(f"{folder / 'model.json'}: bad 'features' ({error})") from error
    onnx_path = folder / meta["onnx"]
    if not onnx_path.is_file():
        raise ModelError(f"{folder}: model.json names {meta['onnx']!r}, which is not in the folder")
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ModelError(f"onnxruntime is not installed ({error}): pip install onnxruntime") from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for invalid graphs
        raise ModelError(f"{onnx_path}: cannot load the ONNX model ({str(error).strip().splitlines()[0]})") from error
    check_graph_labels(session, onnx_path, meta["labels"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [i.name for i in inputs]
    if len(inputs) != 1:
        raise ModelError(f"{onnx_path}: expected one input '{INPUT_NAME}', found {names}")
    shape = inputs[0].shape
    expected = (settings.max_length, settings.num_mel_bins)
    if len(shape) != 3 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected)):
        raise ModelError(f"{onnx_path}: input shape {shape} does not fit (batch, {expected[0]}, {expected[1]}) "
                         "from model.json's features")
    output_names = [o.name for o in outputs]
    output_name = OUTPUT_NAME if OUTPUT_NAME in output_names else output_names[0]
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    model = LiteModel(folder, meta, list(meta["labels"]), settings, session, inputs[0].name, output_name, fixed)
    try:  # one silent window: a graph that does not fit model.json fails here, with the folder's name
        model.probabilities(np.full((1, *expected), np.log(KALDI_MEL_FLOOR), np.float32))
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(f"{onnx_path}: the model does not run on ({', '.join(map(str, expected))}) fbank "
                         f"({str(error).strip().splitlines()[0]})") from error
    return model


# --- windows, as `mosquito_ast.commands.predict` cuts them -------------------------------------------------------------

def window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Window starts covering the whole recording; the last one ends at the recording's end."""
    if num_samples <= window:
        return [0]
    starts = list(range(0, num_samples - window + 1, hop))
    if starts[-1] + window < num_samples:
        starts.append(num_samples - window)
    return starts


def recording_windows(path: str | Path, settings: FbankSettings, hop_seconds: float) -> tuple[np.ndarray, list[float]]:
    """(windows, clip samples) waves of one recording and each window's start in seconds."""
    wave = load_audio(path, settings.sample_rate)
    window = settings.clip_samples
    hop = max(1, int(round(hop_seconds * settings.sample_rate)))
    starts = window_starts(len(wave), window, hop)
    waves = np.stack([fit_length(wave[s:s + window], window) for s in starts])
    return waves, [s / settings.sample_rate for s in starts]


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and audio files found recursively in given folders (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in files_under(item) if is_audio_file(p)))
        else:
            files.append(item)
    return files


# --- tables: the columns of `mosquito-ast predict` -------------------------------------------------------------

def file_columns(labels: Sequence[str], top_k: int) -> list[str]:
    top = [f"top{r}_{kind}" for r in range(1, min(top_k, len(labels)) + 1) for kind in ("label", "probability")]
    return ["path", "windows", "error", "label", "confidence", "uncertain", *top, *labels]


def window_columns(labels: Sequence[str]) -> list[str]:
    return ["path", "start_s", "end_s", "label", "confidence", *labels]


def decide(probabilities: np.ndarray, labels: Sequence[str], abstain_below: float) -> str:
    best = int(np.argmax(probabilities))
    return UNCERTAIN if probabilities[best] < abstain_below else labels[best]


def file_row(path: str, probabilities: np.ndarray, windows: int, labels: Sequence[str], top_k: int,
             min_confidence: float, abstain_below: float) -> dict:
    order = np.argsort(-probabilities)[: min(top_k, len(labels))]
    confidence = float(probabilities[order[0]])
    label = decide(probabilities, labels, abstain_below)
    row = {"path": path, "windows": windows, "error": "", "label": label, "confidence": confidence,
           "uncertain": bool(confidence < min_confidence)}
    for rank, index in enumerate(order, start=1):
        row[f"top{rank}_label"] = labels[index]
        row[f"top{rank}_probability"] = float(probabilities[index])
    row.update(zip(labels, probabilities.tolist()))
    return row


def error_row(path: str, problem: str) -> dict:
    return {"path": path, "windows": 0, "error": problem, "label": "", "confidence": math.nan, "uncertain": True}


def window_row(path: str, start: float, clip_seconds: float, probabilities: np.ndarray, labels: Sequence[str],
               abstain_below: float) -> dict:
    return {"path": path, "start_s": round(start, 4), "end_s": round(start + clip_seconds, 4),
            "label": decide(probabilities, labels, abstain_below), "confidence": float(probabilities.max()),
            **dict(zip(labels, probabilities.tolist()))}


def csv_text(rows: Iterable[dict], columns: Sequence[str]) -> str:
    """CSV as pandas' `to_csv(index=False)` writes these rows: NaN and missing cells empty, floats as repr."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return buffer.getvalue()


# --- prediction ------------------------------------------------------------------------------------------------

@dataclass
class LitePredictions:
    files: list[dict]
    windows: list[dict]
    labels: list[str]


def predict_files(model: LiteModel, files: Sequence[str | Path], hop_seconds: float = 0.5, batch_size: int = 32,
                  top_k: int = 3, min_confidence: float = 0.5, abstain_below: float = 0.0,
                  warn: Callable[[str], None] | None = print) -> LitePredictions:
    """Decode and featurize files, run the model on batches of windows gathered across files, pool per file.
    Unreadable files get a row with their error and no probabilities."""
    labels, settings = model.labels, model.settings
    file_rows: list[dict | None] = [None] * len(files)
    window_rows: list[list[dict]] = [[] for _ in files]
    pending: list[tuple[int, np.ndarray, list[float]]] = []

    def flush() -> None:
        if not pending:
            return
        probabilities = model.probabilities(np.concatenate([f for _, f, _ in pending]), batch_size)
        offset = 0
        for index, features, starts in pending:
            mine = probabilities[offset:offset + len(features)]
            offset += len(features)
            path = str(files[index])
            window_rows[index] = [window_row(path, s, settings.clip_seconds, p, labels, abstain_below)
                                  for s, p in zip(starts, mine)]
            file_rows[index] = file_row(path, mine.mean(axis=0), len(starts), labels, top_k, min_confidence,
                                        abstain_below)
        pending.clear()

    queued, cut = 0, []  # cut: (path, problem) of WAV files cut short
    for index, path in enumerate(files):
        try:
            waves, starts = recording_windows(path, settings, hop_seconds)
        except (AudioError, OSError, ValueError, RuntimeError, MemoryError) as error:
            problem = error.problem if isinstance(error, AudioError) else f"{type(error).__name__}: {error}"
            if warn:
                warn(f"warning: {path}: skipped ({problem})")
            file_rows[index] = error_row(str(path), problem)
            continue
        if missing := cut_short(path):
            cut.append((str(path), missing))
        pending.append((index, model.fbank(waves), starts))
        queued += len(starts)
        if queued >= batch_size:
            flush()
            queued = 0
    flush()
    if cut and warn:
        warn(cut_short_warning(cut, len(files)))
    return LitePredictions([r for r in file_rows if r is not None], [w for rows in window_rows for w in rows], labels)


def windows_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + "_windows.csv")


def output_paths(output: str | Path) -> list[Path]:
    """The files `write_predictions` (and `mosquito-ast predict`) write for `output`: per file, per window, JSON."""
    output = Path(output)
    return [output, windows_path(output), output.with_suffix(".json")]


def write_predictions(result: LitePredictions, output: str | Path, model: LiteModel, hop_seconds: float,
                      top_k: int, min_confidence: float, abstain_below: float) -> list[Path]:
    """`output` (per file), `<stem>_windows.csv` and `<stem>.json`, as `mosquito-ast predict` writes them."""
    output, per_window, summary = output_paths(output)
    atomic_write_text(output, csv_text(result.files, file_columns(result.labels, top_k)))
    atomic_write_text(per_window, csv_text(result.windows, window_columns(result.labels)))
    atomic_write_json(summary, {
        "models": str(model.folder), "members": model.meta.get("members", []), "labels": result.labels,
        "precision": model.meta.get("precision"), "hop_seconds": hop_seconds, "min_confidence": min_confidence,
        "abstain_below": abstain_below,
        "files": [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
                  for row in result.files],
        "windows": result.windows,
    })
    return [output, per_window, summary]
