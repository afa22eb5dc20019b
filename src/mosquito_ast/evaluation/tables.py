"""The report's tables and cells: which columns each table shows, numbers with fixed decimals, paths
relative to the report's folder, HTML tables with human column names; `report.py` lays out the page."""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .presentation import HEADERS, fixed, is_missing, reading_order

METRICS = ("accuracy", "balanced_accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
           "precision_macro", "recall_macro", "f1_macro", "log_loss", "ece", "roc_auc_macro")
FIXED = {*METRICS, "precision", "recall", "f1", "roc_auc"}  # shown with fixed decimals, so columns line up
KEY_METRICS = ("f1_macro", "roc_auc_macro", "log_loss", "ece")  # beside the two metrics with intervals
GAIN_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")
WRAP_AFTER = 24  # characters: longer texts (paths, notes, long names) wrap instead of widening the table
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s,;:()'\"<>]+")
PATH_COLUMNS = ("folder", "train_data", "validation_data")


def json_safe(value):
    """NaN and infinities become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# Paths: relative to the report's folder. Relative paths in the result were given relative to the working
# directory (as evaluate reads them), which os.path.relpath assumes too.

def shown_path(path, base: Path):
    """`path` relative to `base`; empty and missing values stay as they are."""
    return os.path.relpath(path, base) if isinstance(path, str) and path else path


def shown_paths(paths, base: Path):
    """One path or a list of them (--models takes several folders), each relative to `base`."""
    return [shown_path(p, base) for p in paths] if isinstance(paths, (list, tuple)) else shown_path(paths, base)


def shown_text(text: str, base: Path) -> str:
    """Every absolute path inside a sentence (warnings, notes, skipped files) made relative to `base`."""
    return ABSOLUTE_PATH.sub(lambda match: os.path.relpath(match.group(), base), text)


# Numbers and table cells.

def general(value) -> str:
    """Everything else: whole numbers as such, 3 significant digits otherwise (a learning rate of 5e-5
    reads 5e-05, not 0.000)."""
    if is_missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.3g}"


def with_interval(value, low, high, digits: int = 2) -> str:
    """'0.53 [0.47, 0.59]'; the value alone where no interval was computed."""
    if is_missing(low) or is_missing(high):
        return fixed(value, digits)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def cell(column: str, value) -> str:
    if isinstance(value, str):
        wrap = ' class="w"' if len(value) > WRAP_AFTER else ""
        return f"<td{wrap}>{html.escape(value)}</td>"
    text = fixed(value) if column in FIXED else general(value)
    return f'<td class="n">{text}</td>'


def html_table(frame: pd.DataFrame) -> str:
    """A table with human column names (`HEADERS`), numbers right-aligned, long texts wrapped."""
    head = "".join(f"<th>{html.escape(HEADERS.get(c, c.replace('_', ' ')))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(cell(c, v) for c, v in zip(frame.columns, row)) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def html_list(items: list[str], css: str = "") -> str:
    if not items:
        return "<p>none</p>"
    return f'<ul class="{css}">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


# Tables.

def key_table(summary: pd.DataFrame, unit: str, level: float | None) -> pd.DataFrame:
    """Systems x the metrics a paper quotes, with their `level` intervals where bootstrapped; without intervals
    (`level` None: --bootstrap 0) the two metrics stand alone, so no header promises what no cell holds."""
    table = reading_order(summary)
    frame = pd.DataFrame({"system": table.system, unit: table.n})
    for metric in ("balanced_accuracy", "accuracy"):
        if level is None:
            frame[metric] = table[metric]
        else:
            frame[f"{HEADERS[metric]} [{level:.0%} CI]"] = [with_interval(*values) for values in table.reindex(
                columns=[metric, f"{metric}_ci_low", f"{metric}_ci_high"]).itertuples(index=False)]
    return pd.concat([frame, table[list(KEY_METRICS)]], axis=1)


def full_table(summary: pd.DataFrame, unit: str) -> pd.DataFrame:
    table = reading_order(summary)
    return table[["system", "n", *METRICS]].rename(columns={"n": unit})


def gain_table(gain: dict) -> pd.DataFrame:
    return pd.DataFrame([{"ensemble": ensemble, "versus": versus.replace("_", " "),
                          **{m: values[m] for m in GAIN_METRICS}}
                         for ensemble, by in gain.items() for versus, values in by.items()])


def recording_count(groups) -> float:
    """Recordings in member_table's '; '-joined list; NaN where unknown."""
    if not isinstance(groups, str) or groups == "unknown":
        return np.nan
    return float(len(groups.split("; "))) if groups else 0.0


def encoder_size(layers, width) -> str | None:
    if is_missing(width):
        return None
    return f"{general(width)} wide" if is_missing(layers) else f"{general(layers)} layers × {general(width)}"


def selection(selected, metric) -> str | None:
    if not isinstance(selected, str):
        return None
    return f"best ({metric.replace('_', ' ')})" if selected == "best" and isinstance(metric, str) else selected


def recipe_table(members: pd.DataFrame) -> pd.DataFrame:
    """How each member was trained, from its config.json (columns evaluate's member table carries;
    '–' where a member's config does not say, e.g. old-notebook members)."""
    m = members.reindex(columns=["member", "preset", "encoder_layers", "preset_hidden_size", "norm_stats", "augment",
                                 "epochs", "best_epoch", "learning_rate", "selected", "selection_metric", "seed"])
    return pd.DataFrame({
        "member": m.member, "preset": m.preset,
        "encoder": [encoder_size(n, w) for n, w in zip(m.encoder_layers, m.preset_hidden_size)],
        "normalization": m.norm_stats, "augmentation": m.augment, "epochs": m.epochs, "chosen epoch": m.best_epoch,
        "learning rate": m.learning_rate,
        "selection": [selection(s, metric) for s, metric in zip(m.selected, m.selection_metric)], "seed": m.seed})


def training_data_table(members: pd.DataFrame, base: Path) -> pd.DataFrame:
    """What each member learned from, and how much of it is in the evaluated set."""
    m = members.reindex(columns=["member", "weight", "train_data", "train_clips", "train_groups", "shared_groups"])
    trained = [recording_count(g) for g in m.train_groups]
    shared = [np.nan if is_missing(t) else recording_count(s) for t, s in zip(trained, m.shared_groups)]
    return pd.DataFrame({"member": m.member, "weight": m.weight,
                         "training data": [shown_path(p, base) for p in m.train_data],
                         "training clips": m.train_clips, "training recordings": trained,
                         "recordings also evaluated here": shared})


def portable_members(members: pd.DataFrame, base: Path) -> pd.DataFrame:
    """members.csv with its paths relative to the report's folder."""
    return members.assign(**{c: [shown_path(p, base) for p in members[c]] for c in PATH_COLUMNS if c in members})


# Warnings drawn from the scores: what a reader of the tables should not miss.
