"""members.csv: what each member and spectrum forest of an evaluated ensemble is, how it was trained and
selected, and which of the evaluated recordings it learned from."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data import Sample
from ..inference.forest import ForestMember
from ..inference.members import Member


def selected_on(member: Member, here: Path) -> bool | None:
    """Whether the member picked its best epoch on the evaluated folder; None where its config records no
    data (old-notebook members), so nobody can tell."""
    data = member.config.get("data")
    if data is None:
        return None
    validation = data.get("validation")
    return (member.config.get("selected", "best") == "best" and bool(validation)
            and Path(validation).resolve() == here)


def member_table(members: Sequence[Member], weights: np.ndarray, samples: Sequence[Sample],
                 data_dir: str) -> pd.DataFrame:
    """members.csv rows of the members: their settings, recipe, selection and training recordings."""
    evaluated = {s.group for s in samples}
    here = Path(data_dir).resolve()
    rows = []
    for member, weight in zip(members, weights):
        training = member.config.get("training", {})
        data = member.config.get("data", {})
        groups = member.train_groups
        augment = training.get("augment")
        rows.append({
            "member": member.name, "folder": str(member.folder), "format": member.format, "weight": weight,
            "feature_settings": member.features.extraction_key(), "norm_mean": member.features.norm_mean,
            "norm_std": member.features.norm_std, "preset_hidden_size": member.model.encoder.config.hidden_size,
            "encoder_layers": member.model.encoder.config.num_hidden_layers, "preset": training.get("preset"),
            "norm_stats": training.get("norm_stats"),
            "augment": None if augment is None else "+".join(augment) or "none", "epochs": training.get("epochs"),
            "selected": member.config.get("selected"),
            "selection_metric": (member.config.get("best_metric") or {}).get("name"),
            "validation_data": data.get("validation"), "selected_on_evaluated": selected_on(member, here),
            "seed": training.get("seed"), "optimizer": training.get("optimizer"), "scheduler": training.get("scheduler"),
            "learning_rate": training.get("learning_rate"), "freeze": training.get("freeze"),
            "spectrum_token": training.get("spectrum_token"), "layer_drop": training.get("layer_drop"),
            "mask_fraction": training.get("mask_fraction"), "best_epoch": member.config.get("best_epoch"), "train_data": data.get("train"),
            "train_clips": data.get("train_clips"),
            "train_groups": "unknown" if groups is None else "; ".join(groups),
            "shared_groups": "" if groups is None else "; ".join(sorted(evaluated & set(groups))),
        })
    return pd.DataFrame(rows)


def forest_table(forests: Sequence[ForestMember], weights: np.ndarray, samples: Sequence[Sample]) -> pd.DataFrame:
    """members.csv rows of the spectrum forests: what they are, their share, what they learned from."""
    evaluated = {s.group for s in samples}
    rows = []
    for forest, weight in zip(forests, weights):
        data = forest.config.get("data", {})
        groups = data.get("train_groups", [])
        rows.append({"member": forest.name, "folder": str(forest.folder), "format": "spectrum-forest",
                     "weight": weight, "feature_settings": forest.features.extraction_key(),
                     "train_clips": data.get("train_clips"), "train_groups": "; ".join(groups),
                     "shared_groups": "; ".join(sorted(evaluated & set(groups))), "selected_on_evaluated": False,
                     "training_digest": forest.config.get("training_digest"),
                     "trees": forest.config.get("forest", {}).get("n_estimators")})
    return pd.DataFrame(rows)
