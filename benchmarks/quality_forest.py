"""The spectrum-forest member in `quality.py`: its rows, the AST members' own vote beside it, its seeds.

`train` fits the forest beside each fold's members (`mosquito_ast.inference.forest`), so `evaluate`'s soft
vote is the heterogeneous default. Beside it: the AST members' own soft vote ("AST soft vote", the vote
before the forest joined), the forest as one more member (share 1 / (members + 1)), the forest alone, and
the default vote with the forest refitted at seeds 1-3 on the same clips (its seed spread, mean ± sd).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mosquito_ast.data import discover
from mosquito_ast.inference.forest import FOREST_FOLDER, is_forest_folder, load_forest, real_frame_mean
from mosquito_ast.evaluation.metrics import label_metrics
from mosquito_ast.features import FeatureCache, compute_features
from mosquito_ast.training.spectrum_forest import fit_forest, forest_like

METRICS = ("balanced_accuracy", "accuracy", "f1_macro")
FOREST = "spectrum forest"  # the member `train` fits beside each fold's members (`ensemble.forest`)
AST_VOTE = "AST soft vote"
HYBRID = "AST soft vote + forest as one more member"
SEEDED = "soft vote, forest seeds 1-3"


def is_forest(system: str) -> bool:
    return Path(system).name == FOREST_FOLDER


def probabilities_of(predictions: pd.DataFrame, system: str, labels: list[str]) -> np.ndarray:
    return predictions[[f"{system}:p:{name}" for name in labels]].to_numpy()


def hybrid_labels(evaluation, labels: list[str]) -> dict[str, np.ndarray]:
    """The AST members' own soft vote (what the vote was before the forest joined it) and the forest as
    one more member (share 1 / (members + 1)), beside the default (`soft vote`, the forest's configured share)."""
    predictions, members = evaluation.predictions, evaluation.members
    ast = [m for m in members.member if not is_forest(m)]
    vote = np.mean([probabilities_of(predictions, m, labels) for m in ast], axis=0)
    systems = {AST_VOTE: vote.argmax(axis=1)}
    forests = [m for m in members.member if is_forest(m)]
    if forests:
        forest = probabilities_of(predictions, forests[0], labels)
        systems[HYBRID] = (vote * len(ast) + forest).argmax(axis=1)
    return systems


def seeded_forest_rows(fold: str, evaluation, train_manifest: str, labels: list[str], group_by: str,
                       cache: str) -> list[dict]:
    """The default vote with the forest refitted at seeds 1-3 on the same training clips: the forest's own
    seed spread (mean ± sd), where the members' spread is in "mean member"."""
    forests = evaluation.members[evaluation.members.format == "spectrum-forest"]
    if forests.empty:
        return []
    forest = load_forest(forests.folder.iloc[0])
    train = discover(train_manifest, group_by)
    cache = FeatureCache(cache)
    features = compute_features([s.path for s in train], forest.features, cache, progress=False).features
    scored = compute_features(list(evaluation.predictions["path"]), forest.features, cache, progress=False).features
    ast = [m for m in evaluation.members.member if not is_forest(m)]
    vote = np.mean([probabilities_of(evaluation.predictions, m, labels) for m in ast], axis=0)
    y_true = evaluation.predictions["true_label"].map(labels.index).to_numpy()
    scores = []
    for seed in (1, 2, 3):
        fitted = fit_forest(features, np.array([labels.index(s.label) for s in train]), seed)
        spectrum = np.zeros_like(vote)
        spectrum[:, fitted.classes_] = fitted.predict_proba(real_frame_mean(scored).astype(np.float32))
        predicted = ((1 - forest.share) * vote + forest.share * spectrum).argmax(axis=1)
        scores.append(label_metrics(y_true, predicted, len(labels)))
    table = pd.DataFrame(scores)
    return [{"fold": fold, "system": SEEDED, **table[list(METRICS)].mean().to_dict(),
             **{f"{m}_sd": table[m].std(ddof=0) for m in METRICS}}]


def cross_fit_models(data: str, group_by: str, cache: str, output: Path, member_folders: list[Path]) -> list[Path]:
    """Every fold's AST members and one spectrum forest fitted on every clip of `data`, as train fits it
    for members trained on all of it (each fold's own forest learned that fold's training clips only)."""
    members = [p for f in member_folders for p in sorted(f.iterdir())
               if p.is_dir() and p.name != FOREST_FOLDER and not p.name.startswith(".")]
    fold_forest = member_folders[0] / FOREST_FOLDER
    if not is_forest_folder(fold_forest):
        return members
    folder = forest_like(fold_forest, discover(data, group_by), FeatureCache(cache),
                         output / "members" / "all-folds" / FOREST_FOLDER)
    return [*members, folder]

