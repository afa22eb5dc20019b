"""The paired bootstrap interval of the soft vote's gain over the best spectrum baseline, against hand-computed
and one-resample-at-a-time values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from mosquito_ast.commands.evaluate import baseline_difference
from mosquito_ast.evaluation.metrics import paired_difference
from mosquito_ast.evaluation.results import SOFT


def test_identical_systems_differ_by_exactly_zero_in_every_resample():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    assert paired_difference(y, p, p.copy(), 500, seed=1) == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}


def test_without_resamples_the_difference_stands_alone():
    y = np.array([0, 0, 1, 1])
    # a: all right (1.0); b: one of the two class-1 clips wrong (recalls 1 and 1/2: 0.75)
    assert paired_difference(y, y, np.array([0, 0, 1, 0]), 0, seed=0) == {"difference": 0.25}


def test_interval_equals_numpy_on_the_same_recording_draws():
    """Recordings r0..r11 of 5 clips each, drawn with replacement by the seeded generator, every drawn
    recording's clips scored by scikit-learn for both systems: the percentiles of those differences."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 60)
    a = np.where(rng.random(60) < 0.7, y, rng.integers(0, 4, 60))
    b = np.where(rng.random(60) < 0.5, y, rng.integers(0, 4, 60))
    groups = [f"r{i // 5}" for i in range(60)]
    draws = np.random.default_rng(3).integers(0, 12, size=(400, 12))
    differences = []
    for drawn in draws:
        clips = np.concatenate([np.arange(5 * g, 5 * g + 5) for g in drawn])
        differences.append(balanced_accuracy_score(y[clips], a[clips]) - balanced_accuracy_score(y[clips], b[clips]))
    result = paired_difference(y, a, b, 400, seed=3, groups=groups)
    assert result["difference"] == pytest.approx(balanced_accuracy_score(y, a) - balanced_accuracy_score(y, b))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(tuple(np.percentile(differences, [2.5, 97.5])))


def test_evaluate_compares_the_soft_vote_with_the_best_baseline():
    y = np.array([0, 0, 1, 1, 2, 2])
    predicted = {SOFT: np.array([0, 0, 1, 1, 2, 0]), "weak": np.array([0, 1, 1, 0, 2, 2]),
                 "strong": np.array([0, 0, 1, 1, 2, 2])}
    found = baseline_difference(y, predicted, ["weak", "strong"], 0, 0, None)
    assert found == {"ensemble": SOFT, "baseline": "strong", "metric": "balanced_accuracy",
                     "difference": pytest.approx(5 / 6 - 1)}
    assert baseline_difference(y, predicted, [], 100, 0, None) is None
