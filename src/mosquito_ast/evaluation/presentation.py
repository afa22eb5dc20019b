"""How the report names and orders what it shows: human column names, fixed decimals, systems in
reading order. Shared by the page (`report.py`) and its figures (`figures.py`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .results import BEST, HARD, MEAN, SOFT

HEADERS = {
    "system": "system", "n": "clips", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy",
    "precision_weighted": "precision (weighted)", "recall_weighted": "recall (weighted)",
    "f1_weighted": "F1 (weighted)", "precision_macro": "precision (macro)", "recall_macro": "recall (macro)",
    "f1_macro": "F1 (macro)", "log_loss": "log loss", "ece": "ECE", "roc_auc_macro": "ROC-AUC (macro)",
    "precision": "precision", "recall": "recall", "f1": "F1", "support": "clips", "roc_auc": "ROC-AUC",
    "roc_auc_note": "ROC-AUC note", "class": "class", "ensemble": "ensemble", "versus": "versus",
}

CONSOLE_COLUMNS = ["system", "accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "log_loss", "ece"]


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and not math.isfinite(value))


def fixed(value, digits: int = 3) -> str:
    """Metrics: fixed decimals, so a column of them lines up; '–' where undefined."""
    return "–" if is_missing(value) else f"{value:.{digits}f}"


def reading_order(summary: pd.DataFrame) -> pd.DataFrame:
    """Votes first, then the best and the mean member, the baselines, and the members; the best member's
    row names it."""
    rank = {SOFT: 0, HARD: 1, BEST: 2, MEAN: 3}
    order = [rank.get(s, 4 if k == "baseline" else 5) for s, k in zip(summary.system, summary.kind)]
    table = summary.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")
    names = [f"{BEST} ({m})" if s == BEST else s for s, m in zip(table.system, table.member)]
    return table.assign(system=names)


def console_table(summary: pd.DataFrame) -> str:
    """The systems' key metrics as the terminal shows them, once, when `evaluate` has scored them."""
    return summary[CONSOLE_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}")
