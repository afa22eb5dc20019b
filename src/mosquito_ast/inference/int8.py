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
import sys
from pathlib import Path

import numpy as np
import torch

from mosquito_ast_lite.io import OutputFolderError, atomic_path, check_writable, scratch_folder

from ..checkpoints import WEIGHTS_NAME, CheckpointError
from .members import Member, torch_probabilities
from ..features import FeatureCache, file_digest
from .onnx_graphs import EnsembleGraph, compare, export_graph, onnx_session, quantize, run_onnx

WEIGHT_TYPE = "QInt8"
CHECK_CLIPS = 32
GRAPH_REVISION = 1  # raise when the graph code changes: cached graphs of older revisions are not reused
KEY_METADATA = "mosquito_ast_int8_key"  # the graph's own record of its key: a file renamed or copied over is seen


def graph_key(member: Member) -> str:
    """What the graph depends on: the weights file's bytes, the features, the labels, and the code."""
    import onnxruntime

    described = json.dumps([file_digest(member.folder / WEIGHTS_NAME), member.features.to_dict(), member.labels,
                            GRAPH_REVISION, onnxruntime.__version__, WEIGHT_TYPE], sort_keys=True)
    return hashlib.blake2b(described.encode(), digest_size=20).hexdigest()


def graph_folder(cache_dir: str | Path | None, no_cache: bool) -> Path | None:
    """Where int8 graphs are kept: beside the cached features (None with --no-cache: built every run)."""
    return None if no_cache else FeatureCache(cache_dir).root / "int8"


def stamp_key(path: Path, key: str) -> None:
    """Record `key` in the graph's metadata, where a load checks it (`Int8Scorer.kept_session`)."""
    import onnx

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {KEY_METADATA: key})
    onnx.save(model, str(path))


def build_graph(member: Member, target: Path, check: np.ndarray) -> str:
    """Trace the member (fp32) and quantize it into `target` (named by its key, which it records); the
    returned line compares the graph with the member's fp32 PyTorch scores on `check` (un-normalized fbank)."""
    weight = next(member.model.parameters())
    if weight.dtype != torch.float32:
        raise ValueError(f"member {member.name} already holds {weight.dtype} weights; load it again for int8")
    member.model.eval()
    with scratch_folder("mosquito-ast-int8-") as scratch:
        traced = scratch / "member.onnx"
        export_graph(EnsembleGraph([member], [1.0]), traced, member.features)
        with atomic_path(target, ".onnx") as written:
            quantize(traced, written, WEIGHT_TYPE, external=False)
            stamp_key(written, target.stem)
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

    def __init__(self, member: Member, graphs: Path | None, writable: bool = True) -> None:
        self.member, self.graphs, self.writable, self.session = member, graphs, writable, None

    def __call__(self, features: np.ndarray, batch_size: int) -> np.ndarray:
        if self.session is None:
            with scratch_folder("mosquito-ast-int8-") as scratch:
                key = graph_key(self.member)
                kept = None if self.graphs is None else self.graphs / f"{key}.onnx"
                self.session = None if kept is None else self.kept_session(kept)
                if self.session is None:
                    target = kept if kept is not None and self.writable else scratch / f"{key}.onnx"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    print(build_graph(self.member, target, features[:CHECK_CLIPS]))
                    self.session = onnx_session(target, torch.get_num_threads())
        return run_onnx(self.session, features, batch_size)

    def kept_session(self, target: Path):
        """A session of the graph kept at `target`; None when there is none, when it cannot be loaded, or
        when it records another key (a graph copied over it, of other weights): such a cache entry is
        built again and replaced, as damaged features are."""
        if not target.is_file():
            return None
        try:
            session = onnx_session(target, torch.get_num_threads())
        except Exception as error:  # onnxruntime raises its own exception types for invalid graphs
            print(f"note: int8 graph of member {self.member.name} at {target} cannot be loaded "
                  f"({str(error).strip().splitlines()[0][:120]}); building it again")
            return None
        found = session.get_modelmeta().custom_metadata_map.get(KEY_METADATA)
        if found != target.stem:
            print(f"note: int8 graph at {target} was built for other weights (key {found}), not member "
                  f"{self.member.name}'s; building it again")
            return None
        return session


def attach(members: list[Member], graphs: Path | None) -> None:
    """Make every member's int8 graph (kept in `graphs`, see `graph_folder`) its scorer in `score_features`."""
    if torch.cuda.is_available():
        print("warning: --precision int8 runs on the CPU (onnxruntime); on this GPU, auto (bf16) is faster")
    writable = cache_writable(members, graphs)
    for member in members:
        if member.scorer is None:
            member.scorer = Int8Scorer(member, graphs, writable)


def cache_writable(members: list[Member], graphs: Path | None) -> bool:
    """Whether new graphs can be kept in `graphs`; where not (read-only, full), one counted warning, and
    the graphs not kept yet are built for this run only, as unwritable feature caches are."""
    if graphs is None:
        return True
    try:
        check_writable(graphs)
        return True
    except OutputFolderError as error:
        missing = sum(not (graphs / f"{graph_key(m)}.onnx").is_file() for m in members if m.scorer is None)
        print(f"warning: int8 graph cache not written for {missing} of {len(members)} members ({error}); their "
              "graphs are built for this run only (free space, make the folder writable, or pass --cache-dir)",
              file=sys.stderr)
        return False
