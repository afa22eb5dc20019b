"""Two recording sessions per species: a split with a train and a test side and no validation side, checked
train against test, and sweeps (local and papermill) that train on the train side alone and `--evaluate`
on the test side; the evaluation notebook writes its report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError
from mosquito_ast.sweep import SweepSpec, run_sweep
from mosquito_ast.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = {"preset": "tiny", "epochs": 1, "batch_sizes": [8], "precision": "32", "learning_rate": 1e-3}
runner = CliRunner()


@pytest.fixture(scope="module")
def two_session_split(tmp_path_factory) -> Path:
    """`split --test-fraction 0.3` of generated data with two recordings per species (as the real sample)."""
    root = tmp_path_factory.mktemp("two-sessions")
    generate_dataset(root / "data", recordings_per_species=2, clips_per_recording=6, clip_seconds=0.5, seed=4)
    result = runner.invoke(app, ["split", str(root / "data"), "--output", str(root / "splits"),
                                 "--test-fraction", "0.3", "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "splits" / "independent"


def test_split_with_a_test_side_and_two_sessions_has_no_validation_side(two_session_split, tmp_path):
    assert sorted(p.name for p in two_session_split.iterdir() if p.is_dir()) == ["test", "train"]
    report = json.loads((two_session_split / "split_report.json").read_text())
    assert report["clips"] == {"train": 24, "test": 24}
    assert [w for w in report["warnings"] if w.startswith("no validation side")] == [report["warnings"][-1]]
    assert not any("all in train, none in validation" in w for w in report["warnings"])
    asked = runner.invoke(app, ["split", str(two_session_split.parents[1] / "data"), "--output", str(tmp_path),
                                "--test-fraction", "0.3", "--validation-fraction", "0", "--no-progress"])
    assert asked.exit_code == 0 and "warning: no validation" not in asked.output, asked.output
    assert [line.split(":")[0].strip() for line in asked.output.splitlines() if line.startswith("  ")] == ["train", "test"]


def test_check_split_names_the_test_side(two_session_split):
    result = runner.invoke(app, ["check-split", str(two_session_split / "train"), str(two_session_split / "test"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "train: 24 files, test: 24 files"
    assert "validation" not in result.output and "no leakage found" in result.output


def sweep_spec(split: Path, cache: Path, folder: Path, **dataset) -> SweepSpec:
    return SweepSpec.from_dict({"base": {**TINY, "cache_dir": str(cache)}, "grid": {"seed": [1, 2]},
                                "datasets": {"two": {"train": str(split / "train"), **dataset}},
                                "postfix": "seed{seed}"}, folder)


def test_local_sweep_trains_on_the_train_side_and_evaluates_the_test_side(two_session_split, feature_cache_dir,
                                                                          tmp_path, capsys):
    spec = sweep_spec(two_session_split, feature_cache_dir, tmp_path, test=str(two_session_split / "test"))
    outcome = run_sweep(spec, tmp_path / "out", evaluate=True)
    assert list(outcome.table.status) == ["done", "done"], outcome.table.error.tolist()
    assert outcome.table.value.isna().all()  # no validation side: the last epoch, not scored
    predictions = pd.read_csv(tmp_path / "out" / "two" / "evaluation" / "predictions.csv")
    assert len(predictions) == 24 and all("/test/" in path for path in predictions.path)
    assert (tmp_path / "out" / "comparison.csv").is_file() and outcome.comparison.notna().all().all()
    assert "evaluate: two: its ensemble on its test side" in capsys.readouterr().out


def test_papermill_sweep_without_a_validation_side_marks_runs_done(two_session_split, feature_cache_dir, tmp_path):
    spec = sweep_spec(two_session_split, feature_cache_dir, tmp_path)
    outcome = run_sweep(spec, tmp_path / "out", backend="papermill")
    assert list(outcome.table.status) == ["done", "done"], outcome.table.error.tolist()
    assert (tmp_path / "out" / "two" / "best" / "seed1" / "train.ipynb").is_file()


def test_evaluate_without_a_side_to_score_is_refused_before_training(two_session_split, tmp_path):
    spec = sweep_spec(two_session_split, tmp_path / "cache", tmp_path)
    with pytest.raises(ConfigError, match="dataset two has no test or validation side"):
        run_sweep(spec, tmp_path / "out", evaluate=True)
    missing = sweep_spec(two_session_split, tmp_path / "cache", tmp_path, test=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="the test side of dataset two"):
        run_sweep(missing, tmp_path / "out", evaluate=True)
    assert not (tmp_path / "out").exists()


def test_cross_fit_dry_run_writes_no_fold_manifests(two_session_split, tmp_path):
    spec = SweepSpec.from_dict({"base": TINY, "grid": {"seed": [1]},
                                "datasets": {"s": {"data": str(two_session_split / "train"), "session_folds": 2}}},
                               tmp_path)
    outcome = run_sweep(spec, tmp_path / "out", dry_run=True, evaluate=True)
    assert list(outcome.table.action) == ["run", "run"] and not outcome.failed
    assert not (tmp_path / "out").exists()


def test_sweep_help_lists_its_own_options_apart_from_the_training_loop():
    result = runner.invoke(app, ["sweep", "--help"], terminal_width=200)
    panels = re.split(r"\n╭─ ", result.output)
    system = next(p for p in panels if p.startswith("System"))
    assert "--dry-run" in system and "--retry-failed" in system
    assert not any("--dry-run" in p for p in panels if p.startswith("Training loop"))


def test_evaluate_notebook_writes_its_report(tiny_member, synth_split, tmp_path):
    papermill = pytest.importorskip("papermill")
    notebook = ROOT / "notebooks" / "evaluate_ensemble.ipynb"
    papermill.execute_notebook(str(notebook), str(tmp_path / "executed.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(notebook.parent),
                               parameters={"models_dir": str(tiny_member), "data_dir": str(synth_split[1]),
                                           "output_dir": str(tmp_path / "evaluation"), "bootstrap": 0,
                                           "progress": False})
    written = {p.name for p in (tmp_path / "evaluation").iterdir()}
    assert {"predictions.csv", "recordings.csv", "metrics.json", "report.html"} <= written
