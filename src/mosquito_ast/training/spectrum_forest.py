"""Fitting the spectrum-forest member (`ensemble.forest`) and writing it as ONNX, never as a pickle.

`train` calls `ensure_forest` after each member: the forest is fitted on the member's own training clips
and features, once per training set (keyed by the clips' content digest), so a sweep over seeds fits it
once. The graph computes the real-frame mean of the fbank itself (ReduceMax/ReduceMin mark padding
frames), then skl2onnx's TreeEnsembleClassifier: the same input as the AST members' graphs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from mosquito_ast_lite.io import atomic_directory

from ..checkpoints import CONFIG_NAME
from ..evaluation.baselines import TREES, random_forest
from ..data import Sample, label_names
from ..inference.forest import (FOREST_FOLDER_KIND, FOREST_KIND, GRAPH_NAME, INPUT_NAME, OUTPUT_NAME, load_forest,
                                real_frame_mean)
from ..features import FeatureCache, FeatureSettings, compute_features, file_digest

OPSET = 17
ML_OPSET = 3


def training_digest(samples: Sequence[Sample], settings: FeatureSettings) -> str:
    """What the forest learned from: each clip's content and label, and the fbank settings."""
    digest = hashlib.blake2b(digest_size=16)
    for line in sorted(f"{file_digest(s.path)} {s.label}" for s in samples):
        digest.update(line.encode() + b"\n")
    digest.update(settings.extraction_key().encode())
    return digest.hexdigest()


def forest_graph(forest, settings: FeatureSettings):
    """fbank (batch, frames, mel) -> probabilities (batch, classes): the real-frame mean, then the trees."""
    from onnx import TensorProto, helper
    from skl2onnx import to_onnx

    bins = settings.num_mel_bins
    trees = to_onnx(forest, np.zeros((1, bins), np.float32), target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                    options={id(forest): {"zipmap": False}})
    spectrum, probabilities = trees.graph.input[0].name, trees.graph.output[1].name
    prelude = [
        helper.make_node("ReduceMax", [INPUT_NAME], ["bin_max"], axes=[2], keepdims=0),
        helper.make_node("ReduceMin", [INPUT_NAME], ["bin_min"], axes=[2], keepdims=0),
        helper.make_node("Greater", ["bin_max", "bin_min"], ["sounding"]),
        helper.make_node("Cast", ["sounding"], ["real"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["real", "last_axis"], ["real_3d"]),
        helper.make_node("Mul", [INPUT_NAME, "real_3d"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "frame_axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["real", "frame_axis"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count_1"]),
        helper.make_node("Div", ["total", "count_1"], [spectrum]),
    ]
    constants = [helper.make_tensor("last_axis", TensorProto.INT64, [1], [2]),
                 helper.make_tensor("frame_axis", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
    renamed = [] if probabilities == OUTPUT_NAME else [helper.make_node("Identity", [probabilities], [OUTPUT_NAME])]
    graph = helper.make_graph(
        prelude + list(trees.graph.node) + renamed, "spectrum_forest",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", settings.max_length, bins])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(forest.classes_)])],
        initializer=[*trees.graph.initializer, *constants])
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=trees.ir_version)


def fit_forest(features: np.ndarray, targets: np.ndarray, seed: int = 0):
    """The forest on (clips, frames, mel) un-normalized fbank and class ids (float32, as the graph runs)."""
    return random_forest(seed).fit(real_frame_mean(features).astype(np.float32), targets)


def save_forest(folder: Path, forest, labels: Sequence[str], settings: FeatureSettings, share: float,
                digest: str, seed: int, data: dict) -> Path:
    """model.onnx + config.json, atomically; the graph is checked to hold nothing but ONNX operators."""
    import onnx

    graph = forest_graph(forest, settings)
    onnx.checker.check_model(graph)
    config = {"kind": FOREST_KIND, "labels": [labels[c] for c in forest.classes_], "features": settings.to_dict(),
              "vote_share": share, "training_digest": digest, "data": data,
              "features_used": "log-mel fbank averaged over its real (non-padding) frames",
              "forest": {"class": "sklearn.ensemble.RandomForestClassifier", "n_estimators": TREES,
                         "class_weight": "balanced", "random_state": seed}}
    with atomic_directory(folder, FOREST_FOLDER_KIND) as staging:
        (staging / GRAPH_NAME).write_bytes(graph.SerializeToString())
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    return folder


def ensure_forest(folder: Path, samples: Sequence[Sample], features: np.ndarray, labels: Sequence[str],
                  settings: FeatureSettings, share: float, seed: int = 0) -> Path:
    """The forest of these training clips at `folder`: kept when one fitted on the same clips and settings
    with the same share is there, else fitted and written (replacing another training set's)."""
    digest = training_digest(samples, settings)
    config = folder / CONFIG_NAME
    if config.is_file():
        stored = json.loads(config.read_text())
        if stored.get("training_digest") == digest and stored.get("vote_share") == share:
            print(f"spectrum forest of these training clips already at {folder}")
            return folder
    index = {name: i for i, name in enumerate(labels)}
    labelled = [i for i, s in enumerate(samples) if s.label in index]
    targets = np.array([index[samples[i].label] for i in labelled])
    forest = fit_forest(features[labelled], targets, seed)
    data = {"train_clips": len(labelled), "train_groups": sorted({samples[i].group for i in labelled})}
    save_forest(folder, forest, labels, settings, share, digest, seed, data)
    print(f"spectrum forest ({TREES} trees, {len(labelled)} clips, vote share {share:g}) -> {folder}")
    return folder


def forest_like(like: Path, samples: Sequence[Sample], cache: FeatureCache | None, folder: Path) -> Path:
    """A forest with the feature settings and vote share of the forest at `like`, fitted on `samples`: a
    cross-fit's forest on every session, where each fold's forest learned part of them. A clip that cannot
    be read stops it, naming the file (its fold's training read it)."""
    forest = load_forest(like)
    table = compute_features([s.path for s in samples], forest.features, cache, progress=False)
    if table.bad:
        raise table.bad[0]
    return ensure_forest(folder, samples, table.features, label_names(samples), forest.features, forest.share)
