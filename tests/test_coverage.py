"""Accuracy against coverage, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mosquito_ast.evaluation.coverage import agreement, coverage_curve, headline


def test_curve_keeps_the_confident_clips():
    y_true = np.array([0, 0, 1, 1])
    predicted = np.array([0, 1, 1, 1])
    confidence = np.array([0.9, 0.4, 0.8, 0.6])
    curve = coverage_curve(y_true, predicted, confidence, np.array([0.0, 0.5, 0.7, 0.95])).set_index("threshold")
    assert curve.coverage.tolist() == [1.0, 0.75, 0.5, 0.0]
    assert curve.clips_kept.tolist() == [4, 3, 2, 0]
    assert curve.accuracy[0.0] == 0.75 and curve.accuracy[0.5] == 1.0 and np.isnan(curve.accuracy[0.95])
    # all four: recall 1/2 for class 0, 2/2 for class 1
    assert curve.balanced_accuracy[0.0] == pytest.approx(0.75)


def test_agreement_is_the_weighted_share_of_members_with_the_label():
    members = np.array([[[0.9, 0.1], [0.2, 0.8]],
                        [[0.6, 0.4], [0.7, 0.3]],
                        [[0.3, 0.7], [0.1, 0.9]]])  # 3 members, 2 clips
    shares = agreement(members, np.array([0.5, 0.25, 0.25]), np.array([0, 1]))
    np.testing.assert_allclose(shares, [0.75, 0.75])


def test_headline_names_the_widest_coverage_at_the_target():
    table = pd.DataFrame({"system": "soft vote", "confidence": "top probability", "threshold": [0.0, 0.5, 0.8],
                          "coverage": [1.0, 0.64, 0.3], "clips_kept": [100, 64, 30],
                          "accuracy": [0.7, 0.91, 0.97], "balanced_accuracy": [0.6, 0.9, 0.95]})
    assert headline(table).startswith("90% accuracy at 64% coverage")
    assert "not reached" in headline(table.assign(accuracy=[0.5, 0.6, 0.7]))


def test_headline_ignores_thresholds_that_keep_too_few_clips():
    """Perfect accuracy on the 3 surest clips of 100 is no coverage a deployment can use."""
    table = pd.DataFrame({"system": "soft vote", "confidence": "top probability", "threshold": [0.0, 0.5, 0.95],
                          "coverage": [1.0, 0.4, 0.03], "clips_kept": [100, 40, 3],
                          "accuracy": [0.6, 0.8, 1.0], "balanced_accuracy": [0.6, 0.8, 1.0]})
    line = headline(table)
    assert "not reached at any threshold keeping 20 clips or more" in line and "best 80% at 40% coverage" in line
    small = table.assign(clips_kept=[10, 4, 1])  # a set smaller than 20 clips counts all of them
    assert "best 60% at 100% coverage" in headline(small)
