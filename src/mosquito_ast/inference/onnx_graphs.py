"""ONNX graphs of members: trace, store, quantize to int8, and run with onnxruntime.

`EnsembleGraph` is what every graph computes: the clip's un-normalized log-mel fbank (input `fbank`,
batch x frames x mel, float32, dynamic batch axis) -> each member's normalization, model and softmax ->
the weighted mean of their probabilities (output `probabilities`, batch x classes, in the first member's
label order). `mosquito-ast export` writes such graphs for devices (`export`), and `--precision int8`
runs one per member inside `evaluate` and `predict` (`int8`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from mosquito_ast_lite.runtime import INPUT_NAME, OUTPUT_NAME

from .members import Member, ensemble_labels
from ..features import FeatureSettings

OPSET = 17
QUANTIZED_OPS = ["MatMul", "Gemm"]


class EnsembleGraph(nn.Module):
    """What the ONNX graph computes: fbank -> per member (normalize, classifier, softmax, columns in the
    ensemble's label order) -> weighted mean over members."""

    def __init__(self, members: Sequence[Member], weights: Sequence[float]) -> None:
        super().__init__()
        labels = ensemble_labels(members)
        self.models = nn.ModuleList(member.model for member in members)
        self.norms = [(float(m.features.norm_mean), float(m.features.norm_std)) for m in members]
        self.orders = [None if m.labels == labels else [m.labels.index(name) for name in labels] for m in members]
        self.weights = [float(w) for w in weights]

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        total = None
        for model, (mean, std), order, weight in zip(self.models, self.norms, self.orders, self.weights):
            probabilities = model((fbank - mean) / (2 * std)).softmax(dim=-1)
            if order is not None:
                probabilities = probabilities[:, order]
            if len(self.models) > 1:
                probabilities = probabilities * weight
            total = probabilities if total is None else total + probabilities
        return total


@dataclass
class Check:
    """ONNX against PyTorch on the self-check clips."""

    max_probability_difference: float
    same_label: float

    def to_dict(self) -> dict[str, float]:
        return {"max_probability_difference": self.max_probability_difference, "same_label": self.same_label}

    @property
    def finite(self) -> bool:
        """Whether both sides gave finite probabilities on every clip."""
        return math.isfinite(self.max_probability_difference)

    def line(self) -> str:
        return (f"largest probability difference {self.max_probability_difference:.2e}, "
                f"same label {self.same_label:.1%}")


def data_name(onnx_name: str) -> str:
    return f"{onnx_name}.data"


def save_onnx(model, path: Path, external: bool) -> None:
    """Save `model` at `path`, its weights in one `<name>.data` file beside it when `external`."""
    import onnx

    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=data_name(path.name), size_threshold=1024)


def export_graph(module: nn.Module, path: Path, features: FeatureSettings) -> None:
    """Trace `module` to ONNX at `path` (TorchScript exporter, opset 17, dynamic batch axis). torch's newer
    dynamo exporter needs onnxscript and writes graphs onnxruntime's quantizer cannot shape-infer. Beyond
    2 GB the exporter writes each weight to its own file beside `path`."""
    example = torch.full((2, features.max_length, features.num_mel_bins), features.norm_mean)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)


def untie_initializers(source: Path, target: Path, external: bool) -> Path:
    """`source`, or a copy at `target` where every Gemm weight feeds one node only. The exporter stores
    equal weights once (members copied from one another), and onnxruntime's quantizer, turning a shared
    Gemm weight into a MatMul one, would transpose it for one node and break the other."""
    import onnx

    model = onnx.load(str(source))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    gemm_weights = {name for node in model.graph.node if node.op_type == "Gemm" for name in node.input}
    seen: set[str] = set()
    copies = []
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name not in initializers or name not in gemm_weights:
                continue
            if name in seen:
                copy = onnx.TensorProto()
                copy.CopyFrom(initializers[name])
                copy.name = f"{name}.untied{len(copies)}"
                copies.append(copy)
                node.input[index] = copy.name
            seen.add(name)
    if not copies:
        return source
    model.graph.initializer.extend(copies)
    save_onnx(model, target, external)
    return target


def quantize(source: Path, target: Path, weight_type: str, external: bool) -> None:
    """Dynamic int8 quantization: MatMul/Gemm weights stored in int8, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_logging():  # "consider pre-processing": shape inference adds nothing to these graphs
        quantize_dynamic(str(source), str(target), weight_type=QuantType[weight_type],
                         op_types_to_quantize=QUANTIZED_OPS, use_external_data_format=external)


def quantize_static(source: Path, target: Path, calibration: np.ndarray, batch_size: int, external: bool) -> None:
    """Static int8 quantization (QDQ, MatMul/Gemm) with activation ranges calibrated on `calibration` fbank."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: calibration[s:s + batch_size]}
                                 for s in range(0, len(calibration), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    with _quiet_logging():
        ort_quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=QUANTIZED_OPS, use_external_data_format=external)


@contextlib.contextmanager
def _quiet_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def onnx_session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; `threads` sets the intra-op threads (None = onnxruntime's default).
    Its threads do not spin between runs: they would take the cores from the PyTorch work that follows."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, features: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Probabilities (items, classes) of un-normalized fbank (items, frames, mel), in batches."""
    parts = [session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(features[s:s + batch_size], np.float32)})[0]
             for s in range(0, len(features), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, session.get_outputs()[0].shape[1]), np.float32)


def compare(onnx: np.ndarray, reference: np.ndarray) -> Check:
    """A clip where either side holds NaN/inf is a different label, and makes the largest difference inf:
    `nan > tolerance` is False, and NaN rows share argmax 0, so a NaN graph used to pass its checks."""
    finite = np.isfinite(onnx).all(axis=1) & np.isfinite(reference).all(axis=1)
    largest = float(np.abs(onnx - reference).max()) if finite.all() else math.inf
    return Check(largest, float(((onnx.argmax(axis=1) == reference.argmax(axis=1)) & finite).mean()))
