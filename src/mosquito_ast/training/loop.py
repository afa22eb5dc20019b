"""What fine-tuning and pretraining share in their Lightning modules, and the console of every run."""

from __future__ import annotations

import dataclasses
import logging
import pickle
import signal
import sys
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import lightning as L
import pandas as pd
import torch
from huggingface_hub import utils as hub_utils
from lightning.pytorch.callbacks import Callback, Checkpoint, ProgressBar
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from mosquito_ast_lite.io import atomic_path, atomic_write_text, check_replaceable, check_writable, remove_orphans

from ..checkpoints import MEMBER_FOLDER, CheckpointError
from ..checkpoints.encoder import first_nonfinite
from ..params import DATA, LOOP, MODEL, ConfigError
from .optim import build_optimizer, build_scheduler


def quiet_libraries() -> None:
    """Keep a run's console to its own lines: Lightning's start-up notes (GPU/TPU available, a logging
    tip, the AMP in use, why fit stopped) go below warning level, and transformers draws no bar per model
    it loads or saves (an ensemble drew one per member); the hub's download bars stay."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    downloads = not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # turns the hub's off too
    if downloads:
        hub_utils.enable_progress_bars()


quiet_libraries()


class EpochModule(L.LightningModule):
    """The optimizer and per-step schedule from the run's parameters, a reseed at every epoch start (a
    resumed run repeats the same shuffling, masks and dropout) and a per-epoch history kept in checkpoints.
    Subclasses add the steps and append one row per validation to `history`."""

    def __init__(self, model: nn.Module, params: Any, total_steps: int) -> None:
        super().__init__()
        self.model = model
        self.params = params
        self.total_steps = total_steps
        self.history: list[dict] = []
        self._epoch_started = 0.0
        self._largest_batch = 0

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.params.seed * 100_003 + self.current_epoch)
        self._epoch_started = time.perf_counter()
        self._largest_batch = 0

    def configure_optimizers(self):
        p = self.params
        optimizer = build_optimizer(p.optimizer, self.model.parameters(), p.learning_rate, p.weight_decay,
                                    fused=self.trainer.precision != "16-mixed")
        return {"optimizer": optimizer,
                "lr_scheduler": build_scheduler(p.scheduler, optimizer, p.warmup_ratio, self.total_steps)}

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by norm here: Lightning's mixed-precision plugin refuses to clip for a fused optimizer even
        in bf16, where no scaler is involved; in fp16 the optimizer is not fused and its gradients arrive
        unscaled."""
        if gradient_clip_val:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history
        checkpoint["parameters"] = run_parameters(self.params)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to resume with other parameters: the optimizer, schedule and loops come back from the
        checkpoint, so a run resumed with another --learning-rate or --epochs trained with the old values
        while its config.json recorded the new ones. Checkpoints written before this check carry none."""
        stored = checkpoint.get("parameters")
        if stored is not None:
            current = run_parameters(self.params)
            changed = [f"{name} {stored.get(name)!r} (now {value!r})" for name, value in current.items()
                       if stored.get(name) != value]
            if changed:
                raise ConfigError(f"--resume: the interrupted run was started with other parameters: "
                                  f"{', '.join(changed)}; resume with the same ones, or start again with --overwrite")
        self.history = checkpoint.get("history", [])


def run_parameters(params: Any) -> dict[str, Any]:
    """The parameters that decide what a run computes (data, model and training loop groups), not where
    it writes or how it shows progress: a resumed run must have the same."""
    values = params.to_dict()
    return {spec.name: values[spec.name] for spec in dataclasses.fields(params)
            if spec.metadata.get("group") in (DATA, MODEL, LOOP)}


class LastCheckpoint(Checkpoint):
    """Write `last.ckpt` at the end of a training epoch, atomically, so `--resume` continues after that
    epoch: after every epoch once `every_seconds` have passed since the fit (or the last write) began,
    so an interruption loses at most that much work while short epochs do not pay a full checkpoint
    (about 1 GB for AST-base with its optimizer state) each. The last epoch always writes one, deleted
    once the output is written (`drop_checkpoint`): a full disk or a kill while writing the member then
    loses no epoch, and `--resume` only writes the member. Lightning 2.6's `ModelCheckpoint(save_last=True, save_top_k=0)` writes it only when
    training ends, so a killed run left nothing to resume from.

    A `Checkpoint` subclass, so Lightning adds no default `ModelCheckpoint` and runs this after the other
    callbacks' (EarlyStopping, ModelCheckpoint, KeepBest) epoch-end hooks, whose state it then includes.
    The trainer writes it atomically through `FileCheckpointIO`."""

    def __init__(self, path: str | Path, every_seconds: float = 0.0) -> None:
        self.path = Path(path)
        self.every_seconds = every_seconds
        self.since = time.monotonic()

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        """Remove the half-written checkpoints a killed run left (the run folder is this process's)."""
        remove_orphans(self.path.parent, f".{self.path.name}.")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.since = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        final = trainer.current_epoch + 1 >= trainer.max_epochs
        if not final and time.monotonic() - self.since < self.every_seconds:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self.since = time.monotonic()


class FileCheckpointIO(TorchCheckpointIO):
    """`torch.save` straight into a file beside the target, renamed over it: a kill or a full disk
    mid-write leaves the previous checkpoint, never a torn one. Lightning's own writer pickles the whole
    checkpoint into memory first and copies it out, which made each AST-base checkpoint with its
    optimizer state (about 1 GB) cost about twice as long."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage options")
        with atomic_path(path, suffix=".ckpt") as temporary:
            torch.save(checkpoint, temporary)


class WeightAverage(Callback):
    """The running mean of the weights after every optimizer step from epoch `from_epoch` (1-based) on
    (Izmailov et al. 2018, SWA; Cha et al. 2021, SWAD, for unseen domains). Its state goes into
    `last.ckpt`, so `--resume` continues the same average."""

    def __init__(self, from_epoch: int) -> None:
        self.from_epoch = from_epoch
        self.average: AveragedModel | None = None
        self._restored: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_index: int) -> None:
        if trainer.current_epoch + 1 < self.from_epoch:
            return
        if self.average is None:
            self.average = AveragedModel(module.model)
            if self._restored is not None:
                self.average.load_state_dict(self._restored)
        self.average.update_parameters(module.model)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.average is None else self.average.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict or None

    def apply_to(self, model: nn.Module) -> None:
        """Put the averaged weights into `model` (the one the average was taken of)."""
        if self.average is None:
            raise RuntimeError(f"no step was averaged: the run ended before epoch {self.from_epoch}")
        with torch.no_grad():
            for target, averaged in zip(model.parameters(), self.average.module.parameters()):
                target.copy_(averaged)


def drop_checkpoint(path: Path) -> None:
    """Delete a finished run's `last.ckpt` once its output is written: `--resume` then finds the run
    finished, and a sweep of AST-base members does not keep about 1 GB per member it will never read."""
    path.unlink(missing_ok=True)


def resume_checkpoint(path: str | Path) -> Path | None:
    """`path` when it holds a whole checkpoint, None when there is none; a one-line CheckpointError naming
    it when it is damaged. We refuse rather than silently start over: `--resume` asked to keep the
    finished epochs, and the user decides whether to delete the file (or copy back a good one).
    Checking the zip's CRCs first replaces a PytorchStreamReader traceback from deep inside Lightning."""
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


class DivergedError(ValueError):
    """Training produced a non-finite loss or weights; the run stops and exports nothing."""


class FiniteGuard(Callback):
    """Stop at a non-finite training loss, weight or output (a module's `outputs_finite()`, where it has
    one), naming the epoch: Lightning trains on through NaN, and a diverged run used to exit 0 with a NaN
    member. Weights and outputs are checked before each validation and at each epoch's end, so before anything of that epoch is exported or checkpointed; the loss every
    `check_every` steps and at those points, as reading it on the host each step would stall the GPU.
    Put it before the callbacks that export: hooks run in list order."""

    def __init__(self, run_name: str, check_every: int = 25) -> None:
        self.run_name = run_name
        self.check_every = check_every
        self._finite: torch.Tensor | None = None  # all losses since the last check finite, kept on the device

    def _fail(self, trainer: L.Trainer, module: L.LightningModule, problem: str) -> None:
        params = getattr(module, "params", None)
        rate = getattr(params, "learning_rate", None)
        clip = getattr(params, "max_grad_norm", None)
        raise DivergedError(
            f"{self.run_name}: training diverged in epoch {trainer.current_epoch + 1}: {problem}; nothing was "
            f"exported. Lower --learning-rate (now {rate}) or clip gradients with --max-grad-norm "
            f"(now {clip or 'off'}), and check the features for NaN/inf")

    def _check_loss(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        finite, self._finite = self._finite, None
        if finite is not None and not bool(finite):
            self._fail(trainer, module, "the training loss became NaN/inf")

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_index: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            finite = torch.isfinite(loss.detach()).all()
            self._finite = finite if self._finite is None else self._finite & finite
        if (batch_index + 1) % self.check_every == 0:
            self._check_loss(trainer, module)

    def _check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._check_loss(trainer, module)
        name = first_nonfinite(dict(getattr(module, "model", module).named_parameters()))  # member key names
        if name is not None:
            self._fail(trainer, module, f"weight {name} holds NaN/inf")
        if not getattr(module, "outputs_finite", lambda: True)():
            self._fail(trainer, module, "the outputs on a probe clip are NaN/inf (the weights are finite)")

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, module)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Also without validation batches: this runs before the checkpoint and any epoch-end export."""
        self._check(trainer, module)


class EpochProgress(ProgressBar):
    """Lightning's progress bars, replaced: a bar per training epoch counted from 1 ("epoch 3/30", as the
    history, the checkpoints and the messages count), then one line with the epoch's metrics. The line
    is printed without the bar too (`bar=False`), so a sweep's logs get one line per epoch."""

    def __init__(self, bar: bool) -> None:
        super().__init__()
        self.bar = bar
        self._enabled = True
        self._progress: tqdm | None = None
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def epoch_label(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        if self._enabled and self.bar:
            self._progress = tqdm(total=self.total_train_batches, desc=self.epoch_label(trainer), unit="batch",
                                  leave=False, dynamic_ncols=True)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           batch_index: int) -> None:
        if self._progress is not None:
            self._progress.update()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Runs after the epoch's validation, so its metrics are in."""
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._enabled:
            shown = sorted(trainer.progress_bar_metrics.items(), key=lambda item: not item[0].startswith("train"))
            metrics = "  ".join(f"{name} {metric_text(value)}" for name, value in shown)
            print(f"{self.epoch_label(trainer)}  {metrics}  {time.perf_counter() - self._started:.1f} s")


def metric_text(value: float) -> str:
    """Three decimals, so the epoch lines align; scientific below 0.01, where they would say nothing."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.01 else f"{value:.2e}"


def make_trainer(params: Any, precision: str, run_dir: Path, callbacks: list[Callback],
                 validate: bool = True) -> L.Trainer:
    """The one Lightning Trainer of `train` and `pretrain`: one device, no logger (the modules keep their
    own history), our own progress lines, dataloaders rebuilt every epoch so the batch-size schedule
    applies, clipping and accumulation from the parameters; `validate=False` skips validation."""
    return L.Trainer(
        max_epochs=params.epochs, precision=precision, accelerator="auto", devices=1, logger=False,
        callbacks=[*callbacks, EpochProgress(params.progress)], reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0, limit_val_batches=None if validate else 0,
        gradient_clip_val=params.max_grad_norm or None, accumulate_grad_batches=params.grad_accumulation,
        enable_progress_bar=True, enable_model_summary=False, default_root_dir=run_dir,
        plugins=[FileCheckpointIO()],
    )


def fit_interruptibly(trainer: L.Trainer, message: str, **fit_arguments: Any) -> None:
    """`trainer.fit`, where Ctrl+C raises `KeyboardInterrupt(message)` and Ctrl+C keeps working afterwards.
    Lightning 2.6 turns Ctrl+C into `sys.exit(1)` after setting the process to ignore it: the hint to
    `--resume` was never printed, and a sweep running members in its own process could not be stopped."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(**fit_arguments)
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise KeyboardInterrupt(message) from None
    finally:
        if handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


@contextmanager
def exclusive_run(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir` for this process: two runs with one --output and --postfix used to interleave their
    epochs in one `best-candidate` and `last.ckpt`. The lock dies with its process, so a killed run can
    be resumed at once."""
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


def claimed_run(member_dir: Path, run_dir: Path, overwrite: bool, resume: bool,
                work: Callable[[Path], Path]) -> Path:
    """Hold `run_dir` for this process (`exclusive_run`), then `work(last_checkpoint)`, unless `--resume`
    finds the run finished: the one way `train` and `distill` start a run. An output that is a file or a
    foreign folder is refused before the run folder is made."""
    check_replaceable(member_dir, MEMBER_FOLDER)
    with exclusive_run(run_dir):
        last_checkpoint = run_checkpoint(member_dir, run_dir, overwrite, resume)
        return member_dir if last_checkpoint is None else work(last_checkpoint)


def run_checkpoint(member_dir: Path, run_dir: Path, overwrite: bool, resume: bool) -> Path | None:
    """Where a run keeps `last.ckpt`, or None when `--resume` finds the run already finished. Neither a
    finished member nor an interrupted run's epochs are thrown away silently: without --overwrite or
    --resume either is an error (a rerun used to start at epoch 1 and write over the checkpoint);
    --overwrite alone starts again from epoch 1."""
    if member_dir.exists() and not (overwrite or resume):
        raise FileExistsError(f"{member_dir}: a member already exists (use --overwrite to replace it)")
    check_replaceable(member_dir, MEMBER_FOLDER)
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if last_checkpoint.exists() and not resume:
        if not overwrite:
            raise FileExistsError(f"{run_dir}: an interrupted run left {last_checkpoint.relative_to(run_dir)}; "
                                  f"continue it with --resume, or start again with --overwrite")
        last_checkpoint.unlink()
    if resume and not last_checkpoint.exists() and member_dir.exists():
        print(f"{member_dir}: already finished, nothing to resume")
        return None
    return last_checkpoint


def fit_run(module: EpochModule, datamodule: L.LightningDataModule, params: Any, precision: str, run_dir: Path,
            name: str, callbacks: list[Callback], last_checkpoint: Path, validate: bool) -> pd.DataFrame:
    """Fit with the NaN guard first and `LastCheckpoint` (every `params.checkpoint_minutes`) last, resuming from it with
    `params.resume`; the per-epoch history is written to `run_dir/history.csv` and returned."""
    trainer = make_trainer(params, precision, run_dir,
                           [FiniteGuard(name), *callbacks, LastCheckpoint(last_checkpoint, 60 * params.checkpoint_minutes)],
                           validate=validate)
    fit_interruptibly(trainer, f"{name} interrupted; continue it with --resume", model=module, datamodule=datamodule,
                      ckpt_path=resume_checkpoint(last_checkpoint) if params.resume else None, weights_only=True)
    history = pd.DataFrame(module.history)
    atomic_write_text(run_dir / "history.csv", history.to_csv(index=False))
    return history
