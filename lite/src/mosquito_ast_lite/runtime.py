"""Load an exported model folder (model.json + ONNX) and label recordings with onnxruntime, no PyTorch.

This module owns the deploy contract: the folder's file names, model.json's format, the graph's input and
output names; `mosquito_ast` exports and runs graphs with these constants. A `LiteModel` is a
`stream.WindowScorer`: predict's streaming loop (`stream.stream_predictions`) scores windows with it, as the
tool's `predict` does with its members, so windows, rows, thresholds and CSVs are the same in both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .audio import is_audio_file
from .files import files_under, inside_folder
from .fbank import KALDI_MEL_FLOOR, Fbank, FbankSettings
from .graph_meta import ModelError, check_graph_labels
from .presence import gate_band
from .stream import RowOptions, stream_predictions
from .tables import CollectedRows

MODEL_FORMAT = "mosquito-ast-onnx"  # model.json's "format"
JSON_NAME = "model.json"
ONNX_NAME = "model.onnx"
INT8_NAME = "model.int8.onnx"
INPUT_NAME = "fbank"  # (batch, frames, mel) un-normalized fbank, float32
OUTPUT_NAME = "probabilities"  # (batch, classes) in model.json's label order
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

    @property
    def clip_seconds(self) -> float:
        return self.settings.clip_seconds

    @property
    def sample_rates(self) -> tuple[int, ...]:
        return (self.settings.sample_rate,)

    def __call__(self, waves: dict[int, np.ndarray]) -> np.ndarray:
        """The `WindowScorer` of predict's loop: (windows, samples) waves -> (windows, classes) probabilities,
        the block in one run of the graph (the loop sizes the block with --batch-size)."""
        features = self.fbank(waves[self.settings.sample_rate])
        return self.probabilities(features, len(features))

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
    path = folder / JSON_NAME
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
    # onnxruntime's threads spin between runs, taking the cores numpy's fbank needs between them
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and audio files found recursively in given folders (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(sorted(p for p in files_under(item) if is_audio_file(p)))
        else:
            files.append(item)
    return files


def predict_files(model: LiteModel, files: Sequence[str | Path], options: RowOptions = RowOptions(),
                  warn: Callable[[str], None] | None = print) -> CollectedRows:
    """The rows of `files` in memory (for a few files; `mosquito-ast-lite` streams them to disk instead)."""
    rows = CollectedRows(model.labels)
    stream_predictions(model, files, rows, options, warn)
    return rows


def summary_header(model: LiteModel, options: RowOptions) -> dict:
    """The JSON's fields before its rows, for the runtime's predictions."""
    return {"models": str(model.folder), "members": model.meta.get("members", []), "labels": model.labels,
            "precision": model.meta.get("precision"), **options_header(options, model.sample_rates[0])}


def options_header(options: RowOptions, sample_rate: int) -> dict:
    """The options that decided the rows, for the JSON of the tool's predict and the runtime's."""
    return {"hop_seconds": options.hop_seconds, "min_confidence": options.min_confidence,
            "presence_db": options.presence_db, "presence_band_hz": list(gate_band(sample_rate))}
