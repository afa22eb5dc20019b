"""Accuracy against coverage: what a system gets right on the clips it is sure of.

A trap in the field may say "not sure" instead of forcing a label. Raising a confidence threshold keeps
fewer clips (coverage) and, for a calibrated system, gets more of them right. Confidence is either the
top probability or the (weighted) share of members that agree with the label; the table answers which
threshold a deployment needs for a target accuracy (`predict --min-confidence`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..inference.votes import vote_shares
from .metrics import balanced_accuracy
from .results import BEST, HARD, SOFT

THRESHOLDS = np.round(np.linspace(0, 1, 101), 2)
TARGET_ACCURACY = 0.9
MIN_CLIPS_KEPT = 20  # "100% accuracy" on the 2 surest clips says nothing a deployment can use
TOP_PROBABILITY, AGREEMENT = "top probability", "member agreement"


def coverage_curve(y_true: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
                   thresholds: np.ndarray = THRESHOLDS) -> pd.DataFrame:
    """One row per threshold: clips with confidence >= threshold, their share, accuracy and balanced accuracy."""
    rows = []
    for threshold in thresholds:
        kept = confidence >= threshold - 1e-9
        n = int(kept.sum())
        rows.append({"threshold": float(threshold), "coverage": n / len(y_true), "clips_kept": n,
                     "accuracy": float(np.mean(predicted[kept] == y_true[kept])) if n else np.nan,
                     "balanced_accuracy": balanced_accuracy(y_true[kept], predicted[kept]) if n else np.nan})
    return pd.DataFrame(rows)


def agreement(member_probabilities: np.ndarray, weights: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Weighted share of members whose own label is `predicted`, per clip."""
    shares = vote_shares(member_probabilities, weights)
    return shares[np.arange(len(predicted)), predicted]


def coverage_table(y_true: np.ndarray, member_probabilities: np.ndarray, weights: np.ndarray,
                   scores: dict[str, np.ndarray], predicted: dict[str, np.ndarray], best_member: str) -> pd.DataFrame:
    """Soft vote by top probability and by agreement, hard vote by agreement, best member by top probability."""
    curves = {
        (SOFT, TOP_PROBABILITY): scores[SOFT].max(axis=1),
        (SOFT, AGREEMENT): agreement(member_probabilities, weights, predicted[SOFT]),
        (HARD, AGREEMENT): agreement(member_probabilities, weights, predicted[HARD]),
        (BEST, TOP_PROBABILITY): scores[best_member].max(axis=1),
    }
    labels = {SOFT: predicted[SOFT], HARD: predicted[HARD], BEST: predicted[best_member]}
    tables = [coverage_curve(y_true, labels[system], confidence).assign(system=system, confidence=kind)
              for (system, kind), confidence in curves.items()]
    table = pd.concat(tables, ignore_index=True)
    return table[["system", "confidence", *[c for c in table.columns if c not in ("system", "confidence")]]]


def headline(table: pd.DataFrame, target: float = TARGET_ACCURACY, min_clips: int = MIN_CLIPS_KEPT) -> str:
    """The widest coverage of the soft vote (top probability) at `target` accuracy, in one line; only
    thresholds that keep at least `min_clips` clips (all of them on a smaller set) count."""
    curve = table[(table.system == SOFT) & (table.confidence == TOP_PROBABILITY)]
    curve = curve[curve.clips_kept >= min(min_clips, int(curve.clips_kept.max()))]
    reached = curve[curve.accuracy >= target]
    if reached.empty:
        best = curve.loc[curve.accuracy.idxmax()]
        return (f"{target:.0%} accuracy is not reached at any threshold keeping {min_clips} clips or more (soft vote, "
                f"top probability); best {best.accuracy:.0%} at {best.coverage:.0%} coverage (threshold "
                f"{best.threshold:.2f}, {int(best.clips_kept)} clips)")
    row = reached.loc[reached.coverage.idxmax()]
    return (f"{target:.0%} accuracy at {row.coverage:.0%} coverage (soft vote, top probability >= "
            f"{row.threshold:.2f}: {row.accuracy:.1%} accuracy on {int(row.clips_kept)} clips kept)")
