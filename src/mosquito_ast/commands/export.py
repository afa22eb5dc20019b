"""`export`: a member, or a whole ensemble with its soft vote, as one ONNX graph from the clip's fbank to
class probabilities, with a `model.json` beside it; `--int8` adds an onnxruntime-quantized copy.

The graph (`onnx_graphs.EnsembleGraph`) takes the un-normalized log-mel fbank as `features.fbank` returns
it, input `fbank` (batch, frames, mel) float32. Inside it each member normalizes with its own statistics,
runs and takes its softmax; the columns follow the first member's label order and the probabilities are
averaged with the vote's weights into `probabilities` (batch, classes). A runtime without PyTorch
(`mosquito_ast_lite`) needs only the fbank and onnxruntime.

The export checks itself: onnxruntime and PyTorch (the path of `evaluate` and `predict`, in fp32) score
the same clips; the largest probability difference and the share of identical labels go into model.json.
The ONNX file's metadata (key `mosquito_ast`) holds the labels, feature settings, members and tool
version. Weights beyond 2 GB (about six AST-base members) go to one external data file beside the graph
(`model.onnx.data`); model.json lists every file of the export under "files".
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mosquito_ast_lite.graph_meta import METADATA_KEY
from mosquito_ast_lite.io import FolderKind, atomic_directory, atomic_write_json, check_replaceable, scratch_folder
from mosquito_ast_lite.runtime import INPUT_NAME, INT8_NAME, JSON_NAME, MODEL_FORMAT, ONNX_NAME, OUTPUT_NAME

from .. import __version__
from ..checkpoints import CheckpointError
from ..config import ConfigError, ExportParams
from ..data import DatasetError, Sample, discover, discover_unlabelled
from ..inference.votes import parse_weights, soft_vote
from ..inference.forest import ForestMember, join_forests, load_forests, vote_weights
from ..inference.members import Member, ensemble_labels, load_members, score_features
from ..features import FeatureSettings, compute_features, open_cache
from ..hardware import use_physical_cores
from ..inference.onnx_graphs import (OPSET, QUANTIZED_OPS, Check, EnsembleGraph, compare, data_name,
                          export_graph, onnx_session, quantize, quantize_static, run_onnx, save_onnx,
                          untie_initializers)

EXPORT_FOLDER = FolderKind("an export", (JSON_NAME,), (JSON_NAME, ONNX_NAME, INT8_NAME, "*.onnx.data"))
# Dynamic quantization: both tried, QInt8 kept unless QUInt8 agrees on more clips (speeds: benchmarks/README.md).
WEIGHT_TYPES = ("QInt8", "QUInt8")
MAX_ONNX_BYTES = 2 * 1024 ** 3 - 64 * 1024 ** 2  # one protobuf file holds < 2 GiB; keep a margin for the graph
FP32_TOLERANCE = 1e-3  # a larger fp32 difference means a broken export: warned about


@dataclass
class ExportResult:
    """What `export` wrote: the folder, model.json's content and the summary lines it printed."""

    output: Path
    info: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    @property
    def onnx(self) -> Path:
        return self.output / self.info["onnx"]


def shared_features(members: Sequence[Member]) -> FeatureSettings:
    """The first member's feature settings; every member must extract its fbank the same way."""
    reference = members[0]
    for member in members[1:]:
        if member.features.extraction_key() != reference.features.extraction_key():
            raise ConfigError(
                f"member {member.name} ({member.folder}) extracts features as {member.features.extraction_key()}, "
                f"{reference.name} as {reference.features.extraction_key()}: one exported graph takes one fbank; "
                f"export members of the same feature settings together")
    return reference.features


def needs_external_data(members: Sequence[Member]) -> bool:
    """Whether the members' fp32 weights exceed what one ONNX (protobuf) file can hold."""
    return sum(p.numel() * 4 for m in members for p in m.model.parameters()) > MAX_ONNX_BYTES


def write_onnx(traced: Path, path: Path, metadata: dict[str, Any], external: bool,
               forests: Sequence[ForestMember] = ()) -> None:
    """The traced graph at `path`, the spectrum forests joined to its vote, with `metadata` (JSON) under
    METADATA_KEY in the model's metadata."""
    import onnx

    model = onnx.load(str(traced))
    if forests:
        model = join_forests(model, forests, metadata["labels"])
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
    save_onnx(model, path, external)


def spread(items: Sequence, count: int) -> list:
    """`count` items evenly spaced over `items` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, count).round().astype(int))]


def training_clips(members: Sequence[Member]) -> tuple[list[Sample], str] | None:
    """The labeled clips of the first member whose recorded training data is still where it was."""
    for member in members:
        source = member.config.get("data", {}).get("train")
        if not source or not Path(source).exists():
            continue
        try:
            samples = discover(source)
        except DatasetError:
            continue
        if samples:
            return samples, f"training clips of {member.name} ({source})"
    return None


def check_clips(members: Sequence[Member], params: ExportParams, workdir: Path) -> tuple[list[str], str]:
    """Paths of the self-check clips and where they come from: --check-data, else the members' training
    clips when reachable, else clips generated into `workdir` at the members' sample rate and length."""
    if params.check_data:
        return spread(sorted(discover_unlabelled(params.check_data)), params.check_clips), str(params.check_data)
    found = training_clips(members)
    if found:
        samples, source = found
        ordered = sorted(samples, key=lambda s: (s.label, s.path))
        return [s.path for s in spread(ordered, params.check_clips)], source
    from ..synth import DEFAULT_SPECIES, generate_dataset

    settings = members[0].features
    recordings = 2
    per_recording = -(-params.check_clips // (recordings * len(DEFAULT_SPECIES)))
    paths = generate_dataset(workdir / "clips", recordings_per_species=recordings, clips_per_recording=per_recording,
                             clip_seconds=settings.clip_seconds, sample_rate=settings.sample_rate, seed=0)
    return [str(p) for p in spread(sorted(paths), params.check_clips)], "generated clips (training clips not found)"


def clip_features(paths: Sequence[str], settings: FeatureSettings, params: ExportParams, source: str) -> np.ndarray:
    table = compute_features(paths, settings, open_cache(params.cache_dir, params.no_cache),
                             description="features", progress=params.progress)
    if not len(table.paths):
        raise DatasetError(f"{source}: none of the {len(paths)} clips could be read")
    return table.features


def pytorch_probabilities(members: Sequence[Member], features: np.ndarray, weights: np.ndarray,
                          batch_size: int) -> np.ndarray:
    """The soft vote as `evaluate` and `predict` compute it, in fp32 on the CPU: (items, classes)."""
    key = members[0].features.extraction_key()
    member_probabilities = score_features(members, {key: features}, "32", batch_size, device="cpu")
    return soft_vote(member_probabilities, weights).astype(np.float32)


def _megabytes(folder: Path, onnx_name: str) -> str:
    """Size of a graph with its external data file, if any."""
    size = sum((folder / n).stat().st_size for n in (onnx_name, data_name(onnx_name)) if (folder / n).exists())
    return f"{size / 1e6:.1f} MB"


def export(params: ExportParams) -> ExportResult:
    """Write `model.onnx` (+ `model.int8.onnx` with --int8, + their `.data` files beyond 2 GB) and `model.json`
    into `params.output`, after checking ONNX against PyTorch on a few clips. The files are made in a scratch
    folder (`mosquito-ast-export-<pid>-*` in the system's temp folder; those of killed exports are removed) and
    the whole folder swapped in at once: a crash never leaves new graphs beside an old model.json."""
    output = export_folder(params)
    use_physical_cores()
    members = load_members(params.models, params.labels or None, params.progress)
    names = [m.name for m in members]
    weights = parse_weights(params.weights, names)
    labels = ensemble_labels(members)
    forests = load_forests(params.models, labels) if params.spectrum_forest else []
    settings = shared_features([*members, *forests])
    external = needs_external_data(members)
    for member in members:
        member.model.float().eval()
    graph = EnsembleGraph(members, weights).eval()
    lines: list[str] = []
    say = partial(print_and_keep, lines)
    info: dict[str, Any] = {
        "format": MODEL_FORMAT, "labels": labels, "features": settings.to_dict(), "members": names,
        "weights": [float(w) for w in weights], "precision": "int8" if params.int8 else "fp32",
        "spectrum_forests": {f.name: {"vote_share": f.share, "training_digest": f.config.get("training_digest")}
                             for f in forests},
        "onnx": INT8_NAME if params.int8 else ONNX_NAME,
    }
    with scratch_folder("mosquito-ast-export-") as workdir:
        made = workdir / "made"
        (workdir / "traced").mkdir()
        made.mkdir()
        export_graph(graph, workdir / "traced" / ONNX_NAME, settings)
        metadata = {key: value for key, value in info.items() if key not in ("onnx", "precision")}
        write_onnx(workdir / "traced" / ONNX_NAME, made / ONNX_NAME, {**metadata, "tool_version": __version__},
                   external, forests)
        paths, source = check_clips(members, params, workdir)
        features = clip_features(paths, settings, params, source)
        reference = reference_probabilities(members, forests, weights, labels, features, params.batch_size)
        fp32 = compare(run_onnx(onnx_session(made / ONNX_NAME), features, params.batch_size), reference)
        kind = f"ensemble of {len(members)} members" if len(members) > 1 else f"member {names[0]}"
        kind += f" and {len(forests)} spectrum forest(s)" if forests else ""
        say(f"export: {kind} -> {output / ONNX_NAME} (fp32, {_megabytes(made, ONNX_NAME)})")
        say(f"self-check on {len(features)} clips ({source}), ONNX fp32 vs PyTorch: {fp32.line()}")
        if not fp32.finite:
            raise CheckpointError(f"{output}: the fp32 graph gives NaN/inf probabilities on the self-check clips "
                                  f"({source}); nothing was written")
        if not fp32.max_probability_difference <= FP32_TOLERANCE:
            say(f"warning: the fp32 graph differs from PyTorch by more than {FP32_TOLERANCE:g}")
        self_check: dict[str, Any] = {"clips": len(features), "source": source, **fp32.to_dict(),
                                      "fp32": fp32.to_dict()}
        if params.int8:
            say(add_int8(made, workdir, features, reference, params, settings, external, info, self_check, source))
        files = sorted(p.name for p in made.iterdir())
        info.update(graph_record(files, settings, labels, members, self_check))
        move_in(made, output, files, info)
    if external:
        say(f"weights beyond 2 GB: stored in {', '.join(f for f in files if f.endswith('.data'))} beside the graph; "
            f"copy the whole folder")
    say(f"wrote {output / JSON_NAME}")
    return ExportResult(output, info, lines)


def print_and_keep(lines: list[str], line: str) -> None:
    """Print a summary line and keep it for `ExportResult.lines`."""
    lines.append(line)
    print(line)


def graph_record(files: list[str], settings: FeatureSettings, labels: list[str], members: Sequence[Member],
                 self_check: dict[str, Any]) -> dict[str, Any]:
    """What model.json says of the files, the graph's input and output, and the self-check."""
    return {"files": [*files, JSON_NAME],
            "input": {"name": INPUT_NAME, "shape": ["batch", settings.max_length, settings.num_mel_bins],
                      "normalized": False},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", len(labels)]},
            "member_features": {m.name: m.features.to_dict() for m in members},
            "opset": OPSET, "tool_version": __version__, "self_check": self_check}


def export_folder(params: ExportParams) -> Path:
    """--output, once it may be written: missing, empty, or an export (with --overwrite); checked before any
    work, since the export replaces the whole folder (never a user's)."""
    output = Path(params.output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output}: exists and is not a folder")
    if (output / ONNX_NAME).exists() and not params.overwrite:
        raise FileExistsError(f"{output / ONNX_NAME}: an export already exists here (use --overwrite to replace it)")
    return check_replaceable(output, EXPORT_FOLDER)


def reference_probabilities(members: list, forests: list, weights: np.ndarray, labels: list[str],
                            features: np.ndarray, batch_size: int) -> np.ndarray:
    """PyTorch's soft vote on the self-check clips, with the forests' own graphs voted in as `evaluate` and
    `predict` vote them."""
    reference = pytorch_probabilities(members, features, weights, batch_size)
    if forests:
        soft, _ = vote_weights(weights, forests)
        reference = reference * (1 - forests[0].share) + sum(
            w * f.probabilities(features, labels) for w, f in zip(soft[len(members):], forests))
    return reference


def add_int8(made: Path, workdir: Path, features: np.ndarray, reference: np.ndarray, params: ExportParams,
             settings: FeatureSettings, external: bool, info: dict, self_check: dict, source: str) -> str:
    """Quantize the fp32 graph (the best of the tried methods), record it in `info` and `self_check`;
    returns the line that reports it."""
    output = Path(params.output)
    info["onnx_fp32"] = ONNX_NAME
    quantization, int8 = _quantize_best(made, workdir, features, reference, params, settings, external)
    info["quantization"] = quantization
    if not int8.finite:
        raise CheckpointError(f"{output}: the int8 graph gives NaN/inf probabilities on the self-check "
                              f"clips ({source}); nothing was written")
    self_check.update(int8.to_dict())
    self_check["int8"] = int8.to_dict()
    return (f"int8 ({quantization['method']}, {quantization['weight_type']} weights) vs PyTorch: {int8.line()} "
            f"-> {output / INT8_NAME} ({_megabytes(made, INT8_NAME)})")


def move_in(made: Path, output: Path, files: list[str], info: dict) -> None:
    """Swap the made files and model.json in as one folder: never new graphs beside an old model.json."""
    with atomic_directory(output, EXPORT_FOLDER) as staging:
        for name in files:
            shutil.move(made / name, staging / name)
        atomic_write_json(staging / JSON_NAME, info)


def _quantize_best(made: Path, workdir: Path, features: np.ndarray, reference: np.ndarray, params: ExportParams,
                   settings: FeatureSettings, external: bool) -> tuple[dict[str, Any], Check]:
    """Quantize `made`/model.onnx into `made`/model.int8.onnx: statically with --calibration clips, else
    dynamically with QInt8 weights, or QUInt8 where those agree with PyTorch on more self-check clips."""
    (workdir / "untied").mkdir()
    source = untie_initializers(made / ONNX_NAME, workdir / "untied" / ONNX_NAME, external)
    if params.calibration:
        paths = spread(discover_unlabelled(params.calibration), params.calibration_clips)
        calibration = clip_features(paths, settings, params, str(params.calibration))
        quantize_static(source, made / INT8_NAME, calibration, params.batch_size, external)
        check = compare(run_onnx(onnx_session(made / INT8_NAME), features, params.batch_size), reference)
        return {"method": "static", "weight_type": "QInt8", "activation_type": "QInt8", "format": "QDQ",
                "calibration_clips": len(calibration), "ops": QUANTIZED_OPS}, check
    candidates: dict[str, Check] = {}
    for weight_type in WEIGHT_TYPES:
        folder = workdir / weight_type
        folder.mkdir()
        quantize(source, folder / INT8_NAME, weight_type, external)
        candidates[weight_type] = compare(run_onnx(onnx_session(folder / INT8_NAME), features, params.batch_size),
                                          reference)
    best = max(WEIGHT_TYPES, key=lambda t: (candidates[t].same_label, t == WEIGHT_TYPES[0]))
    for produced in (workdir / best).iterdir():
        shutil.move(produced, made / produced.name)
    return {"method": "dynamic", "weight_type": best, "ops": QUANTIZED_OPS,
            "candidates": {t: c.to_dict() for t, c in candidates.items()}}, candidates[best]
