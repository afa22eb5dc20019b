"""What an evaluation produces, and the names of its systems, shared by evaluate, report, sweep and demo.

Only types and names live here, so readers of results (the report, a sweep's comparison, the demo's table)
need not import the code that computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mosquito_ast_lite.io import FolderKind

HARD, SOFT, MEAN, BEST = "hard vote", "soft vote", "mean member", "best member"
ENSEMBLES = (HARD, SOFT)
EVALUATION_FOLDER = FolderKind("an evaluation", ("metrics.json", "report.html"), ("*.csv", "*.json", "*.html", "*.png"))
SUMMARY_SYSTEMS = (MEAN, BEST, HARD, SOFT)  # the rows that sum up an ensemble, in reading order


@dataclass
class Assessment:
    """Metrics of every member, both ensembles and the baselines at one level (clips or recordings)."""

    summary: pd.DataFrame  # one row per system: members, mean member, best member, votes, baselines
    per_class: pd.DataFrame  # one row per (system, class)
    predicted: dict[str, np.ndarray]  # system -> predicted class ids
    scores: dict[str, np.ndarray]  # system -> probabilities (vote shares for the hard vote)
    confusion: dict[str, dict[str, list]]
    gain: dict[str, dict[str, dict[str, float]]]
    best_member: str
    baseline_difference: dict | None = None  # the soft vote against the best baseline (`commands.evaluate`)


@dataclass
class EnsembleEvaluation:
    """Tables for notebooks and the report. `metrics` is what metrics.json holds; `output` is where
    `report.write_outputs` puts the files."""

    predictions: pd.DataFrame  # one row per clip
    members: pd.DataFrame  # one row per member
    per_class: pd.DataFrame  # clip level, one row per (system, class)
    summary: pd.DataFrame  # clip level, one row per system
    recordings: pd.DataFrame  # one row per recording (group): pooled probabilities
    recording_summary: pd.DataFrame
    recording_per_class: pd.DataFrame
    coverage: pd.DataFrame  # accuracy against coverage as the confidence threshold rises (coverage.py)
    metrics: dict
    output: Path
