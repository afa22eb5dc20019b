"""Plain metric functions over arrays (scikit-learn style: no hidden state)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and support-weighted precision, recall and F1."""
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average="weighted", zero_division=0
    )
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


NO_POSITIVES = "undefined: no clip of this class in the evaluated set"
NO_NEGATIVES = "undefined: every clip is of this class"


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y_true` (scikit-learn's definition)."""
    return float(weighted_scores(y_true, y_pred, np.ones((1, len(y_true))))[1][0])


def weighted_scores(y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and balanced accuracy for each row of `weights` (resamples x items: how often each item
    was drawn), as matrix products, so that thousands of resamples for every member cost milliseconds."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = int(max(y_true.max(), y_pred.max())) + 1
    correct = (y_pred == y_true).astype(float)
    onehot = np.eye(classes)[y_true]
    support = weights @ onehot
    hits = weights @ (onehot * correct[:, None])
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
    return weights @ correct / weights.sum(axis=1), recall.sum(axis=1) / present.sum(axis=1)


def resample_weights(items: int, groups: Sequence | None, resamples: int, seed: int) -> np.ndarray:
    """(resamples, items): how often each item is in each bootstrap resample. Whole groups (recordings)
    are drawn with replacement, as many as there are, because clips of one recording are not independent;
    without groups every item is its own group, which is the plain clip bootstrap with the same draws."""
    codes = np.arange(items) if groups is None else pd.factorize(np.asarray(groups, dtype=object))[0]
    count = int(codes.max()) + 1 if items else 0
    draws = np.random.default_rng(seed).integers(0, count, size=(resamples, count))
    drawn = np.bincount((draws + count * np.arange(resamples)[:, None]).ravel(), minlength=resamples * count)
    return drawn.reshape(resamples, count)[:, codes].astype(float)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central `level` share of bootstrap values."""
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, resamples: int, seed: int,
                        level: float = 0.95, groups: Sequence | None = None) -> dict[str, float]:
    """Percentile bootstrap intervals of accuracy and balanced accuracy, resampling `groups` (recordings)
    when given, else clips. The same seed draws the same resamples for every system, so intervals of
    members and ensembles are paired."""
    if resamples < 1 or len(y_true) == 0:
        return {}
    weights = resample_weights(len(y_true), groups, resamples, seed)
    accuracy, balanced = weighted_scores(y_true, y_pred, weights)
    low_a, high_a = percentile_interval(accuracy, level)
    low_b, high_b = percentile_interval(balanced, level)
    return {"accuracy_ci_low": low_a, "accuracy_ci_high": high_a,
            "balanced_accuracy_ci_low": low_b, "balanced_accuracy_ci_high": high_b}


def paired_difference(y_true: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray, resamples: int,
                      seed: int, level: float = 0.95, groups: Sequence | None = None) -> dict[str, float]:
    """Balanced accuracy of `predicted_a` minus that of `predicted_b`, with the percentile interval of the
    difference over paired resamples: both systems scored on the very same draws (recordings when `groups` are
    given, else clips, as `bootstrap_intervals` draws them), so what the two share cancels and the interval is
    the difference's own, not the overlap of two separate intervals. No interval when `resamples` is 0."""
    difference = {"difference": balanced_accuracy(y_true, predicted_a) - balanced_accuracy(y_true, predicted_b)}
    if resamples < 1 or len(y_true) == 0:
        return difference
    weights = resample_weights(len(y_true), groups, resamples, seed)
    values = weighted_scores(y_true, predicted_a, weights)[1] - weighted_scores(y_true, predicted_b, weights)[1]
    low, high = percentile_interval(values, level)
    return {**difference, "ci_low": low, "ci_high": high}


def reliability_table(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """Clips binned by confidence (top probability) into `bins` equal-width bins (0, 1/bins], ...: per bin
    the clips, their mean confidence and accuracy (NaN when empty). ECE and the reliability diagram both
    read it, so the plot shows what the number measures."""
    probabilities = np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    clips = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, minlength=bins) / clips
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / clips
    edges = np.arange(bins + 1) / bins
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "clips": clips, "confidence": mean_confidence,
                         "accuracy": accuracy})


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the clip-weighted mean of |accuracy - mean confidence| over `reliability_table`'s bins."""
    table = reliability_table(y_true, probabilities, bins)
    table = table[table.clips > 0]
    return float((table.clips * (table.accuracy - table.confidence).abs()).sum() / table.clips.sum())


def probability_metrics(y_true: np.ndarray, probabilities: np.ndarray, ece_bins: int = 15) -> dict[str, float]:
    """Log loss and ECE of class probabilities (columns = class ids)."""
    classes = np.arange(probabilities.shape[1])
    clipped = np.clip(probabilities, 1e-7, 1.0)
    return {"log_loss": float(skm.log_loss(y_true, clipped / clipped.sum(1, keepdims=True), labels=classes)),
            "ece": expected_calibration_error(y_true, probabilities, ece_bins)}


def label_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy, weighted and macro precision/recall/F1 (macro over all known classes)."""
    result = {"accuracy": float(skm.accuracy_score(y_true, y_pred)),
              "balanced_accuracy": balanced_accuracy(y_true, y_pred)}
    for average in ("weighted", "macro"):
        labels = np.arange(num_classes) if average == "macro" else None
        precision, recall, f1, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        result.update({f"precision_{average}": float(precision), f"recall_{average}": float(recall),
                       f"f1_{average}": float(f1)})
    return result


def roc_auc_one_vs_rest(y_true: np.ndarray, scores: np.ndarray) -> tuple[list[float], list[str]]:
    """Per-class ROC-AUC of one class against the rest from scores (probabilities, not labels);
    NaN with the reason where a class has no positive or no negative clip."""
    values, notes = [], []
    for c in range(scores.shape[1]):
        positive = np.asarray(y_true) == c
        if not positive.any():
            values.append(float("nan"))
            notes.append(NO_POSITIVES)
        elif positive.all():
            values.append(float("nan"))
            notes.append(NO_NEGATIVES)
        else:
            values.append(float(skm.roc_auc_score(positive, scores[:, c])))
            notes.append("")
    return values, notes


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Precision, recall, F1, support and one-vs-rest ROC-AUC per class."""
    ids = np.arange(len(labels))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0)
    auc, notes = roc_auc_one_vs_rest(y_true, scores)
    return pd.DataFrame({"class": labels, "precision": precision, "recall": recall, "f1": f1,
                         "support": support.astype(int), "roc_auc": auc, "roc_auc_note": notes})


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (rows = true class) and the row-normalised matrix (rows without clips stay zero)."""
    counts = skm.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))
    totals = counts.sum(axis=1, keepdims=True)
    return counts, np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
