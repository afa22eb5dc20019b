"""Where runs execute: in this process, in a pool of worker processes (one CPU share and one GPU each),
or as Ray tasks; each run as a `train` call or as the papermill training notebook.

Every run's output goes to its own log and a failing run becomes a `failed` record, never an exception,
so one bad run cannot stop the others. Heavy imports (torch, papermill, ray) happen inside functions:
a worker imports only what its runs need.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from ..checkpoints import CONFIG_NAME
from .ledger import utc_now
from .spec import Run

BACKENDS = ("local", "papermill", "ray")
KERNEL_NAME = "python3"  # ipykernel's native kernel: jupyter_client starts it with this interpreter
OnResult = Callable[[dict[str, Any]], None]


@contextlib.contextmanager
def redirect_output(log: IO[str]) -> Iterator[None]:
    """Send this process's stdout and stderr to `log`, at the file-descriptor level too, so Lightning's
    logging, tqdm bars and native libraries land in the run's log rather than the sweep's console."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def notebook_parameters(run: Run) -> dict[str, Any]:
    """The training notebook's parameters (the old notebook's names) for a run; parameters the old
    notebook had no name for travel in `train_params`."""
    values = run.params.to_dict()
    freeze, last_n = values.pop("freeze"), values.pop("train_last_n_layers")
    named = {
        "SSL_pretrained_path": values.pop("ssl_checkpoint") or "",
        "train_dir": values.pop("train_dir"),
        "validation_dir": values.pop("validation_dir"),
        "postfix": values.pop("postfix"),
        "b_train_just_last": freeze == "head",
        "trainNlayers": last_n if freeze == "last-n" else 0,
        "epoch_num": values.pop("epochs"),
        "batch_sizes": values.pop("batch_sizes"),
        "random_seed": values.pop("seed"),
        "output_path": values.pop("output"),
        "learning_rate": values.pop("learning_rate"),
        "optimizer_type": values.pop("optimizer"),
        "scheduler_type": values.pop("scheduler"),
    }
    extras = {name: values.pop(name) for name in ("preset", "clip_seconds", "precision", "cache_dir", "progress")}
    return {**named, **extras, "train_params": values}


def run_notebook(run: Run, notebook: Path, log: IO[str]) -> None:
    """Execute the training notebook for one run; the executed copy is kept beside the log and, when
    the run succeeds, inside the member folder."""
    import papermill

    papermill.execute_notebook(str(notebook), str(run.notebook_path), parameters=notebook_parameters(run),
                               kernel_name=KERNEL_NAME, progress_bar=False, stdout_file=log, stderr_file=log,
                               cwd=str(notebook.parent))
    shutil.copy2(run.notebook_path, run.member_dir / "train.ipynb")


def describe(error: BaseException) -> str:
    """One line for the ledger: papermill errors name the notebook cell's exception, not papermill's."""
    name, value = getattr(error, "ename", None), getattr(error, "evalue", None)
    if name:
        return f"{name}: {value}"
    return f"{type(error).__name__}: {error}".strip()


def execute(run: Run, notebook: str | None = None, cpus: list[int] | None = None) -> dict[str, Any]:
    """Train one member in this process (pinned to `cpus` if given) and return its ledger record
    (status done or failed)."""
    pin(cpus)
    record: dict[str, Any] = {"dataset": run.dataset, "postfix": run.postfix, "status": "failed",
                              "start": utc_now(), "params": run.params.to_dict(),
                              "member": str(run.member_dir), "log": str(run.log_path)}
    if notebook:
        record["notebook"] = str(run.notebook_path)
    clock = time.perf_counter()
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(run.log_path, "a", buffering=1, encoding="utf-8") as log, redirect_output(log):
        print(f"=== {record['start']} {run.dataset}/{run.postfix} pid {os.getpid()}")
        try:
            if notebook:
                run_notebook(run, Path(notebook), log)
            else:
                from ..commands.train import train

                train(run.params)
            config = json.loads((run.member_dir / CONFIG_NAME).read_text())
            record.update(status="done", best_metric=config.get("best_metric"), best_epoch=config.get("best_epoch"))
        except Exception as error:
            traceback.print_exc()
            record["error"] = describe(error)
        record.update(end=utc_now(), duration_s=round(time.perf_counter() - clock, 2))
        print(f"=== {record['end']} {record['status']} in {record['duration_s']} s")
    return record


def crashed(run: Run, started: str, error: BaseException) -> dict[str, Any]:
    """The record of a run whose worker died (killed, out of memory, segfault) before reporting."""
    return {"dataset": run.dataset, "postfix": run.postfix, "status": "failed", "start": started,
            "end": utc_now(), "params": run.params.to_dict(), "member": str(run.member_dir),
            "log": str(run.log_path), "error": f"worker died: {describe(error)}"}


def run_sequential(runs: list[Run], notebook: str | None, on_result: OnResult) -> None:
    for run in runs:
        on_result(execute(run, notebook))


def visible_gpus() -> list[str]:
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [d for d in declared.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def cpu_slices(parts: int) -> list[list[int]]:
    """This process's CPUs cut into `parts` equal, disjoint slices ([] when there are too few). Most
    Linux machines number one thread of every core before the hyper-thread siblings, so a slice
    usually holds whole cores."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    cpus = sorted(os.sched_getaffinity(0))
    share = len(cpus) // parts
    return [cpus[i * share:(i + 1) * share] for i in range(parts)] if share else []


def pin(cpus: list[int] | None) -> None:
    """Keep this process (and the threads and kernels it starts) on `cpus`; train() sizes torch's
    threads from the affinity, so threads = cores // N."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
        os.environ["OMP_NUM_THREADS"] = str(len(cpus))


def _init_worker(counter: Any, slices: list[list[int]], slots: int, gpus: list[str]) -> None:
    """Give each pool worker its own slice of CPUs and its own GPU for its whole life."""
    with counter.get_lock():
        slot = counter.value % slots
        counter.value += 1
    pin(slices[slot] if slices else None)
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]


def run_pool(runs: list[Run], parallel: int, notebook: str | None, on_result: OnResult) -> None:
    """Up to `parallel` runs at once in spawned worker processes. A worker that dies (killed, out of
    memory) fails the runs in flight at that moment (the pool cannot tell whose worker it was); a new
    pool takes the rest."""
    context = multiprocessing.get_context("spawn")
    slices = cpu_slices(parallel)
    gpus = visible_gpus()
    task = partial(execute, notebook=notebook)
    pending = list(runs)
    while pending:
        pool = ProcessPoolExecutor(parallel, mp_context=context, initializer=_init_worker,
                                   initargs=(context.Value("i", 0), slices, parallel, gpus))
        inflight: dict[Any, tuple[Run, str]] = {}
        try:
            broken = False
            while (pending or inflight) and not broken:
                while pending and len(inflight) < parallel:
                    run = pending.pop(0)
                    inflight[pool.submit(task, run)] = (run, utc_now())
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    run, started = inflight.pop(future)
                    try:
                        on_result(future.result())
                    except BrokenProcessPool as error:
                        on_result(crashed(run, started, error))
                        broken = True
            if broken:
                for future, (run, started) in inflight.items():
                    on_result(crashed(run, started, BrokenProcessPool("the worker pool broke")))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def gpus_per_task(cluster_gpus: float, parallel: int) -> float:
    """A whole GPU per run where the cluster has one for each of `parallel` runs, else an equal share:
    asking a whole GPU each on a one-GPU cluster ran the runs one at a time."""
    if cluster_gpus < 1:
        return 0
    return 1 if cluster_gpus >= parallel else cluster_gpus / parallel


def paths_runs_need(runs: list[Run]) -> list[str]:
    """The folders a run reads or writes, which every node of a cluster must see at the same path (a
    checkpoint given as a Hugging Face model id is fetched by each node itself)."""
    needed = {str(Path(run.params.output).resolve().parent) for run in runs}
    for run in runs:
        needed |= {str(Path(p).resolve()) for p in (run.params.train_dir, run.params.validation_dir) if p}
        checkpoint = run.params.ssl_checkpoint
        if checkpoint and Path(checkpoint).exists():
            needed.add(str(Path(checkpoint).resolve()))
    return sorted(needed)


def missing_paths(paths: list[str]) -> list[str]:
    return [path for path in paths if not os.path.exists(path)]


def check_cluster_sees(runs: list[Run]) -> None:
    """Fail before any run starts when a node does not see the data or output folders (Ray ships the
    package, not the data: a cluster needs a shared filesystem)."""
    import ray

    missing = ray.get(ray.remote(num_cpus=0)(missing_paths).remote(paths_runs_need(runs)))
    if missing:
        raise FileNotFoundError(f"the Ray cluster's workers do not see {', '.join(missing)}: put the data and "
                                "--output on a filesystem every node mounts at the same path")


def shipped_packages() -> list[str]:
    """The code a cluster's workers need that their environment may lack: this package and the field runtime's,
    whose audio decoding, folder walking and atomic writes it uses."""
    import mosquito_ast_lite

    return [str(Path(__file__).resolve().parents[1]), str(Path(mosquito_ast_lite.__file__).resolve().parent)]


def run_ray(runs: list[Run], parallel: int, notebook: str | None, on_result: OnResult,
            address: str | None = None) -> None:
    """Each run a Ray task with a GPU or a share of one when the cluster has GPUs. Without `address` a
    local Ray starts with this machine's cores and runs `parallel` tasks at a time, each pinned to its own
    share of the cores (so torch uses cores // parallel threads); with it, the sweep joins that cluster,
    ships this package's code to its workers and checks they see the data and output folders."""
    import ray

    from ..hardware import physical_cores

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, runtime_env={"py_modules": shipped_packages()})
        else:
            ray.init(num_cpus=physical_cores(), include_dashboard=False)
    try:
        if address:
            check_cluster_sees(runs)
        resources = ray.cluster_resources()
        gpus = gpus_per_task(resources.get("GPU", 0), parallel)
        local = not address and len(ray.nodes()) == 1
        cpus = max(1, int(resources.get("CPU", 1)) // parallel) if local else 1
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(execute)
        slices = cpu_slices(parallel) if local else []
        free = list(range(parallel)) if local else []
        pending = list(runs)
        refs: dict[Any, tuple[Run, str, int | None]] = {}
        try:
            while pending or refs:
                while pending and (free or not local):
                    slot = free.pop(0) if local else None
                    run = pending.pop(0)
                    share = slices[slot] if slot is not None and slices else None
                    refs[remote.remote(run, notebook, share)] = (run, utc_now(), slot)
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    run, started, slot = refs.pop(ref)
                    if slot is not None:
                        free.append(slot)
                    try:
                        on_result(ray.get(ref))
                    except ray.exceptions.RayError as error:
                        on_result(crashed(run, started, error))
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def default_notebook() -> Path:
    """notebooks/train.ipynb of the source tree this package runs from."""
    return Path(__file__).resolve().parents[3] / "notebooks" / "train.ipynb"
