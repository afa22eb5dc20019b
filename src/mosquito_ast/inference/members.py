"""Finding and loading ensemble members, and predicting with many of them at once.

Decoding and fbank extraction dominate the cost of evaluating small models, and every member that
shares the raw feature settings (sample rate, clip length, mel bins, frames) can share them: only the
normalization differs per member, and that is applied per batch. Old-notebook members (1024 frames)
get their own feature pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from mosquito_ast_lite.audio import AudioError
from mosquito_ast_lite.files import files_under

from ..checkpoints import (HUGGING_FACE_FORMAT, WEIGHTS_NAME, CheckpointError, checkpoint_format, model_folders,
                           named_member_folders, read_config)
from ..checkpoints.classifier import holds_classifier, is_member_folder, load_member
from ..param_groups import ReadParams
from ..data import DatasetError
from ..features import FeatureSettings, compute_features, normalize, open_cache
from ..hardware import inference_dtype, resolve_precision
from ..models.classifier import ASTClassifier

WORKING_FOLDERS = {"best-candidate"}  # `train`'s working copy of the best epoch, beside the exported member
# What scores a member in place of its PyTorch model: (un-normalized fbank, batch size) -> probabilities in the
# member's label order. The command picks it (`inference.int8.attach` under --precision int8).
Scorer = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class Member:
    """One loaded member: `name` is its folder relative to the searched folder."""

    name: str
    folder: Path
    model: ASTClassifier
    config: dict
    features: FeatureSettings
    scorer: Scorer | None = None  # None: its PyTorch model (`torch_probabilities`)

    @property
    def labels(self) -> list[str]:
        return list(self.model.labels)

    @property
    def format(self) -> str:
        return self.config.get("format", "")

    @property
    def train_groups(self) -> list[str] | None:
        """Recordings the member was trained on; None when unknown (old-notebook members)."""
        groups = self.config.get("data", {}).get("train_groups")
        return None if groups is None else list(groups)


def find_member_folders(models_dir: str | Path) -> list[Path]:
    """Folders under `models_dir` (itself included) holding a classifier's weights, sorted; hidden
    folders, `train`'s working copies and encoders without a classification head are skipped, and so
    are transformers exports of members (copies, named in a note)."""
    root = Path(models_dir)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such models folder")
    candidates = [root, *sorted(p.parent for p in files_under(root) if p.name == WEIGHTS_NAME)]  # links followed
    found = []
    for folder in dict.fromkeys(candidates):
        parts = folder.relative_to(root).parts
        if any(p.startswith(".") or p in WORKING_FOLDERS for p in parts):
            continue
        if not (is_member_folder(folder) and holds_classifier(folder)):
            continue
        if checkpoint_format(read_config(folder)) == HUGGING_FACE_FORMAT:
            print(f"note: {folder} is a transformers export (save_pretrained), not a member; skipped")
            continue
        found.append(folder)
    return found


def load_members(models_dir: str | Path | Sequence[str | Path], labels: Sequence[str] | None = None,
                 progress: bool = False) -> list[Member]:
    """Every member under `models_dir` (a folder or a list of them; a member reached twice counts once),
    loaded from its own config.json. Label maps are compared by name: all members must know the same
    classes (their orders may differ), else an error names the member. Old-notebook members (weights
    only) need `labels` in their old id order."""
    roots = model_folders(models_dir)
    folders = named_member_folders(roots, [folder for root in roots for folder in find_member_folders(root)])
    if not folders:
        listing = ", ".join(map(str, roots))
        raise CheckpointError(f"{listing}: no member folders ({WEIGHTS_NAME} with classifier weights) found")
    from tqdm.auto import tqdm

    members = []
    for name, folder in tqdm(folders.items(), desc="members", disable=not progress, leave=False):
        model, config = load_member(folder, list(labels) if labels else None)
        members.append(Member(name, folder, model, config, FeatureSettings.from_dict(config["features"])))
    reference = members[0]
    for member in members[1:]:
        if set(member.labels) != set(reference.labels):
            extra = sorted(set(member.labels) - set(reference.labels))
            missing = sorted(set(reference.labels) - set(member.labels))
            raise DatasetError(
                f"member {member.name} ({member.folder}) does not share the label map of {reference.name}: "
                f"extra classes {extra}, missing classes {missing}. Label maps are compared by name and never "
                f"remapped; evaluate members of the same classes together")
    return members


def ensemble_labels(members: Sequence[Member]) -> list[str]:
    """The class order of every probability array here: the first member's."""
    return members[0].labels


class Probabilities(NamedTuple):
    """`probabilities`: (members, files, classes) float32, columns in `ensemble_labels(members)`
    order, rows in `paths` order; `paths`: the readable files (input order); `bad`: the others."""

    probabilities: np.ndarray
    paths: list[str]
    bad: list[AudioError]


def inference_model(member: Member, dtype: torch.dtype, device: torch.device) -> ASTClassifier:
    """The member's model on `device` with `dtype` weights, cast in place once: later calls at the same
    precision find it ready, and an ensemble holds one copy of its weights. Weights already cast below
    fp32 are refused for any other dtype, since casting them back would score a rounded model."""
    weight = next(member.model.parameters())
    if weight.dtype == dtype and weight.device == device:
        return member.model.eval()  # ready: `predict` asks once per file, and `.to` walks every module
    if weight.dtype not in (torch.float32, dtype):
        raise ValueError(f"member {member.name} already holds {weight.dtype} weights; load it again to score "
                         f"it with {dtype} weights")
    return member.model.to(device=device, dtype=dtype).eval()


def torch_probabilities(member: Member, table: np.ndarray, dtype: torch.dtype, device: torch.device,
                        batch_size: int = 32, step: Callable[[], object] = lambda: None) -> np.ndarray:
    """The member's PyTorch probabilities (items, classes), in its own label order, from un-normalized
    features: normalized per batch with its own statistics, `dtype` weights (`inference_model`), softmax in
    float32 after the head; `step` runs after each batch (a progress bar)."""
    result = np.zeros((len(table), len(member.labels)), np.float32)
    with torch.inference_mode():
        model = inference_model(member, dtype, device)
        for start in range(0, len(table), batch_size):
            batch = torch.from_numpy(normalize(table[start:start + batch_size], member.features))
            logits = model(batch.to(device=device, dtype=dtype))
            result[start:start + batch_size] = logits.float().softmax(dim=-1).cpu().numpy()
            step()
    return result


def score_features(members: Sequence[Member], features: dict[str, np.ndarray], precision: str,
                   batch_size: int = 32, device: str | torch.device | None = None,
                   progress: bool = False) -> np.ndarray:
    """Probabilities (members, items, classes) from un-normalized features, one array (items, T, mel)
    per raw feature setting keyed by `FeatureSettings.extraction_key()`, in the same item order.

    A member with a `scorer` is scored by it; the others by their PyTorch model (`torch_probabilities`)
    with the weights of the (already resolved) `precision` (bf16 for bf16-mixed, cast in place). `int8`
    needs every member's int8 scorer, picked by the command (`mosquito_ast.inference.int8.attach`).
    Columns follow `ensemble_labels(members)`.
    """
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = inference_dtype(precision)
    labels = ensemble_labels(members)
    count = len(next(iter(features.values())))
    result = np.zeros((len(members), count, len(labels)), np.float32)
    bar = tqdm(total=len(members) * -(-count // batch_size), desc="inference", disable=not progress, leave=False)
    for index, member in enumerate(members):
        table = features[member.features.extraction_key()]
        order = [member.labels.index(name) for name in labels]
        if member.scorer is not None:
            result[index] = member.scorer(table, batch_size)[:, order]
            bar.update(-(-count // batch_size))
        elif precision == "int8":
            raise ValueError(f"member {member.name}: int8 runs its onnxruntime graph; pick the int8 scorers "
                             f"first (mosquito_ast.inference.int8.attach)")
        else:
            result[index] = torch_probabilities(member, table, dtype, device, batch_size, bar.update)[:, order]
    bar.close()
    return result


def predict_probabilities(members: Sequence[Member], paths: Sequence[str | Path], params: ReadParams,
                          batch_size: int = 32, progress: bool = True,
                          device: str | torch.device | None = None) -> Probabilities:
    """Class probabilities of every member for every file.

    Files are decoded and featurized once per raw feature setting (through the feature cache of
    `params`: --cache-dir / --no-cache, --num-workers), then scored by `score_features`;
    `params.precision` is resolved for the device. Files unreadable for any member's settings are
    left out and returned in `bad`.
    """

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(params.precision, cuda=device.type == "cuda")
    paths = [str(p) for p in paths]
    settings = {m.features.extraction_key(): m.features for m in members}
    tables = {key: compute_features(paths, value, open_cache(params.cache_dir, params.no_cache), num_workers=params.num_workers,
                                    description=f"features {value.label}", progress=progress)
              for key, value in settings.items()}
    readable = set.intersection(*(set(t.paths) for t in tables.values()))
    bad = {e.path: e for t in tables.values() for e in t.bad}
    kept = [p for p in paths if p in readable]
    aligned = {}
    for key, table in tables.items():
        position = {p: i for i, p in enumerate(table.paths)}
        aligned[key] = table.features if table.paths == kept else table.features[[position[p] for p in kept]]
    if not kept:
        return Probabilities(np.zeros((len(members), 0, len(ensemble_labels(members))), np.float32), [],
                             [bad[p] for p in paths if p in bad])
    probabilities = score_features(members, aligned, precision, batch_size, device, progress)
    return Probabilities(probabilities, kept, [bad[p] for p in paths if p in bad])
