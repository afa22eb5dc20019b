"""One run's lifecycle, the same for `train`, `pretrain` and `distill`: its folders, the lock that makes
them this process's own, the choice between a fresh start, `--resume` and `--overwrite`, the fit with its
`last.ckpt`, the per-epoch history and the provenance written into the output's config."""

from __future__ import annotations

import pickle
import shutil
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback

from mosquito_ast_lite.io import FolderKind, atomic_write_text, check_replaceable, check_writable

from .. import __version__
from ..checkpoints import CONFIG_NAME, MEMBER_FOLDER, PRETRAINED_FOLDER, WEIGHTS_NAME, CheckpointError, run_folders
from .callbacks import FiniteGuard, LastCheckpoint
from .loop import EpochModule, fit_interruptibly, make_trainer


@dataclass(frozen=True)
class Run:
    """Where a run writes: `output` the finished folder (of `kind`), `work` its lock and checkpoints,
    `history` the per-epoch table; `name` says what runs, in messages."""

    output: Path
    work: Path
    kind: FolderKind
    history: Path
    name: str

    @property
    def last_checkpoint(self) -> Path:
        return self.work / "checkpoints" / "last.ckpt"

    def finished(self) -> bool:
        """A member counts once its folder exists (a member is written atomically); a pretrain output
        once it holds its weights and config, as its working folder lives inside it."""
        if self.kind is MEMBER_FOLDER:
            return self.output.exists()
        return (self.output / CONFIG_NAME).exists() and (self.output / WEIGHTS_NAME).exists()


def member_run(output: str | Path, postfix: str) -> Run:
    """`train`: the member in `<output>/best/<postfix>/`, the work in `<output>/runs/<postfix>/`."""
    member, work = run_folders(output, postfix)
    return Run(member, work, MEMBER_FOLDER, work / "history.csv", f"training of {postfix}")


def student_run(output: str | Path) -> Run:
    """`distill`: the student member in `<output>/`, the work beside it in `<output>-run/`."""
    output = Path(output)
    work = output.with_name(output.name + "-run")
    return Run(output, work, MEMBER_FOLDER, work / "history.csv", f"distillation into {output}")


def pretrain_run(output: str | Path) -> Run:
    """`pretrain`: the encoder in `<output>/`, the work inside it in `<output>/run/`, the history beside
    the weights."""
    output = Path(output)
    return Run(output, output / "run", PRETRAINED_FOLDER, output / "history.csv", "pretraining")


def claimed_run(run: Run, overwrite: bool, resume: bool, work: Callable[[Path], Path]) -> Path:
    """Check that `run.output` may be written, hold `run.work` for this process (`exclusive_run`), then
    `work(last_checkpoint)`, unless `--resume` finds the run finished: the one way every run starts."""
    if run.finished() and not (overwrite or resume):
        raise FileExistsError(f"{run.output}: {run.kind.name} already exists (use --overwrite to replace it)")
    check_writable(check_replaceable(run.output, run.kind))
    with exclusive_run(run.work):
        last_checkpoint = run_checkpoint(run, overwrite, resume)
        return run.output if last_checkpoint is None else work(last_checkpoint)


def run_checkpoint(run: Run, overwrite: bool, resume: bool) -> Path | None:
    """Where the run keeps `last.ckpt`, or None when `--resume` finds it already finished. An interrupted
    run's epochs are never thrown away silently: without --overwrite or --resume they are an error;
    --overwrite alone starts again from epoch 1, with no checkpoint of the old run left."""
    last_checkpoint = run.last_checkpoint
    if last_checkpoint.exists() and not (resume or overwrite):
        raise FileExistsError(f"{run.work}: an interrupted run left {last_checkpoint.relative_to(run.work)}; "
                              f"continue it with --resume, or start again with --overwrite")
    if resume and not last_checkpoint.exists() and run.finished():
        print(f"{run.output}: already finished, nothing to resume")
        return None
    if not (resume and last_checkpoint.exists()):  # a fresh start keeps nothing of an earlier one
        shutil.rmtree(last_checkpoint.parent, ignore_errors=True)
    return last_checkpoint


@contextmanager
def exclusive_run(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for this process, so two runs never write one `last.ckpt`. The lock dies with its
    process, so a killed run can be resumed at once."""
    check_writable(run_dir).mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as handle:
        try:
            lock_file(handle)
        except OSError:
            raise FileExistsError(f"{run_dir}: another run with this --output and --postfix is running; "
                                  "wait for it or choose another --postfix") from None
        yield


def lock_file(handle: Any) -> None:
    """An exclusive, non-blocking lock on an open file (OSError when another process holds it)."""
    if sys.platform == "win32":
        import msvcrt

        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def resume_checkpoint(path: str | Path) -> Path | None:
    """`path` when it holds a whole checkpoint, None when there is none; a one-line CheckpointError naming
    it when it is damaged: `--resume` asked to keep the finished epochs, so the user decides whether to
    delete the file. Checking the zip's CRCs first replaces a traceback from deep inside Lightning."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        problem = None if damaged is None else f"entry {damaged} fails its CRC check"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        problem = str(error) or type(error).__name__
    if problem is not None:
        raise CheckpointError(f"{path}: damaged checkpoint ({problem}), cannot resume from it; "
                              f"delete it to train again from epoch 1")
    return plain_checkpoint(path)


def plain_checkpoint(path: Path) -> Path:
    """`path`, once it is known to hold only tensors and plain types: unpickling anything else can run code,
    and checkpoints travel between people and machines. Memory-mapped, so the tensors are not read."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = str(error).splitlines()[-1] if "GLOBAL" in str(error) else "objects other than tensors and plain types"
        raise CheckpointError(f"{path}: holds more than tensors and plain types ({found.strip()}); refused, "
                              f"since loading it could run code") from None
    return path


class HistoryFile(Callback):
    """Write the module's history to `path` after every validation, atomically, so a long run's progress
    can be read while it runs (`fit_run` writes it once more at the end)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_end(self, trainer: L.Trainer, module: EpochModule) -> None:
        if not trainer.sanity_checking:
            write_history(self.path, module.history)


def write_history(path: Path, history: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(history)
    atomic_write_text(path, table.to_csv(index=False))
    return table


def fit_run(module: EpochModule, datamodule: L.LightningDataModule, params: Any, precision: str, run: Run,
            callbacks: list[Callback], last_checkpoint: Path, validate: bool = True) -> pd.DataFrame:
    """Fit with the NaN guard first and `LastCheckpoint` (every `params.checkpoint_minutes`) last, resuming
    from it with `params.resume`; the per-epoch history goes to `run.history` and is returned. The
    checkpoint is dropped by `finish` once the output is written."""
    guards = [FiniteGuard(run.name), *callbacks, HistoryFile(run.history),
              LastCheckpoint(last_checkpoint, 60 * params.checkpoint_minutes)]
    trainer = make_trainer(params, precision, run.work, guards, validate=validate)
    fit_interruptibly(trainer, f"{run.name} interrupted; continue it with --resume", model=module,
                      datamodule=datamodule, weights_only=True,
                      ckpt_path=resume_checkpoint(last_checkpoint) if params.resume else None)
    return write_history(run.history, module.history)


def finish(last_checkpoint: Path) -> None:
    """Delete a finished run's `last.ckpt` once its output is written: `--resume` then finds the run
    finished, and a sweep of AST-base members does not keep about 1 GB per member it will never read."""
    last_checkpoint.unlink(missing_ok=True)


def epoch_row(module: EpochModule, **metrics: float) -> dict[str, float]:
    """One row of a run's history: the epoch (from 1), its largest batch, the learning rate at its end,
    `metrics` and its seconds."""
    return {"epoch": module.current_epoch + 1, "batch_size": module.largest_batch,
            "learning_rate": module.trainer.optimizers[0].param_groups[0]["lr"], **metrics,
            "seconds": time.perf_counter() - module.epoch_started}


def run_provenance(key: str, params: Any, precision: str, data: dict[str, Any], **record: Any) -> dict[str, Any]:
    """What a run's output records of how it was made: its parameters (under `key`: `training`,
    `pretraining`), precision, data, `record` (history, selection, teachers) and the tool's version."""
    return {key: params.to_dict(), "precision": precision, "data": data, **record,
            "mosquito_ast_version": __version__}
