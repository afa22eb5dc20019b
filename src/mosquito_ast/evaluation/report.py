"""Evaluation outputs: CSV tables, metrics.json, plots, a self-contained report.html, a console table.

The report is meant to go into a paper's supplement as it is: a headline with the soft vote's interval,
tables that fit a printed page, human column names, the tool version and date, paths relative to the
report's folder (never absolute: they would name a user's home), and warnings drawn from the scores.

Figures are drawn by `figures.py`, tables and their cells made by `tables.py`.

Every file is written atomically (temporary file, then rename), so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mosquito_ast_lite.io import atomic_directory, atomic_write_json, atomic_write_text

from .. import __version__
from .figures import draw_figures
from .tables import (full_table, gain_table, html_list, html_table, json_safe, key_table, portable_members, recipe_table,
                     shown_path, shown_paths, shown_text, training_data_table, with_interval)
from .results import BEST, ENSEMBLES, EVALUATION_FOLDER, HARD, MEAN, SOFT, EnsembleEvaluation

MIN_CLIPS_PER_CLASS, MIN_RECORDINGS_PER_CLASS = 30, 5
STYLE = """
body{font-family:system-ui,sans-serif;line-height:1.4;max-width:60rem;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:1.6em;font-size:1.2em}
.headline{font-size:1.1em;border-left:4px solid #36c;background:#f3f6fb;padding:.6em 1em}
.biased{color:#a00;font-weight:600} .held{color:#060} .meta{color:#555;font-size:.9em}
table.t{border-collapse:collapse;font-size:12px;margin:.4em 0 1.2em}
.t th{text-align:left;vertical-align:bottom;font-weight:600;border-bottom:2px solid #999;padding:3px 6px}
.t td{border-bottom:1px solid #ddd;padding:3px 6px;white-space:nowrap;vertical-align:top}
.t td.n{text-align:right;font-variant-numeric:tabular-nums}
.t td.w{white-space:normal;overflow-wrap:anywhere;min-width:10em}
ul.warn li{color:#a00} img{max-width:100%;height:auto} figure{margin:1em 0} figcaption{font-size:.9em;color:#444}
code{overflow-wrap:anywhere}
@media print{body{max-width:none;margin:0}}
"""


def vote_warnings(summary: pd.DataFrame, chance: float) -> list[str]:
    """Votes below the best, the mean or every member; systems no better than guessing."""
    rows = summary.set_index("system")
    members = summary[summary.kind == "member"].set_index("system").balanced_accuracy
    best, mean = rows.loc[BEST], rows.loc[MEAN, "balanced_accuracy"]
    found = []
    for vote in (SOFT, HARD):
        value = rows.loc[vote, "balanced_accuracy"] + 1e-9  # a tie (e.g. one member) is no loss
        if len(members) > 1 and value < members.min():
            found.append(f"{vote}: balanced accuracy {value:.3f} is below every member (lowest "
                         f"{members.min():.3f}, {members.idxmin()})")
        elif value < mean:
            found.append(f"{vote}: balanced accuracy {value:.3f} is below the mean member ({mean:.3f})")
        elif value < best.balanced_accuracy:
            found.append(f"{vote}: balanced accuracy {value:.3f} is below the best member "
                         f"({best.member} {best.balanced_accuracy:.3f}, itself picked on this set)")
    guessing = [s for s, v in zip(summary.system, summary.balanced_accuracy) if s != BEST and v <= chance]
    if guessing:
        found.append(f"no better than guessing (balanced accuracy <= 1/{round(1 / chance)} = {chance:.3f}): "
                     + ", ".join(guessing))
    return found


def unpredicted_classes(confusion: dict[str, dict], labels: list[str]) -> list[str]:
    """Systems that never predict some class: a vote collapsing onto a few species looks fine in accuracy."""
    found = []
    for system, matrix in confusion.items():
        never = [label for label, count in zip(labels, np.array(matrix["counts"]).sum(axis=0)) if count == 0]
        if never:
            found.append(f"{system} never predicts {len(never)} of {len(labels)} classes: {', '.join(never)}")
    return found


def small_set_warnings(predictions: pd.DataFrame, labels: list[str]) -> list[str]:
    """Classes absent from, or thinly represented in, the evaluated set."""
    per_class = predictions.groupby("true_label").agg(clips=("group", "size"), recordings=("group", "nunique"))
    found = []
    absent = [label for label in labels if label not in per_class.index]
    if absent:
        found.append(f"no clip of {', '.join(absent)} in the evaluated set: balanced accuracy averages over the "
                     f"other classes only")
    thin = per_class[(per_class.clips < MIN_CLIPS_PER_CLASS) | (per_class.recordings < MIN_RECORDINGS_PER_CLASS)]
    if len(thin):
        smallest = thin.sort_values(["recordings", "clips"]).iloc[0]
        found.append(f"small evaluation set: {len(thin)} of {len(per_class)} classes have fewer than "
                     f"{MIN_CLIPS_PER_CLASS} clips or {MIN_RECORDINGS_PER_CLASS} recordings (smallest: "
                     f"{smallest.name}, {smallest.clips} clips from {smallest.recordings} recordings); intervals are "
                     f"wide and one recording can move a class's recall a lot")
    return found


def selected_here(members: pd.DataFrame) -> list[str]:
    """Members that picked their epoch on the evaluated clips (evaluate's `selected_on_evaluated`)."""
    flags = members.reindex(columns=["selected_on_evaluated"]).selected_on_evaluated
    return members.member[flags.eq(True)].tolist()


def single_recording_classes(predictions: pd.DataFrame) -> list[str]:
    """Classes with one recording in the evaluated set: resampling recordings either draws it or not, so
    their part of every interval rests on that one recording."""
    recordings = predictions.groupby("true_label").group.nunique()
    return recordings.index[recordings == 1].tolist()


def bootstrapped(metrics: dict) -> bool:
    """Whether any interval exists to announce (--bootstrap 0 computes none)."""
    return metrics["bootstrap"]["resamples"] > 0


def interval_note(metrics: dict) -> str:
    """What the brackets are, or that there are none (--bootstrap 0)."""
    if not bootstrapped(metrics):
        return "no interval: --bootstrap 0"
    return f"{metrics['bootstrap']['level']:.0%} interval, bootstrap unit: {metrics['bootstrap']['unit']}"


def chance_note(labels: list[str]) -> str:
    """A uniform guess's accuracy and balanced accuracy, the floor every number is read against."""
    return f"chance {1 / len(labels):.3f} (1/{len(labels)}) for accuracy and balanced accuracy"


def one_recording_note(metrics: dict) -> str | None:
    classes = metrics["single_recording_classes"]
    if not classes or not bootstrapped(metrics):
        return None
    return (f"Intervals (bootstrap over recordings) rest on one recording for {', '.join(classes)}: the only "
            f"recording of {'its' if len(classes) == 1 else 'each'} class here.")


def soft_vote_value(summary: pd.DataFrame) -> str:
    soft = summary.set_index("system").loc[SOFT]
    return with_interval(soft.balanced_accuracy, soft.get("balanced_accuracy_ci_low"),
                         soft.get("balanced_accuracy_ci_high"))


def baseline_comparison(summary: pd.DataFrame, metrics: dict) -> str | None:
    """"Is the transformer worth it here?": the soft vote against the best spectrum baseline with the paired
    bootstrap interval of the difference, or None when no baseline was fitted."""
    difference = metrics["clip_level"].get("baseline_difference")
    if not difference:
        return None
    rows = summary.set_index("system").balanced_accuracy
    value = f"{difference['difference']:+.3f}"
    if "ci_low" in difference:
        value += (f" [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}] (paired bootstrap, "
                  f"{interval_note(metrics)})")
    return (f"Soft vote against the best spectrum baseline ({difference['baseline']}, fitted on the members' training "
            f"clips): balanced accuracy {rows[SOFT]:.3f} vs {rows[difference['baseline']]:.3f}, difference {value}")


def console_headline(evaluation: EnsembleEvaluation, metrics: dict) -> list[str]:
    """What the terminal shows after the table: the headline, the coverage and the baseline answer."""
    lines = [f"Soft vote: balanced accuracy {soft_vote_value(evaluation.summary)} ({interval_note(metrics)}; "
             f"{chance_note(metrics['labels'])}) on {metrics['clips']} clips from {metrics['recordings']} recordings",
             one_recording_note(metrics), metrics["coverage_headline"],
             baseline_comparison(evaluation.summary, metrics)]
    return [line for line in lines if line]


def baseline_warnings(summary: pd.DataFrame) -> list[str]:
    baselines = summary[summary.kind == "baseline"].set_index("system").balanced_accuracy
    soft = summary.set_index("system").loc[SOFT, "balanced_accuracy"]
    if baselines.empty or baselines.max() < soft:
        return []
    return [f"the spectrum baseline {baselines.idxmax()} ({baselines.max():.3f}) scores at least the soft vote "
            f"({soft:.3f}): here the transformers add nothing over a time-averaged spectrum"]


def result_warnings(evaluation: EnsembleEvaluation) -> list[str]:
    metrics, labels = evaluation.metrics, evaluation.metrics["labels"]
    found = [*vote_warnings(evaluation.summary, 1 / len(labels)), *baseline_warnings(evaluation.summary),
             *unpredicted_classes(metrics["clip_level"]["confusion_matrix"], labels),
             *small_set_warnings(evaluation.predictions, labels)]
    chosen = selected_here(evaluation.members)
    if chosen:
        found.append(f"this set was used for selection: {', '.join(chosen)} picked their epoch on these clips, so "
                     f"their scores and the ensembles' are optimistically biased")
    return found


def selection_status(members: pd.DataFrame) -> tuple[str, str]:
    """(css class, sentence): whether the evaluated clips also chose the members' epochs."""
    chosen = selected_here(members)
    if chosen:
        return "biased", (f"Optimistically biased: {len(chosen)} of {len(members)} members selected their epoch "
                          f"on these clips.")
    known = members.reindex(columns=["selected_on_evaluated"]).selected_on_evaluated.notna()
    if known.all():
        return "held", "Held out: no member selected its epoch on these clips."
    return "", (f"Held out or not is unknown: {', '.join(members.member[~known])} record no validation set "
                f"in their config.json.")


# The page.

def portable_metrics(evaluation: EnsembleEvaluation, warnings: list[str], written: str) -> dict:
    """metrics.json as written: paths relative to the output folder, the tool version and date, the classes
    with a single recording, and the warnings drawn from the scores (`result_warnings`) beside evaluate's
    leakage warnings."""
    metrics, base = evaluation.metrics, evaluation.output
    return {**metrics, "models": shown_paths(metrics["models"], base), "data": shown_path(metrics["data"], base),
            "single_recording_classes": single_recording_classes(evaluation.predictions),
            **{key: [shown_text(t, base) for t in metrics[key]] for key in ("warnings", "notes", "skipped_files")},
            "result_warnings": warnings, "mosquito_ast_version": __version__, "written": written,
            "paths": "relative to the folder of this file"}


def headline(metrics: dict, summary: pd.DataFrame, members: pd.DataFrame) -> str:
    """The sentence a paper quotes: the soft vote's balanced accuracy with its interval against chance, on
    what, whether the interval rests on single recordings, and whether this set also chose the members."""
    css, status = selection_status(members)
    note = one_recording_note(metrics)
    return (f"<p class=\"headline\"><b>Soft vote: balanced accuracy {soft_vote_value(summary)}</b> "
            f"({html.escape(interval_note(metrics))}; {html.escape(chance_note(metrics['labels']))}) on "
            f"{metrics['clips']} clips from {metrics['recordings']} recordings of {len(metrics['labels'])} classes, "
            f"{len(metrics['members'])} members; data <code>{html.escape(metrics['data'])}</code>. "
            f"{html.escape(note) + ' ' if note else ''}<span class=\"{css}\">{html.escape(status)}</span></p>")


def method_line(metrics: dict) -> str:
    boot = metrics["bootstrap"]
    intervals = (f"Intervals: percentile bootstrap, {boot['resamples']} resamples (unit: {boot['unit']}), seed "
                 f"{boot['seed']}." if bootstrapped(metrics) else "Intervals: not computed (--bootstrap 0).")
    best = metrics["clip_level"]["best_member"]
    models = metrics["models"] if isinstance(metrics["models"], list) else [metrics["models"]]
    return (f'<p class="meta">mosquito-ast {html.escape(metrics["mosquito_ast_version"])}, written '
            f"{html.escape(metrics['written'])}. Paths are relative to this report's folder. Members from "
            f"{', '.join(f'<code>{html.escape(m)}</code>' for m in models)}; recordings by --group-by "
            f"{html.escape(metrics['group_by'])}; precision {html.escape(str(metrics['precision']))}. "
            f"{html.escape(intervals)} Best member ({html.escape(best['name'])}) chosen by "
            f"{html.escape(best['chosen_by'])}.</p>")


def comparison_html(summary: pd.DataFrame, metrics: dict) -> str:
    line = baseline_comparison(summary, metrics)
    return f"<p><b>{html.escape(line)}</b></p>" if line else ""


def figure_html(figures: dict[str, tuple[Path, str]]) -> str:
    return "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}"><figcaption><b>{html.escape(title)}.</b> '
        f"{html.escape(caption)} (<code>{path.name}</code>)</figcaption></figure>"
        for title, (path, caption) in figures.items())


def html_report(evaluation: EnsembleEvaluation, metrics: dict, figures: dict[str, tuple[Path, str]]) -> str:
    """The whole report in one file: headline, warnings, tables and the figures embedded as base64.
    `metrics` is what metrics.json holds (`portable_metrics`)."""
    ensembles = evaluation.per_class[evaluation.per_class.system.isin(ENSEMBLES)]
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>mosquito-ast ensemble evaluation</title><style>{STYLE}</style></head><body>
<h1>Ensemble evaluation</h1>
{headline(metrics, evaluation.summary, evaluation.members)}
{method_line(metrics)}
<p><b>{html.escape(metrics['coverage_headline'])}</b> (<code>coverage.csv</code>, figure below).</p>
{comparison_html(evaluation.summary, metrics)}
<h2>Warnings</h2>{html_list(metrics['warnings'] + metrics['result_warnings'], "warn")}
<h2>Notes</h2>{html_list(metrics['notes'])}
<h2>Key metrics, clips</h2>{html_table(key_table(evaluation.summary, "clips", metrics["bootstrap"]["level"]))}
<h2>Key metrics, recordings (clip probabilities averaged per recording)</h2>
{html_table(key_table(evaluation.recording_summary, "recordings", metrics["bootstrap"]["level"]))}
<h2>All metrics, clips</h2>{html_table(full_table(evaluation.summary, "clips"))}
<h2>Ensemble gain over the best and the mean member, clips</h2>{html_table(gain_table(metrics['clip_level']['gain']))}
<h2>Per class, ensembles, clips</h2>{html_table(ensembles)}
<h2>Members: how they were trained</h2>{html_table(recipe_table(evaluation.members))}
<h2>Members: what they were trained on</h2>{html_table(training_data_table(evaluation.members, evaluation.output))}
<h2>Skipped files</h2>{html_list(metrics['skipped_files'])}
<h2>Figures</h2>{figure_html(figures)}
</body></html>
"""


def write_outputs(evaluation: EnsembleEvaluation) -> Path:
    """predictions.csv, recordings.csv, members.csv, per_class.csv, coverage.csv, metrics.json, the figures and
    report.html in `evaluation.output`; prints the headline and the warnings (`evaluate` printed the table). The
    folder is written as one unit (staged beside it, then swapped in): a crash or kill leaves the old evaluation
    whole."""
    out = Path(evaluation.output)
    warnings = result_warnings(evaluation)
    with atomic_directory(out, EVALUATION_FOLDER) as staging:
        write_tables(evaluation, staging, out)
        metrics = portable_metrics(evaluation, warnings, datetime.now().astimezone().isoformat(timespec="seconds"))
        atomic_write_json(staging / "metrics.json", json_safe(metrics))
        atomic_write_text(staging / "report.html", html_report(evaluation, metrics, draw_figures(evaluation, staging)))
    for line in console_headline(evaluation, metrics):
        print(line)
    for line in warnings:
        print(f"warning: {line}")
    print(f"report: {out / 'report.html'}")
    return out


def write_tables(evaluation: EnsembleEvaluation, staging: Path, out: Path) -> None:
    """The CSV tables into `staging`, their paths relative to `out`, where they will live."""
    predictions = evaluation.predictions.assign(path=[shown_path(p, out) for p in evaluation.predictions.path])
    atomic_write_text(staging / "predictions.csv", predictions.to_csv(index=False))
    atomic_write_text(staging / "recordings.csv", evaluation.recordings.to_csv(index=False))
    atomic_write_text(staging / "members.csv", portable_members(evaluation.members, out).to_csv(index=False))
    atomic_write_text(staging / "coverage.csv", evaluation.coverage.to_csv(index=False))
    per_class = pd.concat([evaluation.per_class.assign(level="clip"),
                           evaluation.recording_per_class.assign(level="recording")], ignore_index=True)
    atomic_write_text(staging / "per_class.csv", per_class.to_csv(index=False))
