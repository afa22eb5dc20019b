"""Metrics and vote rules against values computed by hand on small fixed arrays."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from mosquito_ast.inference.votes import (WeightsError, hard_vote, parse_weights, pool_by_group, soft_vote,
                                             vote_shares)
from mosquito_ast.commands.evaluate import assess
from mosquito_ast.evaluation.metrics import (NO_NEGATIVES, NO_POSITIVES, balanced_accuracy,
                                           bootstrap_intervals, confusion, expected_calibration_error, label_metrics,
                                           per_class_table, reliability_table, resample_weights)

Y = np.array([0, 0, 1, 1, 2, 2])
# Three members, six clips, three classes. Top classes: m0 [0,0,1,0,2,2], m1 [0,1,1,1,2,0], m2 [1,0,2,1,2,2].
P = np.array([
    [[.7, .2, .1], [.6, .3, .1], [.2, .7, .1], [.5, .4, .1], [.1, .2, .7], [.3, .3, .4]],
    [[.6, .3, .1], [.2, .5, .3], [.1, .8, .1], [.3, .6, .1], [.2, .2, .6], [.5, .2, .3]],
    [[.4, .5, .1], [.5, .3, .2], [.3, .3, .4], [.2, .7, .1], [.1, .1, .8], [.2, .2, .6]],
])
LABELS = ["a", "b", "c"]


def test_member_metrics_by_hand():
    m0 = P[0].argmax(1)
    metrics = label_metrics(Y, m0, 3)
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)  # recalls 2/2, 1/2, 2/2
    # class a: predicted 3 times, 2 right (precision 2/3); b: 1/1; c: 2/2 -> macro (2/3 + 1 + 1) / 3
    assert metrics["precision_macro"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert metrics["recall_weighted"] == pytest.approx(5 / 6)
    assert label_metrics(Y, P[1].argmax(1), 3)["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)


def test_expected_calibration_error_by_hand():
    # m0 confidences .7 .6 .7 .5 .7 .4, correct 1 1 1 0 1 1. Three bins (0,1/3], (1/3,2/3], (2/3,1]:
    # middle bin: clips 1,3,5, accuracy 2/3, confidence .5; top bin: clips 0,2,4, accuracy 1, confidence .7.
    expected = 0.5 * abs(2 / 3 - 0.5) + 0.5 * abs(1 - 0.7)
    assert expected_calibration_error(Y, P[0], bins=3) == pytest.approx(expected)
    perfect = np.eye(3)[Y]
    assert expected_calibration_error(Y, perfect) == pytest.approx(0.0)


def test_votes_by_hand():
    np.testing.assert_allclose(soft_vote(P)[0], [(.7 + .6 + .4) / 3, (.2 + .3 + .5) / 3, .1])
    assert hard_vote(P).tolist() == [0, 0, 1, 1, 2, 2]  # majorities: 0,0 | 0,1,0 | 1,1,2 | 0,1,1 | 2,2,2 | 2,0,2
    np.testing.assert_allclose(vote_shares(P)[1], [2 / 3, 1 / 3, 0])
    weights = np.array([0.2, 0.2, 0.6])  # the third member outweighs the other two together
    assert hard_vote(P, weights).tolist() == P[2].argmax(1).tolist()
    np.testing.assert_allclose(soft_vote(P, weights)[0], 0.2 * P[0, 0] + 0.2 * P[1, 0] + 0.6 * P[2, 0])


def test_hard_vote_ties_go_to_the_highest_mean_probability():
    two = np.array([[[.9, .1], [.55, .45]],
                    [[.4, .6], [.2, .8]]])  # each clip: one vote each; means [.65 .35] and [.375 .625]
    assert hard_vote(two).tolist() == [0, 1]
    three_way = np.array([[[.5, .3, .2]], [[.1, .6, .3]], [[.1, .1, .8]]])  # means .233 .333 .433
    assert hard_vote(three_way).tolist() == [2]
    # a weighted majority is not a tie, even against the mean probability
    assert hard_vote(two, np.array([0.6, 0.4])).tolist() == [0, 0]


def test_per_class_roc_auc_from_probabilities_and_undefined_classes():
    y = np.array([1, 0, 1, 0])
    scores = np.array([[.2, .8], [.4, .6], [.6, .4], [.8, .2]])
    # class 1 positives score .8 and .4, negatives .6 and .2: 3 of 4 pairs ordered right
    table = per_class_table(y, scores.argmax(1), scores, ["x", "y"])
    assert table.roc_auc.tolist() == pytest.approx([0.75, 0.75])
    assert table.support.tolist() == [2, 2]
    missing = per_class_table(np.array([0, 0, 1]), np.array([0, 1, 1]), np.eye(3)[[0, 1, 1]], LABELS)
    assert np.isnan(missing.roc_auc[2]) and missing.roc_auc_note[2] == NO_POSITIVES
    only = per_class_table(np.array([0, 0]), np.array([0, 0]), np.array([[.9, .1], [.8, .2]]), ["x", "y"])
    assert only.roc_auc_note.tolist() == [NO_NEGATIVES, NO_POSITIVES]


def test_confusion_counts_and_row_normalised():
    counts, normalized = confusion(Y, P[0].argmax(1), 4)
    assert counts.tolist() == [[2, 0, 0, 0], [1, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(normalized[1], [0.5, 0.5, 0, 0])
    assert normalized[3].tolist() == [0, 0, 0, 0]


def test_balanced_accuracy_matches_sklearn_and_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    first = bootstrap_intervals(y, p, 500, seed=1)
    assert first == bootstrap_intervals(y, p, 500, seed=1) != bootstrap_intervals(y, p, 500, seed=2)
    assert first["accuracy_ci_low"] <= np.mean(y == p) <= first["accuracy_ci_high"]
    assert first["balanced_accuracy_ci_low"] <= balanced_accuracy(y, p) <= first["balanced_accuracy_ci_high"]


def accuracy(y_true, y_pred):
    return float(np.mean(y_true == y_pred))


def plain_interval(y, p, metric, groups=None, resamples=1000, seed=0):
    """The percentile interval of `metric` computed one resample at a time on `resample_weights`' draws."""
    counts = resample_weights(len(y), groups, resamples, seed).astype(int)
    values = [metric(np.repeat(y, row), np.repeat(p, row)) for row in counts]
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_one_group_per_clip_is_the_clip_bootstrap():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    names = [f"r{i}" for i in rng.permutation(40)]  # any names, in any order: one recording per clip
    assert bootstrap_intervals(y, p, 300, seed=4, groups=names) == bootstrap_intervals(y, p, 300, seed=4)


def test_recording_bootstrap_keeps_the_clips_of_a_recording_together():
    # Recording A: three clips, all right; recording B: one clip, wrong. Drawing two recordings gives
    # AA (accuracy 1), AB or BA (3/4) or BB (0), never a clip bootstrap's 1/4 or 1/2.
    y, p = np.zeros(4, int), np.array([0, 0, 0, 1])
    groups = ["A", "A", "A", "B"]
    weights = resample_weights(4, groups, 200, seed=0)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 0] == weights[:, 2]).all()
    assert (weights[:, 0] + weights[:, 3] == 2).all()  # two recordings drawn per resample
    correct = (y == p).astype(float)
    assert set((weights @ correct) / weights.sum(axis=1)) == {0.0, 0.75, 1.0}
    # P(BB) = P(AA) = 1/4, so the 2.5th and 97.5th percentiles are the extremes
    fast = bootstrap_intervals(y, p, 2000, seed=0, groups=groups)
    assert (fast["accuracy_ci_low"], fast["accuracy_ci_high"]) == (0.0, 1.0)
    clip_weights = resample_weights(4, None, 200, seed=0)
    assert {0.25, 0.5} & set((clip_weights @ correct) / clip_weights.sum(axis=1))


def test_vectorised_intervals_equal_the_plain_function_on_the_same_draws():
    rng = np.random.default_rng(5)
    y, p = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    groups = rng.integers(0, 12, 60).astype(str)
    fast = bootstrap_intervals(y, p, 400, seed=9, groups=groups)
    assert plain_interval(y, p, balanced_accuracy_score, groups=groups, resamples=400, seed=9) == pytest.approx(
        (fast["balanced_accuracy_ci_low"], fast["balanced_accuracy_ci_high"]))
    assert plain_interval(y, p, accuracy, groups=groups, resamples=400, seed=9) == pytest.approx(
        (fast["accuracy_ci_low"], fast["accuracy_ci_high"]))
    clips = bootstrap_intervals(y, p, 400, seed=9)
    width = fast["accuracy_ci_high"] - fast["accuracy_ci_low"]
    assert width != clips["accuracy_ci_high"] - clips["accuracy_ci_low"]


def test_reliability_table_by_hand():
    # m0 as in the ECE test: bins (0,1/3], (1/3,2/3], (2/3,1]
    table = reliability_table(Y, P[0], bins=3)
    assert table.clips.tolist() == [0, 3, 3] and table.high.tolist() == pytest.approx([1 / 3, 2 / 3, 1])
    assert np.isnan(table.accuracy[0]) and table.accuracy[1] == pytest.approx(2 / 3)
    assert table.confidence.tolist()[1:] == pytest.approx([0.5, 0.7])


def test_assess_ranks_members_and_reports_gains():
    result = assess(Y, P, ["m0", "m1", "m2"], np.full(3, 1 / 3), LABELS, resamples=200, seed=0, ece_bins=3)
    summary = result.summary.set_index("system")
    assert list(summary.index) == ["m0", "m1", "m2", "mean member", "best member", "hard vote", "soft vote"]
    assert result.best_member == "m0" and summary.loc["best member", "member"] == "m0"
    assert summary.loc["mean member", "accuracy"] == pytest.approx((5 + 4 + 4) / 18)
    assert summary.loc["hard vote", "accuracy"] == summary.loc["soft vote", "accuracy"] == 1.0
    assert np.isnan(summary.loc["hard vote", "log_loss"]) and summary.loc["soft vote", "log_loss"] > 0
    assert summary.loc["m0", "ece"] == pytest.approx(0.5 * (2 / 3 - 0.5) + 0.5 * 0.3)
    assert result.gain["soft vote"]["over_best_member"]["accuracy"] == pytest.approx(1 / 6)
    assert result.gain["hard vote"]["over_mean_member"]["accuracy"] == pytest.approx(1 - 13 / 18)
    assert set(result.per_class.system) == {"m0", "m1", "m2", "hard vote", "soft vote"}


def test_weights_from_list_and_csv(tmp_path):
    names = ["a/best/s1", "a/best/s2"]
    np.testing.assert_allclose(parse_weights(None, names), [0.5, 0.5])
    np.testing.assert_allclose(parse_weights("1,3", names), [0.25, 0.75])
    csv = tmp_path / "weights.csv"
    csv.write_text("member,weight\na/best/s2,1\na/best/s1,4\n")
    np.testing.assert_allclose(parse_weights(str(csv), names), [0.8, 0.2])
    with pytest.raises(WeightsError, match="3 values for 2 members"):
        parse_weights("1,2,3", names)
    with pytest.raises(WeightsError, match="non-negative"):
        parse_weights("1,-1", names)
    csv.write_text("member,weight\na/best/s1,1\n")
    with pytest.raises(WeightsError, match="without a weight"):
        parse_weights(str(csv), names)


def test_pool_by_group_averages_clips():
    groups, pooled = pool_by_group(P, ["r2", "r1", "r1", "r2", "r3", "r3"])
    assert groups == ["r1", "r2", "r3"]
    assert pooled.shape == (3, 3, 3)
    np.testing.assert_allclose(pooled[0, 0], (P[0, 1] + P[0, 2]) / 2)
