"""Linear probe: does a pretrained encoder separate the classes better than a random one?

Logistic regression on mean-pooled frozen embeddings (what `ASTClassifier.embed` computes), scored
by cross-validation with whole recordings (groups) held out, so clips of one recording never sit
on both sides. The same probe on a randomly initialised encoder of the same shape is the baseline.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import ASTModel

from ..param_groups import ReadParams
from ..data import DatasetError, label_names
from ..features import FeatureSettings, normalize
from ..hardware import inference_dtype, resolve_precision
from ..models.classifier import ASTClassifier
from ..models.encoder import build_encoder
from .datasets import load_clip_set

MAX_FOLDS = 5


@torch.inference_mode()
def embed_clips(encoder: ASTModel, features: np.ndarray, batch_size: int = 64,
                dtype: torch.dtype = torch.float32) -> np.ndarray:
    """(clips, hidden) float32 mean-pooled embeddings of normalized features (clips, T, mel), computed
    with `dtype` weights on a copy of the encoder: `pretrain` saves the encoder after probing it."""
    if dtype != encoder.dtype:
        encoder = copy.deepcopy(encoder).to(dtype)
    model = ASTClassifier(encoder, ["_"]).eval()
    chunks = [model.embed(torch.from_numpy(features[i:i + batch_size]).to(dtype)).float().numpy()
              for i in range(0, len(features), batch_size)]
    return np.concatenate(chunks)


def probe_score(embeddings: np.ndarray, labels: list[str], groups: list[str], seed: int = 0) -> dict:
    """Group-cross-validated balanced accuracy of a logistic-regression probe."""
    folds = min(MAX_FOLDS, len(set(groups)))
    if folds < 2:
        raise DatasetError("the probe needs at least 2 recordings (groups) to hold one out")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(probe, embeddings, labels, groups=groups, cv=splitter)
    return {"balanced_accuracy": float(balanced_accuracy_score(labels, predicted)), "folds": folds}


def compare_probes(encoder: ASTModel, source: str, params: ReadParams, settings: FeatureSettings,
                   seed: int = 0, progress: bool = True) -> dict:
    """The probe on `encoder` and on a random encoder of the same config, on a labeled data set."""
    clips = load_clip_set(source, params, settings, progress)
    features = normalize(clips.features, settings).astype(np.float32)
    labels = [s.label for s in clips.samples]
    groups = [s.group for s in clips.samples]
    torch.manual_seed(seed)
    random_encoder = build_encoder(encoder.config)
    dtype = inference_dtype(resolve_precision(params.precision, cuda=False))  # the probe runs on the CPU
    return {"source": str(source), "clips": len(labels), "classes": label_names(clips.samples),
            "groups": len(set(groups)), "probe": "standardized logistic regression, group k-fold",
            "pretrained": probe_score(embed_clips(encoder, features, dtype=dtype), labels, groups, seed),
            "random": probe_score(embed_clips(random_encoder, features, dtype=dtype), labels, groups, seed)}
