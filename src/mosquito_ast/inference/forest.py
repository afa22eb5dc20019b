"""The spectrum-forest member: a random forest on the clip's time-averaged log-mel fbank, as an ONNX graph.

Trained on every labelled session, a forest on the time-averaged spectrum generalises to sessions never
heard better than the transformers (issue 25: 0.64-0.69 against 0.54 balanced accuracy), so `train`
fits one beside the members (`<output>/best/spectrum-forest/`) and every command votes with it.

Its folder holds `model.onnx` (input `fbank`, the same un-normalized fbank the AST members' graphs take;
the mean over real frames and the trees are both inside the graph, so loading runs no code and the field
runtime needs nothing new) and `config.json` (kind, labels, feature settings, vote share, training clips'
digest, forest settings). Its share of the soft vote is a fraction of the whole vote, so it does not
shrink as members are added; in the hard vote it counts as one member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mosquito_ast_lite.files import files_under
from mosquito_ast_lite.io import FolderKind
from mosquito_ast_lite.runtime import INPUT_NAME, ONNX_NAME, OUTPUT_NAME

from ..checkpoints import CONFIG_NAME, CheckpointError, model_folders, named_member_folders
from ..data import DatasetError
from ..features import FeatureCache, FeatureSettings, compute_features

FOREST_KIND = "mosquito-ast-spectrum-forest"
FOREST_FOLDER = "spectrum-forest"
GRAPH_NAME = ONNX_NAME  # the forest's graph takes and gives what an export's does
FOREST_FOLDER_KIND = FolderKind("a spectrum-forest member", (GRAPH_NAME,), (GRAPH_NAME, CONFIG_NAME))


def real_frame_mean(features: np.ndarray) -> np.ndarray:
    """(..., frames, mel) -> (..., mel): the mean over frames that hold sound. A frame whose every mel bin
    holds one value is padding (zero padding gives the log floor, frames past the clip's end 0), so a
    0.625 s clip padded to 1 s has the same mean as the clip itself, whatever the clip length."""
    real = (features.max(axis=-1) > features.min(axis=-1)).astype(features.dtype)
    counts = np.maximum(real.sum(axis=-1, keepdims=True), 1)
    return (features * real[..., None]).sum(axis=-2) / counts


@dataclass
class ForestMember:
    """One loaded spectrum forest: `name` is its folder relative to the searched folder."""

    name: str
    folder: Path
    config: dict
    features: FeatureSettings
    session: Any  # onnxruntime.InferenceSession of model.onnx

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    @property
    def share(self) -> float:
        return float(self.config["vote_share"])

    def probabilities(self, features: np.ndarray, labels: Sequence[str]) -> np.ndarray:
        """(items, frames, mel) un-normalized fbank -> (items, classes) float32, columns in `labels` order."""
        if len(features) == 0:
            return np.zeros((0, len(labels)), np.float32)
        output = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(features, np.float32)})[0]
        return output[:, [self.labels.index(name) for name in labels]].astype(np.float32)


def is_forest_folder(folder: Path) -> bool:
    config = folder / CONFIG_NAME
    if not (folder / GRAPH_NAME).is_file() or not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("kind") == FOREST_KIND
    except (json.JSONDecodeError, OSError, AttributeError):
        return False


def find_forest_folders(models: str | Path | Sequence[str | Path]) -> dict[str, Path]:
    """Forest folders under the models folder(s) by name (as members are named), sorted; hidden folders
    skipped. Under each folder only the forests nearest to it count: a forest stands for every member below
    its own folder, so a cross-fit's forest on every session (`<sweep>/<name>/spectrum-forest`) replaces its
    folds' forests (`<sweep>/<name>-fold<k>/best/spectrum-forest`) when the whole sweep is loaded, and each
    fold's own forest votes when one fold is."""
    roots = model_folders(models)
    found = []
    for root in roots:
        candidates = [root, *sorted(p.parent for p in files_under(root) if p.name == GRAPH_NAME)] if root.is_dir() else []
        forests = [f for f in candidates if not any(p.startswith(".") for p in f.relative_to(root).parts)
                   and is_forest_folder(f)]
        nearest = min((len(f.relative_to(root).parts) for f in forests), default=0)
        found += [f for f in forests if len(f.relative_to(root).parts) == nearest]
    return named_member_folders(roots, dict.fromkeys(found))


def load_forest(folder: str | Path, name: str | None = None) -> ForestMember:
    """A forest folder as written by `training.spectrum_forest.save_forest`; a bad config is a one-line error."""
    import onnxruntime

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
        features = FeatureSettings.from_dict(config["features"])
        share = float(config["vote_share"])
        labels = list(config["labels"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: not a spectrum-forest config ({error})") from error
    if not 0 < share < 1 or not labels:
        raise CheckpointError(f"{folder / CONFIG_NAME}: vote_share must lie between 0 and 1 and labels be given")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(folder / GRAPH_NAME), options, providers=["CPUExecutionProvider"])
    return ForestMember(name or folder.name, folder, config, features, session)


def load_forests(models: str | Path | Sequence[str | Path], labels: Sequence[str]) -> list[ForestMember]:
    """Every forest under `models`, its label map compared by name with the AST members' `labels` (a
    mismatch is an error naming the forest); all must share one vote share."""
    forests = [load_forest(folder, name) for name, folder in find_forest_folders(models).items()]
    for forest in forests:
        if set(forest.labels) != set(labels):
            raise DatasetError(f"spectrum forest {forest.folder} does not share the members' label map: extra "
                               f"classes {sorted(set(forest.labels) - set(labels))}, missing classes "
                               f"{sorted(set(labels) - set(forest.labels))}. Label maps are compared by name")
    shares = {f.share for f in forests}
    if len(shares) > 1:
        raise CheckpointError(f"spectrum forests with different vote shares {sorted(shares)}: "
                              f"{', '.join(str(f.folder) for f in forests)}")
    return forests


def vote_weights(weights: np.ndarray, forests: Sequence[ForestMember]) -> tuple[np.ndarray, np.ndarray]:
    """(soft, hard) weights over the AST members then the forests: in the soft vote the forests together
    hold their share and the members the rest, in their own proportions; in the hard vote each forest
    counts as one member."""
    if not forests:
        return weights, weights
    count, share = len(weights), forests[0].share
    soft = np.concatenate([(1 - share) * weights, np.full(len(forests), share / len(forests))])
    hard = np.concatenate([weights * count, np.ones(len(forests))]) / (count + len(forests))
    return soft, hard


def forest_probabilities(forests: Sequence[ForestMember], paths: Sequence[str], labels: Sequence[str],
                         cache: FeatureCache | None = None, num_workers: int = 0) -> np.ndarray:
    """(forests, files, classes) probabilities of files the members could read (their fbank comes from the
    feature cache the members filled when the settings agree); a file a forest cannot read is an error."""
    result = np.zeros((len(forests), len(paths), len(labels)), np.float32)
    for index, forest in enumerate(forests):
        table = compute_features(paths, forest.features, cache, num_workers=num_workers,
                                 description="spectrum forest features", progress=False)
        if table.bad:
            raise table.bad[0]
        result[index] = forest.probabilities(table.features, labels)
    return result


def join_forests(model, forests: Sequence[ForestMember], labels: Sequence[str]):
    """The AST members' ONNX graph `model` (input `fbank`, output `probabilities` in `labels` order) with the
    forests' graphs beside it on the same input: output (1 - share) * members + share * mean(forests), as
    `vote_weights` votes. For `export`, so the field runtime runs the heterogeneous vote as one graph."""
    import onnx
    from onnx import compose, helper

    graph = model.graph
    members_output = "members_probabilities"
    for node in graph.node:
        node.output[:] = [members_output if name == OUTPUT_NAME else name for name in node.output]
    share = forests[0].share
    graph.node.append(helper.make_node("Mul", [members_output, "members_share"], ["members_term"]))
    terms = ["members_term"]
    constants = [helper.make_tensor("members_share", onnx.TensorProto.FLOAT, [], [1 - share]),
                 helper.make_tensor("forest_share", onnx.TensorProto.FLOAT, [], [share / len(forests)])]
    for index, forest in enumerate(forests):
        prefix = f"forest{index}_"
        trees = compose.add_prefix(onnx.load(str(forest.folder / GRAPH_NAME)), prefix).graph
        for node in trees.node:
            node.input[:] = [INPUT_NAME if name == prefix + INPUT_NAME else name for name in node.input]
        order = helper.make_tensor(f"{prefix}order", onnx.TensorProto.INT64, [len(labels)],
                                   [forest.labels.index(name) for name in labels])
        graph.node.extend([*trees.node,
                           helper.make_node("Gather", [prefix + OUTPUT_NAME, order.name], [f"{prefix}ordered"], axis=1),
                           helper.make_node("Mul", [f"{prefix}ordered", "forest_share"], [f"{prefix}term"])])
        graph.initializer.extend([*trees.initializer, order])
        terms.append(f"{prefix}term")
    graph.node.append(helper.make_node("Sum", terms, [OUTPUT_NAME]))
    graph.initializer.extend(constants)
    if not any(o.domain == "ai.onnx.ml" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
    return model
