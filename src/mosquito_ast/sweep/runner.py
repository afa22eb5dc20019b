"""Run a sweep: plan from the ledger (skip finished runs, retry failed ones on request), dispatch to a
backend, record every result as it arrives, then summarize and optionally compare the ensembles."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mosquito_ast_lite.io import atomic_write_text

from ..checkpoints import WEIGHTS_NAME
from ..config import ConfigError
from .backends import BACKENDS, default_notebook, run_pool, run_ray, run_sequential
from .cross_fit import deploy_forest
from ..evaluation.results import BEST, HARD, MEAN, SOFT
from ..inference.forest import FOREST_FOLDER
from .ledger import LEDGER_NAME, SUMMARY_NAME, Ledger
from .spec import Run, SweepSpec, expand, naming_value

COMPARISON_NAME = "comparison.csv"
COMPARED_METRICS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro")
FAIL = "fail"  # a dry run's action for a run whose inputs are missing


@dataclass
class SweepOutcome:
    """What a sweep call produced: its runs, the plan or summary table, the comparison (if evaluated)."""

    output: Path
    runs: list[Run]
    table: pd.DataFrame
    comparison: pd.DataFrame | None = None

    @property
    def failed(self) -> int:
        """Runs whose last attempt failed, and in a dry run the runs that would fail."""
        failed = int((self.table.status == "failed").sum()) if "status" in self.table else 0
        return failed + (int((self.table.action == FAIL).sum()) if "action" in self.table else 0)


def sweep_output(spec: SweepSpec, output: str | Path | None) -> Path:
    """--output, else the file's `output` (relative to the file), else runs/<sweep file name>."""
    if output:
        return Path(output).resolve()
    if spec.output:
        return (spec.folder / spec.output).resolve()
    return Path("runs", Path(spec.source).stem).resolve()


def run_state(run: Run, latest: dict[tuple[str, str], dict]) -> str:
    """done (a 'done' record and the member folder exist), failed, or pending (never finished)."""
    record = latest.get(run.key)
    if record is None:
        return "pending"
    if record["status"] == "done":
        return "done" if (run.member_dir / WEIGHTS_NAME).is_file() else "pending"
    return "failed"


def missing_inputs(run: Run) -> dict[str, str]:
    """The folders a run (or --evaluate, for the test side) reads that do not exist, by parameter: a dry
    run names them before anything trains. Files the sweep writes itself (a cross-fit's manifests) do not
    count; an ssl_checkpoint counts when it is written as a path (., / or ~), not a hub id."""
    params = run.params
    inputs = {"train_dir": params.train_dir, "validation_dir": params.validation_dir, "test_dir": run.test_dir}
    if params.ssl_checkpoint and params.ssl_checkpoint.startswith((".", "/", "~")):
        inputs["ssl_checkpoint"] = params.ssl_checkpoint
    return {name: path for name, path in inputs.items()
            if path and path not in run.made_by_sweep and not Path(path).expanduser().exists()}


def plan_table(runs: list[Run], states: list[str], retry_failed: bool) -> pd.DataFrame:
    """One row per run: its state in the ledger, what the sweep would do with it (fail: an input is
    missing), and the missing inputs."""
    action = {"done": "skip", "pending": "run", "failed": "retry" if retry_failed else "skip (failed)"}
    rows = []
    for run, state in zip(runs, states):
        missing = missing_inputs(run)
        rows.append({"dataset": run.dataset, "postfix": run.postfix,
                     **{k: naming_value(v) for k, v in run.varied.items()}, "status": state,
                     "action": FAIL if missing and action[state] in ("run", "retry") else action[state],
                     "missing": ", ".join(missing)})
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1))


def check_scored_sides(runs: list[Run], dry_run: bool, source: str) -> None:
    """--evaluate scores each dataset on its test side, else its validation side: refuse a dataset with
    neither, and (a dry run shows it as failing instead) a scored folder that does not exist, before
    anything trains."""
    for run in {run.dataset: run for run in runs}.values():
        scored = run.scored_side
        if scored is None:
            raise ConfigError(f"{source}: --evaluate: dataset {run.dataset} has no test or validation side to score its "
                              f"ensemble on; give it `test: DIR` (or `validation: DIR`)")
        side, folder = scored
        if not dry_run and folder not in run.made_by_sweep and not Path(folder).exists():
            raise FileNotFoundError(f"{folder}: the {side} side of dataset {run.dataset} (--evaluate scores it) "
                                    f"does not exist")


def summary_table(runs: list[Run], latest: dict[tuple[str, str], dict]) -> pd.DataFrame:
    rows = []
    for run in runs:
        record = latest.get(run.key, {})
        metric = record.get("best_metric") or {}
        rows.append({"dataset": run.dataset, "postfix": run.postfix, "status": record.get("status", "not run"),
                     "seconds": record.get("duration_s"), "best_epoch": record.get("best_epoch"),
                     "metric": metric.get("name"), "value": metric.get("value"),
                     "error": record.get("error"), "log": record.get("log")})
    return pd.DataFrame(rows, index=pd.RangeIndex(1, len(rows) + 1))


def _result_line(record: dict[str, Any]) -> str:
    name = f"{record['dataset']}/{record['postfix']}"
    if record["status"] == "done":
        metric = record.get("best_metric") or {}
        score = f"  {metric['name']} {metric['value']:.4f}" if metric.get("value") is not None else ""
        return f"✅ {name}  {record.get('duration_s', 0):.0f} s{score}"
    return f"❌ {name}  {record.get('error')}  (log: {record.get('log')})"


def run_sweep(spec: SweepSpec, output: str | Path | None = None, backend: str = "local", parallel: int = 1,
              dry_run: bool = False, retry_failed: bool = False, evaluate: bool = False,
              ray_address: str | None = None, notebook: str | Path | None = None) -> SweepOutcome:
    """Expand and validate every run, then train those not finished yet; see the module docstring."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if parallel < 1:
        raise ConfigError(f"parallel: must be at least 1, got {parallel}")
    output = sweep_output(spec, output)
    runs = expand(spec, output, write=not dry_run)
    notebook_path = _notebook(spec, notebook) if backend == "papermill" else None
    if evaluate:
        _evaluation_api()
        check_scored_sides(runs, dry_run, spec.source)
    ledger = Ledger(output / LEDGER_NAME)
    latest = ledger.latest()
    states = [run_state(run, latest) for run in runs]
    plan = plan_table(runs, states, retry_failed)
    if dry_run:
        return SweepOutcome(output, runs, plan)

    todo = [_attempt(run, state) for run, state in zip(runs, states)
            if state == "pending" or (state == "failed" and retry_failed)]
    print(f"sweep: {len(runs)} runs, {states.count('done')} done, {states.count('failed')} failed before, "
          f"{len(todo)} to run on {backend}" + (f" x{parallel}" if parallel > 1 else "") + f" -> {output}")
    _dispatch(todo, backend, parallel, notebook_path, ledger, ray_address)

    summary = summary_table(runs, ledger.latest())
    atomic_write_text(output / SUMMARY_NAME, summary.to_csv(index=False))
    deploy_forests(spec, runs, output)
    comparison = compare_ensembles(runs, output) if evaluate else None
    return SweepOutcome(output, runs, summary, comparison)


def deploy_forests(spec: SweepSpec, runs: list[Run], output: Path) -> None:
    """Each cross-fit's spectrum forest on all its sessions, once its folds have trained (`cross_fit.deploy_forest`)."""
    for name, entry in spec.datasets.items():
        folds = [run for run in runs if run.made_by_sweep and run.dataset.startswith(f"{name}-fold")]
        if "session_folds" not in entry or not folds:
            continue
        params = folds[0].params
        forest = deploy_forest(name, entry, spec.folder, output, params.group_by,
                               [run.member_dir.parent / FOREST_FOLDER for run in folds], params.cache_dir,
                               params.no_cache)
        if forest is not None:
            print(f"sweep: {name}: the spectrum forest of all its sessions -> {forest} (`--models {output}` votes with "
                  f"it; each fold's evaluation with the fold's own)")


def _attempt(run: Run, state: str) -> Run:
    """A failed run starts over; a never-finished one continues from its last checkpoint, if any."""
    params = dataclasses.replace(run.params, overwrite=True, resume=state == "pending")
    return dataclasses.replace(run, params=params)


def _dispatch(todo: list[Run], backend: str, parallel: int, notebook: Path | None, ledger: Ledger,
              ray_address: str | None) -> None:
    from tqdm.auto import tqdm

    if not todo:
        return
    with tqdm(total=len(todo), desc="sweep", unit="run", dynamic_ncols=True) as bar:
        def record(result: dict[str, Any]) -> None:
            ledger.append(result)
            bar.write(_result_line(result))
            bar.update()

        nb = str(notebook) if notebook else None
        if backend == "ray":
            run_ray(todo, parallel, nb, record, ray_address)
        elif parallel > 1:
            run_pool(todo, parallel, nb, record)
        else:
            run_sequential(todo, nb, record)


def _notebook(spec: SweepSpec, notebook: str | Path | None) -> Path:
    path = Path(notebook) if notebook else (spec.folder / spec.notebook if spec.notebook else default_notebook())
    if not path.is_file():
        raise ConfigError(f"{path}: training notebook not found (give it with --notebook or `notebook:`)")
    return path.resolve()


def _evaluation_api():
    try:
        from ..config import EvaluateParams
        from ..commands.evaluate import evaluate
        from ..evaluation.report import write_outputs
    except ImportError as error:
        raise ConfigError(f"--evaluate needs mosquito_ast.commands.evaluate, which is not available: {error}") from None
    return EvaluateParams, evaluate, write_outputs


def compare_ensembles(runs: list[Run], output: Path) -> pd.DataFrame | None:
    """Evaluate each dataset's members on its test side, else its validation side (`Run.scored_side`);
    one row per ensemble view, the datasets side by side per metric. Written to <output>/comparison.csv."""
    EvaluateParams, evaluate, write_outputs = _evaluation_api()
    shared = {spec.name for spec in dataclasses.fields(EvaluateParams)}
    tables = {}
    for dataset in dict.fromkeys(run.dataset for run in runs):
        first = next(run for run in runs if run.dataset == dataset)
        members = output / dataset / "best"
        if not members.is_dir() or not any(members.iterdir()):
            print(f"evaluate: {dataset}: no finished members, left out")
            continue
        data_params = {k: v for k, v in first.params.to_dict().items()
                       if k in shared and k not in ("output", "seed")}
        side, folder = first.scored_side
        print(f"evaluate: {dataset}: its ensemble on its {side} side ({folder})")
        params = EvaluateParams.from_sources(None, **{**data_params, "models": str(members), "data": folder,
                                                      "output": str(output / dataset / "evaluation")})
        evaluation = evaluate(params)
        write_outputs(evaluation)
        summary = evaluation.summary
        tables[dataset] = summary.set_index("system") if "system" in summary.columns else summary
    if not tables:
        return None
    columns = {}
    for metric in COMPARED_METRICS:
        for dataset, table in tables.items():
            if metric in table.columns:
                columns[f"{metric} ({dataset})"] = table.reindex([MEAN, BEST, SOFT, HARD])[metric]
    comparison = pd.DataFrame(columns)
    comparison.index.name = "ensemble"
    atomic_write_text(output / COMPARISON_NAME, comparison.to_csv())
    return comparison


def report(outcome: SweepOutcome, dry_run: bool = False) -> None:
    """Print the plan (dry run) or the summary, and the ensemble comparison when there is one."""
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 60):
        if dry_run:
            print(outcome.table.to_string())
            print(f"{len(outcome.runs)} runs; members go to {outcome.output}/<dataset>/best/<postfix>/")
            missing = {(run.dataset, name, path) for run in outcome.runs for name, path in missing_inputs(run).items()}
            for dataset, name, path in sorted(missing):
                print(f"warning: dataset {dataset}: {name} {os.path.normpath(path)} does not exist; its runs would fail",
                      file=sys.stderr)
            if outcome.failed:
                print(f"exit 1: {outcome.failed} of {len(outcome.runs)} runs would fail or failed before", file=sys.stderr)
            return
        shown = outcome.table.drop(columns=["log"]).fillna("")
        print(shown.to_string())
        counts = outcome.table.status.value_counts()
        print(", ".join(f"{n} {status}" for status, n in counts.items()) +
              f"; ledger {outcome.output / LEDGER_NAME}, table {outcome.output / SUMMARY_NAME}")
        if outcome.comparison is not None:
            scored = {run.dataset: run.scored_side[0] for run in outcome.runs if run.scored_side}
            print("scored on: " + ", ".join(f"{dataset}: {side} side" for dataset, side in scored.items()))
            print(outcome.comparison.round(4).to_string())
            print(f"comparison -> {outcome.output / COMPARISON_NAME}")
