"""Evaluation outputs: CSV tables, metrics.json, plots, a self-contained report.html, a console table.

Figures are drawn on matplotlib Figures with the Agg canvas, not pyplot, so a notebook's backend is
left alone and nothing needs a display.

Every file is written atomically (temporary file, then rename), so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from ..io import atomic_path, atomic_write_json, atomic_write_text
from .coverage import TARGET_ACCURACY
from .results import ENSEMBLES, SOFT, EnsembleEvaluation

CONSOLE_COLUMNS = ["system", "accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "log_loss", "ece"]
FIGURES = ("confusion_matrix.png", "per_class_metrics.png", "roc_curves.png", "members_vs_ensemble.png",
           "coverage.png")


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


def new_figure(rows: int, columns: int, size: tuple[float, float], **options):
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, **options)


def save_figure(figure: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight")
    return path


def plot_confusion(metrics: dict, labels: list[str], path: Path) -> Path:
    """Row-normalised colours with counts, hard and soft vote side by side."""
    size = 2.5 + 0.6 * len(labels)
    figure, axes = new_figure(1, 2, (2 * size + 1, size))
    for axis, system in zip(axes, ENSEMBLES):
        matrix = metrics["clip_level"]["confusion_matrix"][system]
        counts, normalized = np.array(matrix["counts"]), np.array(matrix["normalized"])
        axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(counts):
            axis.text(j, i, f"{count}\n{normalized[i, j]:.0%}", ha="center", va="center", fontsize=7,
                      color="white" if normalized[i, j] > 0.5 else "black")
        axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(labels)), labels, fontsize=8)
        axis.set_xlabel("predicted")
        axis.set_title(f"{system} (row-normalised)")
    axes[0].set_ylabel("true")
    return save_figure(figure, path)


def plot_per_class(per_class: pd.DataFrame, path: Path) -> Path:
    """Precision, recall, F1 and ROC-AUC per class for both ensembles."""
    figure, axes = new_figure(1, 2, (12, 4), sharey=True)
    for axis, system in zip(axes, ENSEMBLES):
        table = per_class[per_class.system == system].set_index("class")[["precision", "recall", "f1", "roc_auc"]]
        table.plot.bar(ax=axis, width=0.8)
        axis.tick_params(axis="x", labelrotation=45)
        for tick in axis.get_xticklabels():
            tick.set_horizontalalignment("right")
        axis.set_title(system)
        axis.set_ylim(0, 1.05)
        axis.set_xlabel("")
    return save_figure(figure, path)


def plot_roc(predictions: pd.DataFrame, labels: list[str], path: Path) -> Path:
    """One-vs-rest ROC curves of the soft vote; classes without positives or negatives are named."""
    figure, axis = new_figure(1, 1, (6, 5))
    truth = predictions["true_label"].to_numpy()
    for label in labels:
        positive = truth == label
        if positive.all() or not positive.any():
            axis.plot([], [], " ", label=f"{label}: undefined ({'no' if not positive.any() else 'only'} positives)")
            continue
        false_positive, true_positive, _ = roc_curve(positive, predictions[f"{SOFT}:p:{label}"])
        axis.plot(false_positive, true_positive, label=f"{label} (AUC {auc(false_positive, true_positive):.2f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"{SOFT}, one class vs rest")
    axis.legend(fontsize=7, loc="lower right")
    return save_figure(figure, path)


def plot_members_vs_ensemble(summary: pd.DataFrame, path: Path) -> Path:
    """Accuracy and balanced accuracy per system, with bootstrap 95% intervals where computed."""
    table = summary[summary.kind != "best"]
    figure, axis = new_figure(1, 1, (8, 1.5 + 0.35 * len(table)))
    positions = np.arange(len(table))
    for offset, metric in ((-0.2, "accuracy"), (0.2, "balanced_accuracy")):
        values = table[metric].to_numpy(float)
        low = table.get(f"{metric}_ci_low", pd.Series(np.nan, index=table.index)).to_numpy(float)
        high = table.get(f"{metric}_ci_high", pd.Series(np.nan, index=table.index)).to_numpy(float)
        errors = np.nan_to_num(np.vstack([values - low, high - values]))
        axis.barh(positions + offset, values, height=0.4, xerr=errors, capsize=2, label=metric)
    axis.set_yticks(positions, table.system, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, 1.05)
    axis.legend(fontsize=8)
    axis.set_title("members vs ensembles (clips; bars: bootstrap 95% interval)")
    return save_figure(figure, path)


def plot_coverage(coverage: pd.DataFrame, headline: str, path: Path) -> Path:
    """Accuracy against coverage for each system and confidence, as the threshold rises."""
    figure, axis = new_figure(1, 1, (7, 4.5))
    for (system, kind), curve in coverage.groupby(["system", "confidence"], sort=False):
        curve = curve[curve.clips_kept > 0]
        axis.plot(curve.coverage, curve.accuracy, marker=".", markersize=3, label=f"{system}, {kind}")
    axis.axhline(TARGET_ACCURACY, color="grey", linestyle=":", linewidth=1)
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("coverage (share of clips kept)")
    axis.set_ylabel("accuracy on the clips kept")
    axis.set_title(headline, fontsize=8)
    axis.legend(fontsize=7, loc="lower left")
    return save_figure(figure, path)


def console_table(summary: pd.DataFrame) -> str:
    return summary[CONSOLE_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0, classes="t")


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "<p>none</p>"


def html_report(evaluation: EnsembleEvaluation, figures: dict[str, Path]) -> str:
    """The whole report in one file: tables, warnings, and the figures embedded as base64."""
    metrics = evaluation.metrics
    images = "".join(
        f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">' for name, path in figures.items())
    summary_columns = [c for c in evaluation.summary.columns if c not in ("kind",)]
    gain = pd.DataFrame([{"ensemble": e, "versus": versus.replace("_", " "), **values}
                         for e, by in metrics["clip_level"]["gain"].items() for versus, values in by.items()])
    members = evaluation.members[["member", "format", "weight", "feature_settings", "seed", "optimizer", "scheduler",
                                  "learning_rate", "freeze", "best_epoch", "train_clips", "train_groups",
                                  "shared_groups"]]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table.t{border-collapse:collapse;font-size:12px}"
             ".t td,.t th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:right}.warn{color:#a00}"
             "img{max-width:100%}")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mosquito-ast ensemble evaluation</title><style>{style}</style></head><body>
<h1>Ensemble evaluation</h1>
<p>{len(metrics['members'])} members from <code>{html.escape(metrics['models'])}</code> on
<code>{html.escape(metrics['data'])}</code>: {metrics['clips']} clips, {metrics['recordings']} recordings
(--group-by {html.escape(metrics['group_by'])}), precision {metrics['precision']}.
Best member ({html.escape(metrics['clip_level']['best_member']['name'])}) chosen by
{html.escape(metrics['clip_level']['best_member']['chosen_by'])}.
Intervals: percentile bootstrap, {metrics['bootstrap']['resamples']} resamples, seed {metrics['bootstrap']['seed']}.</p>
<p><b>{html.escape(metrics['coverage_headline'])}</b> (<code>coverage.csv</code>, figure below).</p>
<h2 class="warn">Warnings</h2>{_list(metrics['warnings'])}
<h2>Notes</h2>{_list(metrics['notes'])}
<h2>Clips: members and ensembles</h2>{_table(evaluation.summary[summary_columns])}
<h2>Ensemble gain (clips)</h2>{_table(gain)}
<h2>Per class (clips)</h2>{_table(evaluation.per_class[evaluation.per_class.system.isin(ENSEMBLES)])}
<h2>Recordings (clip probabilities averaged per group)</h2>{_table(evaluation.recording_summary[summary_columns])}
<h2>Members and the recordings they were trained on</h2>{_table(members)}
<h2>Skipped files</h2>{_list(metrics['skipped_files'])}
<h2>Figures</h2>{images}
</body></html>
"""


def write_outputs(evaluation: EnsembleEvaluation) -> Path:
    """predictions.csv, recordings.csv, members.csv, per_class.csv, coverage.csv, metrics.json, the figures and
    report.html in `evaluation.output`; prints the summary table."""
    out = evaluation.output
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "predictions.csv", evaluation.predictions.to_csv(index=False))
    atomic_write_text(out / "recordings.csv", evaluation.recordings.to_csv(index=False))
    atomic_write_text(out / "members.csv", evaluation.members.to_csv(index=False))
    atomic_write_text(out / "coverage.csv", evaluation.coverage.to_csv(index=False))
    per_class = pd.concat([evaluation.per_class.assign(level="clip"),
                           evaluation.recording_per_class.assign(level="recording")], ignore_index=True)
    atomic_write_text(out / "per_class.csv", per_class.to_csv(index=False))
    atomic_write_json(out / "metrics.json", json_safe(evaluation.metrics))
    labels = evaluation.metrics["labels"]
    figures = {
        "confusion matrices": plot_confusion(evaluation.metrics, labels, out / FIGURES[0]),
        "per-class metrics": plot_per_class(evaluation.per_class, out / FIGURES[1]),
        "ROC curves": plot_roc(evaluation.predictions, labels, out / FIGURES[2]),
        "members vs ensembles": plot_members_vs_ensemble(evaluation.summary, out / FIGURES[3]),
        "accuracy against coverage": plot_coverage(evaluation.coverage, evaluation.metrics["coverage_headline"],
                                                   out / FIGURES[4]),
    }
    atomic_write_text(out / "report.html", html_report(evaluation, figures))
    print(console_table(evaluation.summary))
    print(evaluation.metrics["coverage_headline"])
    print(f"report: {out / 'report.html'}")
    return out
