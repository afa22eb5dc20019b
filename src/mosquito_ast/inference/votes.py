"""Combining member probabilities: soft vote, hard vote, member weights, per-recording pooling.

Arrays follow one layout: member probabilities are (members, clips, classes); an ensemble's are
(clips, classes). Weights are normalised to sum to one.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np


class WeightsError(ValueError):
    """Member weights that cannot be used; the message says why."""


def equal_weights(count: int) -> np.ndarray:
    return np.full(count, 1.0 / count)


def parse_weights(spec: str | None, member_names: Sequence[str]) -> np.ndarray:
    """Weights from a comma list in member order ("1,1,2") or a CSV file with columns member,weight
    (every member named once); None or empty means equal weights."""
    names = list(member_names)
    if not spec:
        return equal_weights(len(names))
    path = Path(spec)
    if path.suffix.lower() == ".csv" or path.is_file():
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or not {"member", "weight"} <= set(rows[0]):
            raise WeightsError(f"{path}: a weights CSV needs the columns member,weight")
        given = {row["member"]: row["weight"] for row in rows}
        unknown = sorted(set(given) - set(names))
        missing = [n for n in names if n not in given]
        if unknown or missing:
            raise WeightsError(f"{path}: unknown members {unknown}, members without a weight {missing}")
        values = [given[n] for n in names]
    else:
        values = [v.strip() for v in spec.split(",")]
        if len(values) != len(names):
            raise WeightsError(f"--weights: {len(values)} values for {len(names)} members ({', '.join(names)})")
    try:
        weights = np.array([float(v) for v in values])
    except ValueError:
        raise WeightsError(f"--weights: not all numbers: {values}") from None
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
        raise WeightsError(f"--weights: need non-negative numbers with a positive sum, got {values}")
    return weights / weights.sum()


def soft_vote(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of member probabilities: (clips, classes)."""
    weights = equal_weights(len(probabilities)) if weights is None else np.asarray(weights)
    return np.tensordot(weights, probabilities, axes=1)


def vote_shares(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted share of members whose top class is each class: (clips, classes), rows sum to 1."""
    weights = equal_weights(len(probabilities)) if weights is None else np.asarray(weights)
    votes = np.eye(probabilities.shape[2])[probabilities.argmax(axis=2)]  # (members, clips, classes)
    return np.tensordot(weights, votes, axes=1)


def hard_vote(probabilities: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Majority (weighted) of member labels; a tie goes to the tied class with the highest
    (weighted) mean probability, then to the lowest class id."""
    shares = vote_shares(probabilities, weights)
    tied = np.isclose(shares, shares.max(axis=1, keepdims=True))
    mean = soft_vote(probabilities, weights)
    return np.where(tied, mean, -np.inf).argmax(axis=1)


def pool_by_group(probabilities: np.ndarray, groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Mean clip probabilities per group along the clip axis (axis -2): (sorted groups, (..., groups, classes))."""
    names, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    pooled = np.stack([probabilities[..., inverse == g, :].mean(axis=-2) for g in range(len(names))], axis=-2)
    return list(names), pooled
