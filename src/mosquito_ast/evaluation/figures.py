"""The evaluation report's figures, drawn on matplotlib Figures with the Agg canvas, not pyplot, so a
notebook's backend is left alone and nothing needs a display; each is written atomically.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from mosquito_ast_lite.io import atomic_path

from .coverage import TARGET_ACCURACY
from .metrics import reliability_table
from .presentation import HEADERS, fixed, reading_order
from .results import BEST, ENSEMBLES, HARD, SOFT, EnsembleEvaluation

FIGURES = ("confusion_matrix.png", "per_class_metrics.png", "roc_curves.png", "members_vs_ensemble.png",
           "coverage.png", "calibration.png")

def new_figure(rows: int, columns: int, size: tuple[float, float], **options):
    """A figure with constrained layout: labels, titles and colour bars never overlap."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False, **options)


def save_figure(figure: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    return path


def wrapped(labels: list[str], width: int = 14) -> list[str]:
    """Class names on two or more lines, between words, so long species names need no tiny font."""
    return [textwrap.fill(label, width, break_long_words=False) for label in labels]


def plot_confusion(metrics: dict, labels: list[str], path: Path) -> Path:
    """Row-normalised colours with counts, hard and soft vote side by side (stacked beyond 8 classes);
    the figure grows with the classes, so cells and their text keep their size."""
    k = len(labels)
    side = 1.8 + 0.6 * k
    columns = 2 if k <= 8 else 1
    figure, axes = new_figure(2 // columns, columns, (columns * side + 1.2, (2 // columns) * side))
    names = wrapped(labels)
    for axis, system in zip(axes.flat, ENSEMBLES):
        matrix = metrics["clip_level"]["confusion_matrix"][system]
        counts, normalized = np.array(matrix["counts"]), np.array(matrix["normalized"])
        image = axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(counts):
            if count:  # empty cells stay blank, so the errors stand out
                axis.text(j, i, f"{count}\n{normalized[i, j]:.0%}", ha="center", va="center", fontsize=7,
                          color="white" if normalized[i, j] > 0.5 else "black")
        axis.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
        axis.set_yticks(range(k), names, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.set_title(system)
    figure.colorbar(image, ax=axes, shrink=0.7, label="share of the true class (row-normalised)")
    return save_figure(figure, path)


def chance_line(axis, chance: float, vertical: bool = False) -> None:
    """Where a random guess over the classes lands: 1/k accuracy, balanced accuracy and recall."""
    line = axis.axvline if vertical else axis.axhline
    line(chance, color="black", linestyle="--", linewidth=1, label=f"chance (1/{round(1 / chance)})")


def plot_per_class(per_class: pd.DataFrame, labels: list[str], path: Path) -> Path:
    """Precision, recall, F1 and ROC-AUC per class for both ensembles, one panel each, stacked. Each group of
    bars has its own chance mark: 1/k over precision, recall and F1, 0.5 over ROC-AUC (a random score ranks a
    positive above a negative half the time, whatever k is)."""
    k = len(labels)
    figure, axes = new_figure(2, 1, (max(7.0, 1.1 * k + 3), 6.5), sharex=True)
    positions = np.arange(k)
    for axis, system in zip(axes.flat, (SOFT, HARD)):
        table = per_class[per_class.system == system].set_index("class").reindex(labels)
        for offset, metric in zip((-0.3, -0.1, 0.1, 0.3), ("precision", "recall", "f1", "roc_auc")):
            axis.bar(positions + offset, table[metric].to_numpy(float), width=0.2, label=HEADERS[metric])
        axis.hlines(np.full(k, 1 / k), positions - 0.4, positions + 0.2, color="black", linestyle="--",
                    linewidth=1, label=f"chance, precision/recall/F1 (1/{k})")
        axis.hlines(np.full(k, 0.5), positions + 0.2, positions + 0.4, color="black", linestyle=":", linewidth=1.5,
                    label="chance, ROC-AUC (0.5)")
        axis.set_ylim(0, 1.05)
        axis.set_title(system)
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[-1, 0].set_xticks(range(k), wrapped(labels), fontsize=8, rotation=0 if k <= 6 else 45,
                           ha="center" if k <= 6 else "right")
    return save_figure(figure, path)


def plot_roc(predictions: pd.DataFrame, labels: list[str], path: Path) -> Path:
    """One-vs-rest ROC curves of the soft vote; classes without positives or negatives are named."""
    figure, axes = new_figure(1, 1, (8, 5))
    axis = axes[0, 0]
    axis.set_aspect("equal")
    truth = predictions["true_label"].to_numpy()
    for label in labels:
        positive = truth == label
        if positive.all() or not positive.any():
            axis.plot([], [], " ", label=f"{label}: undefined ({'no' if not positive.any() else 'only'} positives)")
            continue
        false_positive, true_positive, _ = roc_curve(positive, predictions[f"{SOFT}:p:{label}"])
        axis.plot(false_positive, true_positive, label=f"{label} (AUC {auc(false_positive, true_positive):.2f})")
    axis.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="chance")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"{SOFT}, one class vs rest")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(figure, path)


def plot_members_vs_ensemble(summary: pd.DataFrame, chance: float, level: float | None, path: Path) -> Path:
    """Accuracy and balanced accuracy per system, with their bootstrap `level` intervals where computed
    (`level` None: --bootstrap 0, bars alone)."""
    table = reading_order(summary[summary.kind != "best"])
    figure, axes = new_figure(1, 1, (8, 1.5 + 0.4 * len(table)))
    axis = axes[0, 0]
    positions = np.arange(len(table))
    for offset, metric in ((-0.2, "balanced_accuracy"), (0.2, "accuracy")):
        values, low, high = table.reindex(columns=[metric, f"{metric}_ci_low", f"{metric}_ci_high"]).to_numpy(float).T
        errors = np.nan_to_num(np.vstack([values - low, high - values]))
        axis.barh(positions + offset, values, height=0.4, xerr=None if level is None else errors, capsize=2,
                  label=HEADERS[metric])
    chance_line(axis, chance, vertical=True)
    axis.set_yticks(positions, wrapped(list(table.system), 28), fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1.05)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.set_title("members and ensembles" + ("" if level is None else f" (whiskers: bootstrap {level:.0%} interval)"))
    return save_figure(figure, path)


def plot_coverage(coverage: pd.DataFrame, headline: str, chance: float, best_member: str, path: Path) -> Path:
    """Accuracy against coverage for each system and confidence, as the threshold rises. The best member
    is named and drawn dashed: it was picked on these very clips, so its curve is hindsight, not a rival."""
    figure, axes = new_figure(1, 1, (7, 4.5))
    axis = axes[0, 0]
    for (system, kind), curve in coverage.groupby(["system", "confidence"], sort=False):
        curve = curve[curve.clips_kept > 0]
        hindsight = system == BEST
        label = (f"{BEST} ({best_member}), {kind}\nchosen in hindsight on these clips" if hindsight
                 else f"{system}, {kind}")
        axis.plot(curve.coverage, curve.accuracy, marker=".", markersize=3, linestyle="--" if hindsight else "-",
                  label=label)
    axis.axhline(TARGET_ACCURACY, color="grey", linestyle=":", linewidth=1, label=f"target {TARGET_ACCURACY:.0%}")
    chance_line(axis, chance)
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("coverage (share of clips kept)")
    axis.set_ylabel("accuracy on the clips kept")
    axis.set_title(textwrap.fill(headline, 80), fontsize=8)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save_figure(figure, path)


def plot_calibration(predictions: pd.DataFrame, labels: list[str], bins: int, ece: float, path: Path) -> Path:
    """Reliability diagram of the soft vote: accuracy per confidence bin against the diagonal of a calibrated
    system, with the clips per bin below (a bin of 3 clips says little)."""
    truth = predictions["true_label"].map({label: i for i, label in enumerate(labels)}).to_numpy()
    table = reliability_table(truth, predictions[[f"{SOFT}:p:{label}" for label in labels]].to_numpy(), bins)
    figure, axes = new_figure(2, 1, (5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes[0, 0], axes[1, 0]
    top.bar(table.low, table.accuracy.fillna(0), width=1 / bins, align="edge", edgecolor="black",
            label="accuracy in the bin")
    top.plot(table.confidence, table.accuracy, "o", color="black", markersize=3, label="(mean confidence, accuracy)")
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(f"{SOFT}: reliability (ECE {fixed(ece)}, {bins} bins)")
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(table.low, table.clips, width=1 / bins, align="edge", color="grey", edgecolor="black")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("clips")
    return save_figure(figure, path)


def draw_figures(evaluation: EnsembleEvaluation, out: Path) -> dict[str, tuple[Path, str]]:
    """Every figure, drawn into `out` (the evaluation's staging folder): title -> (file, caption)."""
    metrics = evaluation.metrics
    labels = metrics["labels"]
    chance = 1 / len(labels)
    soft = evaluation.summary.set_index("system").loc[SOFT]
    return {
        "Confusion matrices": (plot_confusion(metrics, labels, out / FIGURES[0]),
                               "Counts and row-normalised shares (recall on the diagonal), clips."),
        "Per-class metrics": (plot_per_class(evaluation.per_class, labels, out / FIGURES[1]),
                              "Per class, clips; the dashed marks are a random guess's recall (1/classes) over "
                              "precision, recall and F1, the dotted marks a random score's ROC-AUC (0.5)."),
        "ROC curves": (plot_roc(evaluation.predictions, labels, out / FIGURES[2]),
                       "Soft vote, one class against the rest, from probabilities."),
        "Members and ensembles": (plot_members_vs_ensemble(evaluation.summary, chance, metrics["bootstrap"]["level"],
                                                           out / FIGURES[3]),
                                  "Clips; the dashed line is chance balanced accuracy (1/classes)."),
        "Accuracy against coverage": (plot_coverage(evaluation.coverage, metrics["coverage_headline"], chance,
                                                    metrics["clip_level"]["best_member"]["name"], out / FIGURES[4]),
                                      "Accuracy on the clips kept as the confidence threshold rises; the best member "
                                      "(dashed) was chosen in hindsight on these clips."),
        "Calibration": (plot_calibration(evaluation.predictions, labels, metrics["ece_bins"], soft.ece,
                                         out / FIGURES[5]),
                        "Reliability diagram of the soft vote: bars on the diagonal are calibrated; bars below it "
                        "are over-confident."),
    }
