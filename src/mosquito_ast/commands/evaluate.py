"""`evaluate`: every member in a folder on one labeled set, both ensembles, metrics, leakage checks.

Nothing is remapped from ground truth: members' label maps are matched by name, and a class of the
evaluated set that no member knows is an error. The same run scores clips and recordings (clip
probabilities averaged per group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mosquito_ast_lite.audio import AudioError
from mosquito_ast_lite.io import check_replaceable

from ..checkpoints import model_folders
from ..evaluation.baselines import baseline_probabilities
from ..config import EvaluateParams
from ..data import DatasetError, Sample, discover
from ..features import check_bad_files, open_cache
from ..hardware import resolve_precision, use_physical_cores
from ..inference.votes import hard_vote, parse_weights, pool_by_group, soft_vote, vote_shares
from ..inference.forest import ForestMember, forest_probabilities, load_forests, vote_weights
from ..inference.members import Member, ensemble_labels, load_members, predict_probabilities
from ..evaluation.coverage import coverage_table, headline
from ..evaluation.metrics import (balanced_accuracy, bootstrap_intervals, confusion, label_metrics, paired_difference,
                                  per_class_table, probability_metrics)
from ..evaluation.member_tables import forest_table, member_table, selected_on
from ..evaluation.presentation import console_table
from ..evaluation.tables import GAIN_METRICS
from ..evaluation.results import (BEST, ENSEMBLES, EVALUATION_FOLDER, HARD, MEAN, SOFT, Assessment,
                                  EnsembleEvaluation)

BEST_BY = "balanced_accuracy"
HARD_VOTE_SCORES = ("hard vote: ECE and ROC-AUC use the (weighted) vote shares as scores; its log loss is "
                    "undefined, since vote shares are 0 for classes no member chose")


def system_row(y_true: np.ndarray, predicted: np.ndarray, scores: np.ndarray, num_classes: int,
               resamples: int, seed: int, ece_bins: int, probabilistic: bool = True,
               groups: Sequence[str] | None = None) -> dict[str, float]:
    row = {"n": len(y_true), **label_metrics(y_true, predicted, num_classes)}
    row.update(bootstrap_intervals(y_true, predicted, resamples, seed, groups=groups))
    row.update(probability_metrics(y_true, scores, ece_bins))
    if not probabilistic:
        row["log_loss"] = float("nan")
    auc = per_class_table(y_true, predicted, scores, [str(c) for c in range(num_classes)])["roc_auc"]
    row["roc_auc_macro"] = float(auc.mean()) if auc.notna().any() else float("nan")
    return row


def baseline_difference(y_true: np.ndarray, predicted: dict[str, np.ndarray], baselines: Sequence[str],
                        resamples: int, seed: int, groups: Sequence[str] | None) -> dict | None:
    """"Is the transformer worth it here?": the soft vote's balanced accuracy minus the best baseline's, with
    a paired bootstrap interval on the draws the systems' own intervals use; None without baselines."""
    if not baselines:
        return None
    scores = {name: balanced_accuracy(y_true, predicted[name]) for name in baselines}
    best = max(scores, key=scores.get)
    return {"ensemble": SOFT, "baseline": best, "metric": "balanced_accuracy",
            **paired_difference(y_true, predicted[SOFT], predicted[best], resamples, seed, groups=groups)}


def assess(y_true: np.ndarray, member_probabilities: np.ndarray, member_names: Sequence[str], weights: np.ndarray,
           labels: Sequence[str], resamples: int = 1000, seed: int = 0, ece_bins: int = 15,
           baselines: dict[str, np.ndarray] | None = None, groups: Sequence[str] | None = None,
           hard_weights: np.ndarray | None = None, summarized: int | None = None) -> Assessment:
    """Score members and ensembles on (members, items, classes) probabilities against true class ids,
    and `baselines` (name -> items x classes probabilities) beside them. `weights` make the soft vote,
    `hard_weights` (default: the same) the hard vote. With `groups` (each item's
    recording) the bootstrap resamples recordings, since clips of one recording are not independent.
    The best member is picked by balanced accuracy on this same set (hindsight, so optimistic). The mean and
    best member rows summarize the first `summarized` members (default: all): the AST members, while a
    spectrum forest keeps its own row and would drag "mean member" down, flattering the votes' gain."""
    labels = list(labels)
    k = len(labels)
    baselines = baselines or {}
    hard_weights = weights if hard_weights is None else hard_weights
    scores = {name: member_probabilities[i] for i, name in enumerate(member_names)}
    scores[HARD] = vote_shares(member_probabilities, hard_weights)
    scores[SOFT] = soft_vote(member_probabilities, weights)
    scores.update(baselines)
    predicted = {name: p.argmax(axis=1) for name, p in scores.items()}
    predicted[HARD] = hard_vote(member_probabilities, hard_weights)
    rows = {name: system_row(y_true, predicted[name], scores[name], k, resamples, seed, ece_bins, name != HARD,
                             groups) for name in scores}
    members = pd.DataFrame([{"system": n, "kind": "member", "member": n, "weight": w, **rows[n]}
                            for n, w in zip(member_names, weights)])
    counted = members.iloc[:summarized]
    best = counted.loc[counted[BEST_BY].idxmax()]
    mean = counted.drop(columns=["system", "kind", "member"]).mean(numeric_only=True)
    mean[[c for c in mean.index if "_ci_" in c or c == "weight"]] = np.nan
    summary = pd.concat([
        members,
        pd.DataFrame([{**mean.to_dict(), "system": MEAN, "kind": "mean", "member": ""},
                      {**best.to_dict(), "system": BEST, "kind": "best"},
                      *({"system": e, "kind": "ensemble", "member": "", **rows[e]} for e in ENSEMBLES),
                      *({"system": b, "kind": "baseline", "member": "", **rows[b]} for b in baselines)]),
    ], ignore_index=True)
    summary["n"] = summary["n"].astype(int)
    gain = {e: {"over_best_member": {m: rows[e][m] - float(best[m]) for m in GAIN_METRICS},
                "over_mean_member": {m: rows[e][m] - float(mean[m]) for m in GAIN_METRICS}} for e in ENSEMBLES}
    per_class = pd.concat([per_class_table(y_true, predicted[n], scores[n], labels).assign(system=n)
                           for n in scores], ignore_index=True)
    per_class = per_class[["system", *[c for c in per_class.columns if c != "system"]]]
    matrices = {}
    for name in scores:
        counts, normalized = confusion(y_true, predicted[name], k)
        matrices[name] = {"counts": counts.tolist(), "normalized": normalized.tolist()}
    return Assessment(summary, per_class, predicted, scores, matrices, gain, str(best["system"]),
                      baseline_difference(y_true, predicted, list(baselines), resamples, seed, groups))


def prediction_table(ids: Sequence[str], groups: Sequence[str], y_true: np.ndarray, assessment: Assessment,
                     labels: Sequence[str], id_column: str) -> pd.DataFrame:
    """One row per item: id, group, true label, then each system's label and probabilities
    (`<system>:label`, `<system>:p:<class>`; the hard vote's are vote shares, `hard vote:votes:<class>`)."""
    names = np.asarray(labels, dtype=object)
    columns: dict[str, object] = {id_column: list(ids), "group": list(groups), "true_label": names[y_true]}
    for system, scores in assessment.scores.items():
        columns[f"{system}:label"] = names[assessment.predicted[system]]
        kind = "votes" if system == HARD else "p"
        for c, label in enumerate(labels):
            columns[f"{system}:{kind}:{label}"] = scores[:, c]
    return pd.DataFrame(columns)


def recording_keys(samples: Sequence[Sample]) -> list[str]:
    """Each clip's group; a group holding several true labels is split per label (`group [label]`)."""
    labels_of: dict[str, set[str]] = {}
    for s in samples:
        labels_of.setdefault(s.group, set()).add(s.label)
    return [s.group if len(labels_of[s.group]) == 1 else f"{s.group} [{s.label}]" for s in samples]


def leakage_checks(members: Sequence[Member], samples: Sequence[Sample], params: EvaluateParams) -> tuple[list[str], list[str]]:
    """(warnings, notes): recordings shared between the evaluated set and members' training sets,
    members trained or tuned on this very set, and members whose training recordings are unknown."""
    warnings, notes = [], []
    evaluated = {s.group for s in samples}
    clips_of: dict[str, int] = {}
    for s in samples:
        clips_of[s.group] = clips_of.get(s.group, 0) + 1
    here = Path(params.data).resolve()
    for member in members:
        data = member.config.get("data", {})
        if data.get("train") and Path(data["train"]).resolve() == here:
            warnings.append(f"member {member.name} was trained on this very data set ({params.data})")
        if member.train_groups is None:
            notes.append(f"member {member.name}: its config lists no training recordings (data.train_groups); "
                         f"leakage cannot be checked")
        else:
            shared = sorted(evaluated & set(member.train_groups))
            if shared:
                clips = sum(clips_of[g] for g in shared)
                listing = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
                warnings.append(f"member {member.name} was trained on {len(shared)} recording(s) of the evaluated set "
                                f"({clips} clips): {listing}; its scores and the ensemble's are optimistic")
        rule = member.config.get("training", {}).get("group_by")
        if rule and rule != params.group_by:
            notes.append(f"member {member.name}: training groups were found with --group-by {rule}, this evaluation "
                         f"uses {params.group_by}; group names may not be comparable")
        if selected_on(member, here):
            notes.append(f"member {member.name} picked its best epoch on this set: its scores are optimistically biased")
    return warnings, notes


def fit_baselines(members: Sequence[Member], samples: Sequence[Sample], labels: Sequence[str],
                  params: EvaluateParams) -> tuple[dict[str, np.ndarray], str]:
    """The spectrum baselines fitted on the union of the members' training clips (`data.train` in their
    configs), so they learn from what the members learned from; a note says what was used or why not."""
    sources = sorted({m.config.get("data", {}).get("train") for m in members} - {None, ""})
    missing = [s for s in sources if not Path(s).exists()]
    if not sources or missing:
        reason = f"training data not found: {', '.join(missing)}" if missing else "members record no training data"
        return {}, f"spectrum baseline skipped: {reason}"
    training = {s.path: s for source in sources for s in discover(source, params.group_by)}
    known = [s for s in training.values() if s.label in labels]
    index = {name: i for i, name in enumerate(labels)}
    try:
        probabilities = baseline_probabilities([s.path for s in known], [index[s.label] for s in known],
                                               [s.path for s in samples], len(labels), params.seed,
                                               members[0].features, open_cache(params.cache_dir, params.no_cache))
    except AudioError as error:
        return {}, f"spectrum baseline skipped: {error}"
    return probabilities, (f"spectrum baselines (Welch log spectrum at the recordings' own rate; the members' "
                           f"log-mel fbank averaged over time) fitted on {len(known)} training clips of "
                           f"{', '.join(sources)}")


def scoring_record(params: EvaluateParams) -> dict:
    """How the intervals and the calibration error were computed; with --bootstrap 0 no level or unit, since
    no interval was computed."""
    computed = params.bootstrap > 0
    return {"bootstrap": {"resamples": params.bootstrap, "seed": params.seed, "level": 0.95 if computed else None,
                          "unit": "recording" if computed else None},
            "ece_bins": params.ece_bins}


def level_metrics(assessment: Assessment) -> dict:
    return {"systems": assessment.summary.set_index("system").to_dict(orient="index"),
            "best_member": {"name": assessment.best_member,
                            "chosen_by": f"{BEST_BY} on this evaluated set (hindsight: optimistic)"},
            "gain": assessment.gain, "baseline_difference": assessment.baseline_difference,
            "confusion_matrix": assessment.confusion,
            "per_class": {s: t.drop(columns="system").to_dict(orient="records")
                          for s, t in assessment.per_class.groupby("system", sort=False)}}


def clip_probabilities(params: EvaluateParams, members: Sequence[Member], forests: Sequence[ForestMember],
                       labels: list[str]) -> tuple[list[Sample], np.ndarray, list[AudioError]]:
    """(readable clips of `params.data`, (systems, clips, classes) probabilities of the members then the
    forests, the files skipped); a class no member knows is an error."""
    samples = discover(params.data, params.group_by)
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        raise DatasetError(f"{params.data}: classes no member knows: {', '.join(unknown)} "
                           f"(members know {', '.join(labels)})")
    predicted = predict_probabilities(members, [s.path for s in samples], params, params.batch_size, params.progress)
    check_bad_files(params.data, predicted.bad, len(samples), params.max_bad_fraction)
    probabilities = np.concatenate([predicted.probabilities, forest_probabilities(
        forests, predicted.paths, labels, open_cache(params.cache_dir, params.no_cache), params.num_workers)])
    readable = set(predicted.paths)
    samples = [s for s in samples if s.path in readable]
    if not samples:
        raise DatasetError(f"{params.data}: no readable clips to evaluate")
    return samples, probabilities, predicted.bad


def evaluate(params: EvaluateParams, members: Sequence[Member] | None = None,
             forests: Sequence[ForestMember] | None = None) -> EnsembleEvaluation:
    """Load every member and spectrum forest under `params.models` (or take the `members` and `forests`
    already loaded from there), predict `params.data`, and score members, ensembles and baselines per clip
    and per recording; prints the clip-level table, once. Nothing is written: `report.write_outputs` turns the
    result into tables, metrics.json, plots and report.html in `params.output`, which must be empty, missing or
    an earlier evaluation (checked first)."""
    check_replaceable(params.output, EVALUATION_FOLDER)
    precision = resolve_precision(params.precision)
    threads = use_physical_cores()
    members = list(members) if members is not None else load_members(params.models, params.labels or None,
                                                                      params.progress)
    labels = ensemble_labels(members)
    if forests is None:
        forests = load_forests(params.models, labels) if params.spectrum_forest else []
    names = [m.name for m in members] + [f.name for f in forests]
    weights, hard_weights = vote_weights(parse_weights(params.weights, [m.name for m in members]), forests)
    print(f"evaluate: {len(members)} members, {len(forests)} spectrum forest(s), precision {precision}, "
          f"{threads} CPU threads")

    if precision == "int8":
        from ..inference.int8 import attach, graph_folder

        attach(members, graph_folder(params.cache_dir, params.no_cache))
    samples, probabilities, bad = clip_probabilities(params, members, forests, labels)
    index = {name: i for i, name in enumerate(labels)}
    y_true = np.array([index[s.label] for s in samples])
    options = dict(resamples=params.bootstrap, seed=params.seed, ece_bins=params.ece_bins, summarized=len(members))
    baselines, baseline_note = fit_baselines(members, samples, labels, params) if params.baseline else ({}, None)
    keys = recording_keys(samples)
    clips = assess(y_true, probabilities, names, weights, labels, **options, baselines=baselines,
                   groups=keys, hard_weights=hard_weights)

    groups, pooled = pool_by_group(probabilities, keys)
    group_truth = np.array([dict(zip(keys, y_true))[g] for g in groups])
    recordings = assess(group_truth, pooled, names, weights, labels, **options, hard_weights=hard_weights,
                        baselines={name: pool_by_group(p, keys)[1] for name, p in baselines.items()})

    coverage = coverage_table(y_true, probabilities, weights, clips.scores, clips.predicted, clips.best_member)
    warnings, notes = leakage_checks(members, samples, params)
    if baseline_note:
        notes.append(baseline_note)
    for line in warnings:
        print(f"warning: {line}")
    metrics = {"models": [str(folder) for folder in model_folders(params.models)], "data": str(params.data),
               "labels": labels, "members": names, "weights": dict(zip(names, weights.tolist())),
               "precision": precision, "clips": len(samples), "recordings": len(groups),
               "group_by": params.group_by, "skipped_files": [str(e) for e in bad],
               **scoring_record(params), "clip_level": level_metrics(clips),
               "recording_level": level_metrics(recordings), "coverage_headline": headline(coverage),
               "warnings": warnings, "notes": [HARD_VOTE_SCORES, *notes]}
    print(console_table(clips.summary))
    return EnsembleEvaluation(
        predictions=prediction_table([s.path for s in samples], keys, y_true, clips, labels, "path"),
        members=pd.concat([member_table(members, weights, samples, params.data),
                           forest_table(forests, weights[len(members):], samples)], ignore_index=True),
        per_class=clips.per_class, summary=clips.summary,
        recordings=prediction_table(groups, groups, group_truth, recordings, labels, "recording"),
        recording_summary=recordings.summary, recording_per_class=recordings.per_class,
        coverage=coverage, metrics=metrics, output=Path(params.output))
