"""Plain metric functions over arrays (scikit-learn style: no hidden state)."""

from __future__ import annotations

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
    return float(bootstrap_scores(y_true, y_pred, np.arange(len(y_true))[None])[1][0])


def bootstrap_scores(y_true: np.ndarray, y_pred: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and balanced accuracy of each resample (rows of `indices`), vectorised so that
    thousands of resamples for every member cost milliseconds."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = int(max(y_true.max(), y_pred.max())) + 1
    true = y_true[indices]
    correct = (y_pred[indices] == true).astype(float)
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    support = np.zeros((len(indices), classes))
    hits = np.zeros((len(indices), classes))
    np.add.at(support, (rows, true.ravel()), 1.0)
    np.add.at(hits, (rows, true.ravel()), correct.ravel())
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
    return correct.mean(axis=1), recall.sum(axis=1) / present.sum(axis=1)


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, resamples: int, seed: int,
                        level: float = 0.95) -> dict[str, float]:
    """Percentile bootstrap intervals of accuracy and balanced accuracy over clips. The same seed
    draws the same resamples for every system, so intervals of members and ensembles are paired."""
    if resamples < 1 or len(y_true) == 0:
        return {}
    indices = np.random.default_rng(seed).integers(0, len(y_true), size=(resamples, len(y_true)))
    accuracy, balanced = bootstrap_scores(y_true, y_pred, indices)
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    low_a, high_a = np.percentile(accuracy, tails)
    low_b, high_b = np.percentile(balanced, tails)
    return {"accuracy_ci_low": float(low_a), "accuracy_ci_high": float(high_a),
            "balanced_accuracy_ci_low": float(low_b), "balanced_accuracy_ci_high": float(high_b)}


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: clips binned by confidence (max probability) into `bins` equal-width bins
    (0, 1/bins], ...; the support-weighted mean of |accuracy - mean confidence| per bin."""
    probabilities = np.asarray(probabilities, dtype=float)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in np.unique(which):
        members = which == b
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


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
