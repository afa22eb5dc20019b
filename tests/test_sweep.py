"""Sweeps: grid expansion and names, the ledger, failure isolation, resumption, and the local, papermill
and Ray backends on 1-epoch tiny runs."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError
from mosquito_ast.sweep import LEDGER_NAME, SUMMARY_NAME, Ledger, SweepSpec, expand, run_sweep
from mosquito_ast.sweep import backends
from mosquito_ast.sweep.backends import notebook_parameters

ROOT = Path(__file__).resolve().parents[1]
TINY = {"preset": "tiny", "epochs": 1, "batch_sizes": [8], "precision": "32", "learning_rate": 1e-3}


def spec_of(data: dict, folder: Path = Path("/sweeps")) -> SweepSpec:
    return SweepSpec.from_dict(data, folder, "test.yaml")


def old_launcher_spec() -> dict:
    return {"base": {"learning_rate": {"adamw": 5e-5, "rmsprop": 5e-4}},
            "grid": {"seed": [42, 123], "optimizer": ["adamw", "rmsprop"],
                     "scheduler": ["cosine", "constant_with_warmup"]},
            "datasets": {"independent": {"train": "splits/independent/train", "validation": "/abs/validation"},
                         "random": {"train": "splits/random/train", "validation": "splits/random/validation"}},
            "postfix": "_{dataset}data_seed{seed}_{optimizer}_{scheduler}"}


def test_grid_expands_like_nested_loops_with_old_names(tmp_path):
    runs = expand(spec_of(old_launcher_spec()), tmp_path / "out")
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.postfix for r in runs[:4]] == [
        "_independentdata_seed42_adamw_cosine", "_independentdata_seed42_adamw_constant_with_warmup",
        "_independentdata_seed42_rmsprop_cosine", "_independentdata_seed42_rmsprop_constant_with_warmup"]
    assert runs[8].postfix == "_randomdata_seed42_adamw_cosine"
    for run in runs:
        assert run.params.learning_rate == {"adamw": 5e-5, "rmsprop": 5e-4}[run.params.optimizer]
        assert run.params.postfix == run.postfix and run.params.progress is False
        assert run.member_dir == tmp_path / "out" / run.dataset / "best" / run.postfix
        assert run.log_path == tmp_path / "out" / run.dataset / "logs" / f"{run.postfix}.log"
    assert runs[0].params.train_dir == "/sweeps/splits/independent/train"  # relative to the sweep file
    assert runs[0].params.validation_dir == "/abs/validation"
    assert runs[0].varied == {"seed": 42, "optimizer": "adamw", "scheduler": "cosine", "learning_rate": 5e-5}


def test_grid_mapping_per_optimizer_can_list_several_rates(tmp_path):
    data = {"grid": {"optimizer": ["adamw", "rmsprop"],
                     "learning_rate": {"adamw": [1e-5, 5e-5], "rmsprop": 5e-4},
                     "batch_sizes": [[8], [8, 16]], "freeze": ["head", "last-n"]},
            "base": {"train-last-n-layers": 2},  # flag spelling works too
            "datasets": {"d": {"train": "t", "validation": "v"}},
            "postfix": "{optimizer}_lr{learning_rate:g}_bs{batch_sizes}_{freeze}"}
    runs = expand(spec_of(data), tmp_path)
    assert len(runs) == (2 + 1) * 2 * 2
    assert runs[0].postfix == "adamw_lr1e-05_bs8_head"
    assert runs[3].postfix == "adamw_lr1e-05_bs8-16_last-n" and runs[3].params.batch_sizes == [8, 16]
    assert {r.params.learning_rate for r in runs if r.params.optimizer == "rmsprop"} == {5e-4}
    assert runs[3].params.train_last_n_layers == 2


@pytest.mark.parametrize("change, message", [
    ({"grid": {"sead": [1]}}, "grid: unknown parameter"),
    ({"base": {"learning_rat": 1}}, "base: unknown parameter"),
    ({"grid": {"optimizer": ["adam"]}}, "optimizer: 'adam' is not one of"),
    ({"grid": {"optimizer": ["sgd"]}}, "no value for optimizer 'sgd'"),
    ({"grid": {"epochs": [0]}}, "epochs: must be at least 1"),
    ({"base": {"output": "x"}}, "set by the sweep"),
    ({"base": {"seed": 1}}, "in both base and grid"),
    ({"postfix": "seed{seed}_{colour}"}, "unknown field(s) colour"),
    ({"postfix": "seed{seed}"}, "both named"),
    ({"postfix": "a/{seed}"}, "not a usable folder name"),
    ({"datasets": {}}, "datasets"),
    ({"grid": {"seed": []}}, "seed has no values"),
    ({"grids": {}}, "unknown section"),
])
def test_bad_sweep_files_fail_before_any_run(tmp_path, change, message):
    data = old_launcher_spec()
    for key, value in change.items():
        data[key] = {**data[key], **value} if key in ("base", "grid") else value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_sweep(spec_of(data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_dry_run_of_the_example_prints_the_old_launchers_runs(tmp_path):
    """Without its splits (`tests/test_examples.py` makes them) every run is shown failing, and the exit is 1."""
    example = tmp_path / "examples" / "old_launchers.yaml"
    example.parent.mkdir()
    shutil.copy(ROOT / "examples" / "old_launchers.yaml", example)
    result = CliRunner().invoke(app, ["sweep", str(example), "--dry-run", "--output", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "data_seed" in line]
    assert len(lines) == 20 and "_independentdata_seed42_adamw_cosine" in lines[0]
    assert "_randomdata_seed777_adamw_constant_with_warmup" in lines[-1]
    assert all(" fail " in line for line in lines)
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"grid": {"seed": [1], "colour": ["red"]}, "datasets": {"d": {"train": "t"}}}))
    result = CliRunner().invoke(app, ["sweep", str(bad)])
    assert result.exit_code == 2 and "colour" in result.output


def test_ledger_appends_durably_and_closes_a_torn_line(tmp_path):
    ledger = Ledger(tmp_path / LEDGER_NAME)
    ledger.append({"dataset": "d", "postfix": "a", "status": "failed"})
    with open(ledger.path, "a") as handle:
        handle.write('{"dataset": "d", "postf')  # a writer killed mid-line
    ledger.append({"dataset": "d", "postfix": "a", "status": "done"})
    assert ledger.latest()[("d", "a")]["status"] == "done"
    assert len(ledger.records()) == 2


@pytest.mark.parametrize("freeze, last_n, expected", [("none", 0, (False, 0)), ("head", 0, (True, 0)),
                                                      ("last-n", 3, (False, 3))])
def test_notebook_parameters_use_the_old_names(tmp_path, freeze, last_n, expected):
    data = {"base": {"freeze": freeze, "train_last_n_layers": last_n, "weight_decay": 0.1},
            "grid": {"seed": [5]}, "datasets": {"d": {"train": "t", "validation": "v"}}}
    parameters = notebook_parameters(expand(spec_of(data), tmp_path)[0])
    assert (parameters["b_train_just_last"], parameters["trainNlayers"]) == expected
    assert parameters["random_seed"] == 5 and parameters["output_path"] == str(tmp_path / "d")
    assert parameters["optimizer_type"] == "adamw" and parameters["train_params"]["weight_decay"] == 0.1
    train_cell = nbformat.read(ROOT / "notebooks" / "train.ipynb", as_version=4).cells[1]
    assert "parameters" in train_cell.metadata.tags
    for name in set(parameters) - {"train_params"}:
        assert f"\n{name} = " in "\n" + train_cell.source


def fake_execute(calls: list, interrupt_at: int | None = None):
    """An `execute` that trains nothing: writes a member file and a done record (or is interrupted)."""

    def execute(run, notebook=None):
        calls.append(run)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        run.member_dir.mkdir(parents=True, exist_ok=True)
        (run.member_dir / "model.safetensors").write_bytes(b"")
        return {"dataset": run.dataset, "postfix": run.postfix, "status": "done", "params": run.params.to_dict()}

    return execute


def test_interrupted_sweep_keeps_finished_runs_and_continues(tmp_path, monkeypatch):
    spec = spec_of({"grid": {"seed": [1, 2, 3]}, "datasets": {"d": {"train": "t", "validation": "v"}}})
    calls: list = []
    monkeypatch.setattr(backends, "execute", fake_execute(calls, interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path)
    assert [r["postfix"] for r in Ledger(tmp_path / LEDGER_NAME).records()] == ["seed1"]
    calls.clear()
    monkeypatch.setattr(backends, "execute", fake_execute(calls))
    run_sweep(spec, tmp_path)
    assert [r.postfix for r in calls] == ["seed2", "seed3"]
    assert all(r.params.resume and r.params.overwrite for r in calls)  # continue from a checkpoint if any
    (tmp_path / "d" / "best" / "seed3" / "model.safetensors").unlink()  # done record, but no member: run again
    calls.clear()
    run_sweep(spec, tmp_path)
    assert [r.postfix for r in calls] == ["seed3"]


@pytest.fixture(scope="module")
def broken_sweep(tmp_path_factory, synth_split, feature_cache_dir):
    """A first pass with two datasets, one whose training folder does not exist (yet)."""
    root = tmp_path_factory.mktemp("sweep")
    spec = spec_of({"base": {**TINY, "cache_dir": str(feature_cache_dir)}, "grid": {"seed": [1, 2]},
                    "datasets": {"independent": {"train": str(synth_split[0]), "validation": str(synth_split[1])},
                                 "random": {"train": "missing", "validation": str(synth_split[1])}},
                    "postfix": "_{dataset}data_seed{seed}"}, root)
    outcome = run_sweep(spec, root / "out")
    return spec, root, outcome


def test_one_failing_dataset_does_not_stop_the_others(broken_sweep):
    _, root, outcome = broken_sweep
    assert list(outcome.table.status) == ["done", "done", "failed", "failed"] and outcome.failed == 2
    for postfix in ("_independentdata_seed1", "_independentdata_seed2"):
        config = json.loads((root / "out" / "independent" / "best" / postfix / "config.json").read_text())
        assert config["training"]["seed"] == int(postfix[-1])
    assert not (root / "out" / "random" / "best").exists()
    summary = pd.read_csv(root / "out" / SUMMARY_NAME)
    assert list(summary.postfix) == list(outcome.table.postfix)


def test_ledger_records_each_run(broken_sweep):
    _, root, _ = broken_sweep
    records = sorted(Ledger(root / "out" / LEDGER_NAME).records(), key=lambda r: (r["dataset"], r["postfix"]))
    assert [(r["dataset"], r["status"]) for r in records] == [("independent", "done")] * 2 + [("random", "failed")] * 2
    done, failed = records[0], records[2]
    assert done["params"]["seed"] == 1 and done["params"]["output"] == str(root / "out" / "independent")
    assert done["best_metric"]["name"] == "balanced_accuracy" and 0 <= done["best_metric"]["value"] <= 1
    assert done["best_epoch"] == 1 and done["duration_s"] > 0 and done["start"] <= done["end"]
    assert "error" not in done
    assert failed["error"].startswith("DatasetError:") and "missing" in failed["error"]
    log = Path(failed["log"]).read_text()
    assert log == Path(root / "out" / "random" / "logs" / "_randomdata_seed1.log").read_text()
    assert "Traceback" in log and "DatasetError" in log
    log = Path(done["log"]).read_text()
    assert "last epoch 1" in log and "epoch 1/1  train_loss" in log  # the recipe's selection, one line per epoch


def test_rerun_skips_finished_runs_and_retries_failed_ones_on_request(broken_sweep, synth_split, tmp_path):
    spec, root, _ = broken_sweep
    shutil.copytree(root / "out", tmp_path / "out")  # a copy: the shared first pass stays as it was
    spec, root = dataclasses.replace(spec, folder=tmp_path), tmp_path
    ledger = Ledger(root / "out" / LEDGER_NAME)
    outcome = run_sweep(spec, root / "out")
    assert len(ledger.records()) == 4 and list(outcome.table.status).count("failed") == 2
    os.symlink(synth_split[0], root / "missing")
    outcome = run_sweep(spec, root / "out", retry_failed=True, evaluate=True)
    records = ledger.records()
    assert [(r["dataset"], r["status"]) for r in records[4:]] == [("random", "done")] * 2
    assert list(outcome.table.status) == ["done"] * 4
    comparison = pd.read_csv(root / "out" / "comparison.csv", index_col="ensemble")
    assert list(comparison.index) == ["mean member", "best member", "soft vote", "hard vote"]
    assert {"accuracy (independent)", "accuracy (random)", "f1_weighted (random)", "balanced_accuracy (independent)"} <= set(comparison.columns)
    assert comparison.notna().all().all()


def test_papermill_backend_runs_the_training_notebook_in_worker_processes(tmp_path, synth_split, feature_cache_dir):
    spec = spec_of({"base": {**TINY, "cache_dir": str(feature_cache_dir), "freeze": "last-n",
                             "train_last_n_layers": 1, "scheduler": "constant"},
                    "grid": {"optimizer": ["rmsprop", "sgd"]},
                    "datasets": {"independent": {"train": str(synth_split[0]), "validation": str(synth_split[1])}}})
    outcome = run_sweep(spec, tmp_path, backend="papermill", parallel=2)
    assert list(outcome.table.status) == ["done", "done"], outcome.table.error.tolist()
    member = tmp_path / "independent" / "best" / "optimizerrmsprop"
    config = json.loads((member / "config.json").read_text())["training"]
    assert (config["optimizer"], config["scheduler"], config["learning_rate"]) == ("rmsprop", "constant", 1e-3)
    assert (config["freeze"], config["train_last_n_layers"]) == ("last-n", 1)
    executed = nbformat.read(member / "train.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'optimizer_type = "rmsprop"' in injected.source and "trainNlayers = 1" in injected.source
    assert (tmp_path / "independent" / "logs" / "optimizerrmsprop.ipynb").is_file()
    if len(os.sched_getaffinity(0)) >= 2:  # each worker (and its kernel) has cores // parallel CPUs
        assert "1 CPU threads" in (tmp_path / "independent" / "logs" / "optimizersgd.log").read_text()


def test_ray_backend_trains_members_as_ray_tasks(tmp_path, synth_split, feature_cache_dir):
    ray = pytest.importorskip("ray")
    spec = spec_of({"base": {**TINY, "cache_dir": str(feature_cache_dir)}, "grid": {"seed": [1, 2]},
                    "datasets": {"random": {"train": str(synth_split[0]), "validation": str(synth_split[1])}}})
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        outcome = run_sweep(spec, tmp_path, backend="ray", parallel=2)
    finally:
        ray.shutdown()
    assert list(outcome.table.status) == ["done", "done"], outcome.table.error.tolist()
    records = Ledger(tmp_path / LEDGER_NAME).records()
    assert {r["postfix"] for r in records} == {"seed1", "seed2"}
    for record in records:
        assert (tmp_path / "random" / "best" / record["postfix"] / "model.safetensors").is_file()
        if len(os.sched_getaffinity(0)) >= 2:  # each task pinned to cores // parallel
            assert "1 CPU threads" in Path(record["log"]).read_text()


def test_cross_fit_deals_sessions_to_folds_and_trains_each_on_the_others(tmp_path, synth_split):
    """`{data, session_folds}` becomes one dataset per fold: no recording on both sides of a fold, every
    recording scored exactly once, every member trained on all the others."""
    spec = SweepSpec.from_dict({"base": {"select": "last", "preset": "tiny"}, "grid": {"seed": [1, 2]},
                                "datasets": {"sessions": {"data": str(synth_split[0]), "session_folds": 3}},
                                "postfix": "seed{seed}"}, tmp_path)
    runs = expand(spec, tmp_path / "out")
    assert sorted({run.dataset for run in runs}) == ["sessions-fold1", "sessions-fold2", "sessions-fold3"]
    assert len(runs) == 6
    scored = []
    for dataset in ("sessions-fold1", "sessions-fold2", "sessions-fold3"):
        train = pd.read_csv(tmp_path / "out" / dataset / "train.csv")
        validation = pd.read_csv(tmp_path / "out" / dataset / "validation.csv")
        assert not set(train.group) & set(validation.group)
        assert set(train.label) == set(validation.label)
        scored += validation.path.tolist()
    total = len(list(synth_split[0].rglob("*.wav")))
    assert sorted(scored) == sorted(set(scored)) and len(scored) == total


def test_a_cross_fit_deploys_one_spectrum_forest_on_every_session(tmp_path, synth_split, feature_cache_dir):
    """Each fold keeps the forest of its own training sessions for its evaluation; the sweep as a whole (what
    `predict --models OUTPUT` loads) votes with one forest fitted on every session of the data."""
    from mosquito_ast.data import discover
    from mosquito_ast.inference.forest import FOREST_FOLDER, find_forest_folders, load_forest

    spec = spec_of({"base": {**TINY, "select": "last", "cache_dir": str(feature_cache_dir)}, "grid": {"seed": [1]},
                    "datasets": {"sessions": {"data": str(synth_split[0]), "session_folds": 2}},
                    "postfix": "seed{seed}"})
    output = tmp_path / "out"
    run_sweep(spec, output)
    deployed = output / "sessions" / FOREST_FOLDER
    assert list(find_forest_folders(output).values()) == [deployed]
    clips = len(discover(synth_split[0], "parent"))
    assert load_forest(deployed).config["data"]["train_clips"] == clips
    for fold in ("sessions-fold1", "sessions-fold2"):
        (own,) = find_forest_folders(output / fold / "best").values()
        assert own == output / fold / "best" / FOREST_FOLDER
        assert load_forest(own).config["data"]["train_clips"] < clips
        assert load_forest(own).share == load_forest(deployed).share


@pytest.mark.parametrize("entry, message", [
    ({"data": "x", "session_folds": 1}, "session_folds must be an integer >= 2"),
    ({"data": "x"}, "exactly data and session_folds"),
    ({"data": "x", "session_folds": 2, "train": "y"}, "exactly data and session_folds"),
])
def test_bad_cross_fit_entries_are_named(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=message):
        SweepSpec.from_dict({"base": {}, "grid": {}, "datasets": {"sessions": entry}}, tmp_path)


def test_dry_run_names_the_folders_that_do_not_exist(tmp_path, synth_split):
    data = {"grid": {"seed": [1, 2]},
            "datasets": {"present": {"train": str(synth_split[0]), "validation": str(synth_split[1])},
                         "absent": {"train": "nowhere/train", "validation": str(synth_split[1])}}}
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["sweep", str(sweep_file), "--dry-run", "--output", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert not (tmp_path / "out").exists()
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: dataset absent: train_dir {tmp_path / 'nowhere' / 'train'} does not exist; "
                        "its runs would fail"]
    rows = [line.split() for line in result.output.splitlines() if "seed" in line and line.split()[0].isdigit()]
    assert [(row[1], row[-2], row[-1]) for row in rows if row[-1] == "train_dir"] == [("absent", "fail", "train_dir")] * 2
    assert [row[-1] for row in rows if row[1] == "present"] == ["run", "run"]


@pytest.mark.parametrize("name", ["recipe_seeds", "old_launchers", "freezing_and_rates"])
def test_example_sweeps_train_with_the_recipe(name, tmp_path):
    from mosquito_ast.sweep import load_sweep
    from mosquito_ast.recipes import RECIPES

    runs = expand(load_sweep(ROOT / "examples" / f"{name}.yaml"), tmp_path)
    assert runs
    for run in runs:
        recipe = RECIPES[run.params.start]
        unchanged = set(recipe) - set(run.varied)
        assert {key: getattr(run.params, key) for key in unchanged} == {key: recipe[key] for key in unchanged}
    if name == "recipe_seeds":
        assert [run.params.seed for run in runs] == [1, 2, 3, 4, 5] and runs[0].params.start == "scratch"
