"""The evaluate report, rendered from a hand-built result: headline, version, relative paths, warnings
that warn, recipe columns, and every figure."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mosquito_ast import __version__
from mosquito_ast.inference.votes import pool_by_group
from mosquito_ast.evaluation.coverage import coverage_table, headline
from mosquito_ast.commands.evaluate import assess, level_metrics, prediction_table, scoring_record
from mosquito_ast.evaluation.figures import FIGURES
from mosquito_ast.evaluation.metrics import paired_difference
from mosquito_ast.evaluation.report import vote_warnings, write_outputs
from mosquito_ast.evaluation.tables import general, shown_text, with_interval
from mosquito_ast.evaluation.results import BEST, HARD, MEAN, SOFT, EnsembleEvaluation

LABELS = ["Ae. aegypti", "Ae. albopictus", "An. arabiensis", "An. gambiae", "C. pipiens", "C. quinquefasciatus"]
NAMES = ["runs/best/a", "runs/best/b", "runs/best/c"]


def collapsing_members() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three members, each sure and right on two species and sure of one wrong species elsewhere: every
    member scores 0.5 balanced accuracy, both votes 1/3 and predict 2 of the 6 species."""
    y = np.repeat(np.arange(6), 6)
    probabilities = np.full((3, len(y), 6), 0.02)
    for m, (specialty, wrong) in enumerate((({0, 1}, 5), ({2, 3}, 5), ({4, 5}, 0))):
        for i, c in enumerate(y):
            probabilities[m, i, c if c in specialty else wrong] = 0.5 if c in specialty else 0.9
    groups = [f"{LABELS[c]} r{i // 3}" for c, i in zip(y, np.tile(np.arange(6), 6))]
    return y, probabilities / probabilities.sum(-1, keepdims=True), groups


def member_rows(tmp_path: Path, selected_on_evaluated: bool) -> pd.DataFrame:
    """What evaluate's member table holds, recipe columns included."""
    return pd.DataFrame([{
        "member": name, "folder": str(tmp_path / "models" / name), "format": "mosquito-ast-member", "weight": 1 / 3,
        "feature_settings": "16000Hz", "norm_mean": -4.27, "norm_std": 4.57, "preset_hidden_size": 192,
        "encoder_layers": 12, "preset": "tiny", "norm_stats": "dataset", "augment": "mask+mixup", "epochs": 30,
        "seed": seed, "optimizer": "adamw", "scheduler": "cosine", "learning_rate": 5e-5, "freeze": "none",
        "best_epoch": 12, "selected": "best", "selection_metric": "balanced_accuracy",
        "train_data": str(tmp_path / "data" / "train"), "validation_data": str(tmp_path / "data" / "validation"),
        "selected_on_evaluated": selected_on_evaluated, "train_clips": 300, "train_groups": "t1; t2; t3",
        "shared_groups": ""} for seed, name in enumerate(NAMES)])


def hand_built(tmp_path: Path, selected_on_evaluated: bool = True, baselines: dict[str, np.ndarray] | None = None,
               resamples: int = 200, groups: list[str] | None = None) -> EnsembleEvaluation:
    """What evaluate computes for `collapsing_members` (two recordings per class unless `groups` says other)."""
    y, probabilities, two_per_class = collapsing_members()
    groups = groups or two_per_class
    weights = np.full(3, 1 / 3)
    options = dict(resamples=resamples, seed=0, ece_bins=5)
    clips = assess(y, probabilities, NAMES, weights, LABELS, **options, baselines=baselines, groups=groups)
    keys, pooled = pool_by_group(probabilities, groups)
    truth = np.array([dict(zip(groups, y))[g] for g in keys])
    recordings = assess(truth, pooled, NAMES, weights, LABELS, **options)
    coverage = coverage_table(y, probabilities, weights, clips.scores, clips.predicted, clips.best_member)
    paths = [str(tmp_path / "data" / "validation" / LABELS[c] / f"clip{i}.wav") for i, c in enumerate(y)]
    metrics = {
        "models": [str(tmp_path / "models"), str(tmp_path / "more")],
        "data": str(tmp_path / "data" / "validation"), "labels": LABELS, "members": NAMES,
        "weights": dict(zip(NAMES, weights.tolist())), "precision": "32", "clips": len(y), "recordings": len(keys),
        "group_by": "auto",
        "skipped_files": [f"{tmp_path}/data/validation/broken.wav: not a sound file"],
        **scoring_record(SimpleNamespace(bootstrap=resamples, seed=0, ece_bins=5)),
        "clip_level": level_metrics(clips), "recording_level": level_metrics(recordings),
        "coverage_headline": headline(coverage), "warnings": [],
        "notes": [f"spectrum baselines fitted on 300 training clips of {tmp_path / 'data' / 'train'}"],
    }
    return EnsembleEvaluation(
        predictions=prediction_table(paths, groups, y, clips, LABELS, "path"),
        members=member_rows(tmp_path, selected_on_evaluated), per_class=clips.per_class, summary=clips.summary,
        recordings=prediction_table(keys, keys, truth, recordings, LABELS, "recording"),
        recording_summary=recordings.summary, recording_per_class=recordings.per_class, coverage=coverage,
        metrics=metrics, output=tmp_path / "evaluation")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, EnsembleEvaluation, str]:
    tmp_path = tmp_path_factory.mktemp("report")
    evaluation = hand_built(tmp_path)
    out = write_outputs(evaluation)
    return tmp_path, evaluation, (out / "report.html").read_text()


def test_headline_states_the_soft_vote_with_its_interval_and_the_selection_bias(written):
    _, evaluation, report = written
    soft = evaluation.summary.set_index("system").loc[SOFT]
    interval = with_interval(soft.balanced_accuracy, soft.balanced_accuracy_ci_low, soft.balanced_accuracy_ci_high)
    assert interval.startswith("0.33 [")
    assert (f"Soft vote: balanced accuracy {interval}</b> (95% interval, bootstrap unit: recording; chance 0.167 "
            f"(1/6) for accuracy and balanced accuracy)") in report
    assert "on 36 clips from 12 recordings of 6 classes, 3 members; data <code>../data/validation</code>" in report
    assert "Optimistically biased: 3 of 3 members selected their epoch on these clips." in report
    assert report.index("Soft vote: balanced accuracy") < report.index("<h2>Warnings</h2>")


def test_version_date_and_no_absolute_paths_anywhere(written):
    tmp_path, _, report = written
    out = tmp_path / "evaluation"
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"mosquito-ast {__version__}, written {metrics['written']}" in report
    assert metrics["mosquito_ast_version"] == __version__ and metrics["data"] == "../data/validation"
    assert metrics["models"] == ["../models", "../more"] and "<code>../models</code>, <code>../more</code>" in report
    for name in ("report.html", "metrics.json", "predictions.csv", "members.csv"):
        assert str(tmp_path) not in (out / name).read_text(), name
    assert metrics["skipped_files"] == ["../data/validation/broken.wav: not a sound file"]
    assert pd.read_csv(out / "members.csv").train_data.eq("../data/train").all()
    assert pd.read_csv(out / "predictions.csv").path[0] == "../data/validation/Ae. aegypti/clip0.wav"


def test_warnings_name_a_collapsing_vote(written):
    tmp_path, _, report = written
    result_warnings = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["result_warnings"]
    expected = ["soft vote: balanced accuracy 0.333 is below every member (lowest 0.500, runs/best/a)",
                "hard vote never predicts 4 of 6 classes",
                "small evaluation set: 6 of 6 classes have fewer than 30 clips or 5 recordings (smallest: Ae. aegypti, "
                "6 clips from 2 recordings)",
                "this set was used for selection: runs/best/a, runs/best/b, runs/best/c"]
    for text in expected:
        assert any(w.startswith(text) for w in result_warnings), text
        assert text in report
    assert "<h2>Warnings</h2><p>none</p>" not in report


def test_tables_have_human_names_and_readable_numbers(written):
    _, _, report = written
    assert "<th>balanced accuracy [95% CI]</th>" in report and "<th>ROC-AUC (macro)</th>" in report
    assert "balanced_accuracy" not in report.split("<h2>Figures</h2>")[0].replace("chosen by balanced_accuracy", "")
    assert '<td class="n">5e-05</td>' in report  # the learning rate, not 0.000
    for column in ("preset", "encoder", "normalization", "augmentation", "epochs", "learning rate", "selection",
                   "training data"):
        assert f"<th>{column}</th>" in report, column
    assert "<td>12 layers × 192</td>" in report and "<td>best (balanced accuracy)</td>" in report


def test_every_figure_is_written_and_embedded(written):
    tmp_path, _, report = written
    for figure in FIGURES:
        assert (tmp_path / "evaluation" / figure).read_bytes()[:4] == b"\x89PNG", figure
    assert report.count("data:image/png;base64,") == len(FIGURES)
    assert "Reliability diagram of the soft vote" in report


def test_vote_warnings_compare_with_the_best_and_the_mean_member():
    def summary(hard: float, soft: float) -> pd.DataFrame:
        return pd.DataFrame({"system": ["a", "b", MEAN, BEST, HARD, SOFT], "member": ["a", "b", "", "b", "", ""],
                             "kind": ["member", "member", "mean", "best", "ensemble", "ensemble"],
                             "balanced_accuracy": [0.4, 0.6, 0.5, 0.6, hard, soft]})

    assert vote_warnings(summary(0.6, 0.7), 1 / 4) == []  # a tie with the best member is no loss
    assert vote_warnings(summary(0.55, 0.45), 1 / 4) == [
        "soft vote: balanced accuracy 0.450 is below the mean member (0.500)",
        "hard vote: balanced accuracy 0.550 is below the best member (b 0.600, itself picked on this set)"]
    assert vote_warnings(summary(0.6, 0.2), 1 / 4) == [
        "soft vote: balanced accuracy 0.200 is below every member (lowest 0.400, a)",
        "no better than guessing (balanced accuracy <= 1/4 = 0.250): soft vote"]


def test_held_out_when_no_member_selected_on_the_set(tmp_path):
    report = (write_outputs(hand_built(tmp_path, selected_on_evaluated=False)) / "report.html").read_text()
    assert "Held out: no member selected its epoch on these clips." in report
    assert "this set was used for selection" not in report


def test_number_and_path_formats():
    assert [general(v) for v in (5e-05, 0.001, 30.0, 0.25, True, float("nan"))] == \
        ["5e-05", "0.001", "30", "0.25", "yes", "–"]
    assert with_interval(0.5333, 0.4666, 0.5912) == "0.53 [0.47, 0.59]"
    assert with_interval(0.5333, float("nan"), float("nan")) == "0.53"
    assert shown_text("fitted on /a/b/train, see https://x.org/y and 1/6", Path("/a/out")) == \
        "fitted on ../b/train, see https://x.org/y and 1/6"


def test_the_report_answers_whether_the_transformers_beat_the_spectrum_baseline(tmp_path, capsys):
    """A baseline right on 5 of 6 species (balanced accuracy 5/6) against the collapsing vote (1/3)."""
    y = collapsing_members()[0]
    right = np.eye(6)[np.where(y == 5, 0, y)]
    evaluation = hand_built(tmp_path, baselines={"mel spectrum + random forest": right, "Welch spectrum + x": right / 2 + 1 / 12})
    out = write_outputs(evaluation)
    metrics = json.loads((out / "metrics.json").read_text())
    difference = metrics["clip_level"]["baseline_difference"]
    y, _, groups = collapsing_members()
    soft = evaluation.predictions["soft vote:label"].map(LABELS.index).to_numpy()
    assert difference == {"ensemble": "soft vote", "baseline": "mel spectrum + random forest",
                          "metric": "balanced_accuracy",
                          **paired_difference(y, soft, right.argmax(1), 200, seed=0, groups=groups)}
    assert difference["difference"] == pytest.approx(1 / 3 - 5 / 6)
    assert difference["ci_low"] <= difference["difference"] <= difference["ci_high"] < 0
    line = ("Soft vote against the best spectrum baseline (mel spectrum + random forest, fitted on the members' "
            f"training clips): balanced accuracy 0.333 vs 0.833, difference -0.500 [{difference['ci_low']:+.3f}, "
            f"{difference['ci_high']:+.3f}] (paired bootstrap, 95% interval, bootstrap unit: recording)")
    assert line in capsys.readouterr().out and html.escape(line) in (out / "report.html").read_text()
    result_warnings = metrics["result_warnings"]
    assert ("the spectrum baseline mel spectrum + random forest (0.833) scores at least the soft vote (0.333): here "
            "the transformers add nothing over a time-averaged spectrum") in result_warnings


def test_no_baseline_no_comparison(written):
    _, _, report = written
    assert "best spectrum baseline" not in report


def test_without_bootstrap_nothing_announces_an_interval(tmp_path, capsys):
    y = collapsing_members()[0]
    out = write_outputs(hand_built(tmp_path, baselines={"mel spectrum + random forest": np.eye(6)[y]}, resamples=0))
    printed, report = capsys.readouterr().out, (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    words = re.sub(r"data:image/png;base64,[^\"]+", "", report)  # the figures' bytes hold any letters
    for text in (printed, words, (out / "metrics.json").read_text()):
        assert "95%" not in text and "CI" not in text and "ci_low" not in text
    assert "Soft vote: balanced accuracy 0.33 (no interval: --bootstrap 0; chance 0.167 (1/6)" in printed
    assert "Soft vote: balanced accuracy 0.33</b> (no interval: --bootstrap 0; chance" in report
    assert "Intervals: not computed (--bootstrap 0)." in report
    assert "<th>balanced accuracy</th><th>accuracy</th>" in report
    assert metrics["bootstrap"] == {"resamples": 0, "seed": 0, "level": None, "unit": None}
    assert metrics["clip_level"]["baseline_difference"]["difference"] == pytest.approx(1 / 3 - 1)
    assert "balanced accuracy 0.333 vs 1.000, difference -0.667\n" in printed


def test_a_class_with_one_recording_is_named_where_the_intervals_are(tmp_path, capsys):
    y, _, groups = collapsing_members()
    one_each = [f"{LABELS[c]} r0" if LABELS[c] in ("An. gambiae", "C. pipiens") else g for c, g in zip(y, groups)]
    out = write_outputs(hand_built(tmp_path, groups=one_each))
    note = ("Intervals (bootstrap over recordings) rest on one recording for An. gambiae, C. pipiens: the only "
            "recording of each class here.")
    assert note in capsys.readouterr().out and note in (out / "report.html").read_text()
    assert json.loads((out / "metrics.json").read_text())["single_recording_classes"] == ["An. gambiae", "C. pipiens"]


def test_write_outputs_prints_the_headline_not_the_table_evaluate_printed(tmp_path, capsys):
    out = write_outputs(hand_built(tmp_path, selected_on_evaluated=False))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Soft vote: balanced accuracy 0.33 [")
    assert printed[0].endswith("chance 0.167 (1/6) for accuracy and balanced accuracy) on 36 clips from 12 recordings")
    assert printed[-1] == f"report: {out / 'report.html'}"
    assert not any("log_loss" in line or line.lstrip().startswith(NAMES[0]) for line in printed)
    assert "rest on one recording" not in "\n".join(printed)  # two recordings of every class
