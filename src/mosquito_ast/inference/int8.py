"""`--precision int8` for `evaluate` and `predict`: each member runs as an onnxruntime graph whose matrix
products use int8 weights (dynamic quantization, signed weights and unsigned activations: the u8s8 kernels
that x86 VNNI and ARM dot-product units run fastest; unsigned weights run below bf16 speed on VNNI CPUs).

A member's graph is built once (trace, quantize, and a check against its fp32 PyTorch scores on the clips
at hand) and kept in the feature cache under `int8/`, keyed by the member's weights, features, labels,
the graph code's revision and onnxruntime's version; later runs load it. The graph takes the un-normalized
fbank and returns the member's probabilities (normalization and softmax inside), like `export`'s graphs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from mosquito_ast_lite.io import atomic_path

from ..checkpoints import WEIGHTS_NAME, CheckpointError
from .members import Member, torch_probabilities
from ..features import FeatureCache, file_digest
from .onnx_graphs import EnsembleGraph, compare, export_graph, onnx_session, quantize, run_onnx

WEIGHT_TYPE = "QInt8"
CHECK_CLIPS = 32
GRAPH_REVISION = 1  # raise when the graph code changes: cached graphs of older revisions are not reused


def graph_key(member: Member) -> str:
    """What the graph depends on: the weights file's bytes, the features, the labels, and the code."""
    import onnxruntime

    described = json.dumps([file_digest(member.folder / WEIGHTS_NAME), member.features.to_dict(), member.labels,
                            GRAPH_REVISION, onnxruntime.__version__, WEIGHT_TYPE], sort_keys=True)
    return hashlib.blake2b(described.encode(), digest_size=20).hexdigest()


def graph_folder(cache_dir: str | Path | None, no_cache: bool) -> Path | None:
    """Where int8 graphs are kept: beside the cached features (None with --no-cache: built every run)."""
    return None if no_cache else FeatureCache(cache_dir).root / "int8"


def build_graph(member: Member, target: Path, check: np.ndarray) -> str:
    """Trace the member (fp32) and quantize it into `target`; the returned line compares the graph with
    the member's fp32 PyTorch scores on `check` (un-normalized fbank)."""
    weight = next(member.model.parameters())
    if weight.dtype != torch.float32:
        raise ValueError(f"member {member.name} already holds {weight.dtype} weights; load it again for int8")
    member.model.eval()
    with tempfile.TemporaryDirectory(prefix="mosquito-ast-int8-") as scratch:
        traced = Path(scratch) / "member.onnx"
        export_graph(EnsembleGraph([member], [1.0]), traced, member.features)
        with atomic_path(target, ".onnx") as written:
            quantize(traced, written, WEIGHT_TYPE, external=False)
            agreement = compare(run_onnx(onnx_session(written, torch.get_num_threads()), check),
                                torch_probabilities(member, check, torch.float32, torch.device("cpu")))
            if not agreement.finite:  # raised inside: the graph is not kept
                raise CheckpointError(f"member {member.name}: its int8 graph gives NaN/inf probabilities on "
                                      f"{len(check)} clips; score it with --precision 32 instead")
    clips = f"{len(check)} clip{'s' if len(check) != 1 else ''}"
    return f"int8 graph of member {member.name} built, against its fp32 scores on {clips}: {agreement.line()}"


class Int8Scorer:
    """A member's int8 graph as its scorer (`members.Scorer`): (un-normalized fbank, batch size) ->
    probabilities in the member's label order. Loaded from `graphs` on first use, or built there (checked on the first
    clips it is given) when no graph of these weights is kept yet."""

    def __init__(self, member: Member, graphs: Path | None) -> None:
        self.member, self.graphs, self.session = member, graphs, None

    def __call__(self, features: np.ndarray, batch_size: int) -> np.ndarray:
        if self.session is None:
            with tempfile.TemporaryDirectory(prefix="mosquito-ast-int8-") as scratch:
                target = (self.graphs or Path(scratch)) / f"{graph_key(self.member)}.onnx"
                self.session = self.kept_session(target)
                if self.session is None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    print(build_graph(self.member, target, features[:CHECK_CLIPS]))
                    self.session = onnx_session(target, torch.get_num_threads())
        return run_onnx(self.session, features, batch_size)

    def kept_session(self, target: Path):
        """A session of the graph kept at `target`; None when there is none, or when it cannot be loaded
        (a damaged cache entry is built again and replaced, as damaged features are)."""
        if not target.is_file():
            return None
        try:
            return onnx_session(target, torch.get_num_threads())
        except Exception as error:  # onnxruntime raises its own exception types for invalid graphs
            print(f"note: int8 graph of member {self.member.name} at {target} cannot be loaded "
                  f"({str(error).strip().splitlines()[0][:120]}); building it again")
            return None


def attach(members: list[Member], graphs: Path | None) -> None:
    """Make every member's int8 graph (kept in `graphs`, see `graph_folder`) its scorer in `score_features`."""
    if torch.cuda.is_available():
        print("warning: --precision int8 runs on the CPU (onnxruntime); on this GPU, auto (bf16) is faster")
    for member in members:
        if member.scorer is None:
            member.scorer = Int8Scorer(member, graphs)
