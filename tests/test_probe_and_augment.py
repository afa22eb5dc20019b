"""Behaviour the training loop relies on but that a whole run does not pin down: the linear probe's
score and the training augmentations as `train` applies them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mosquito_ast.config import TrainParams
from mosquito_ast.data import DatasetError
from mosquito_ast.features import FeatureSettings
from mosquito_ast.training.probe import probe_score
from mosquito_ast.commands.train import augment_batch


def grouped_embeddings(separable: bool, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Three classes x four recordings x five clips; class means far apart when `separable`."""
    rng = np.random.default_rng(seed)
    rows, labels, groups = [], [], []
    for c, name in enumerate("abc"):
        for recording in range(4):
            centre = np.eye(8)[c] * (10.0 if separable else 0.0)
            rows.append(centre + rng.normal(0, 1, (5, 8)))
            labels += [name] * 5
            groups += [f"{name}{recording}"] * 5
    return np.concatenate(rows), labels, groups


def test_probe_separates_separable_embeddings_and_not_noise():
    embeddings, labels, groups = grouped_embeddings(separable=True)
    assert probe_score(embeddings, labels, groups) == {"balanced_accuracy": 1.0, "folds": 5}
    noise, labels, groups = grouped_embeddings(separable=False)
    assert probe_score(noise, labels, groups)["balanced_accuracy"] < 0.6


def test_probe_needs_two_recordings():
    embeddings, labels, _ = grouped_embeddings(separable=True)
    with pytest.raises(DatasetError, match="at least 2 recordings"):
        probe_score(embeddings, labels, ["one"] * len(labels))


def params(**values) -> TrainParams:
    return TrainParams(train_dir="a", validation_dir="b", preset="tiny", **values)


def test_no_augmentation_leaves_features_and_one_hot_targets():
    features, targets = torch.randn(6, 100, 128), torch.tensor([0, 1, 2, 0, 1, 2])
    out, soft = augment_batch(features, targets, 3, params(augment="none"), FeatureSettings())
    assert torch.equal(out, features)
    assert torch.equal(soft, torch.nn.functional.one_hot(targets, 3).float())


def test_every_augmentation_keeps_shapes_and_targets_that_sum_to_one():
    torch.manual_seed(0)
    features, targets = torch.randn(8, 100, 128), torch.arange(8) % 4
    chosen = params(augment="roll,gain,frequency,mask,noise,mixup", noise_std=0.5)
    out, soft = augment_batch(features, targets, 4, chosen, FeatureSettings())
    assert out.shape == features.shape and soft.shape == (8, 4)
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))
    assert not torch.equal(out, features) and torch.isfinite(out).all()


def test_mixup_blends_features_and_targets_with_one_weight():
    torch.manual_seed(1)
    features = torch.stack([torch.full((100, 128), float(i)) for i in range(4)])
    targets = torch.arange(4)
    out, soft = augment_batch(features, targets, 4, params(augment="mixup"), FeatureSettings())
    # each clip is weight * itself + (1 - weight) * a partner; with constant clips the value shows the blend
    partner = (soft * torch.arange(4.0)).sum(dim=1)
    assert torch.allclose(out[:, 0, 0], partner, atol=1e-5)


def test_noise_has_the_asked_spread():
    torch.manual_seed(2)
    features = torch.zeros(16, 100, 128)
    out, _ = augment_batch(features, torch.zeros(16, dtype=torch.long), 2, params(augment="noise", noise_std=0.3),
                           FeatureSettings())
    assert out.std().item() == pytest.approx(0.3, rel=0.02)
