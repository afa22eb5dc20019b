"""The callbacks every run shares: the atomic `last.ckpt` writer, the weight average, the NaN guard and
the one console line per epoch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ProgressBar
from lightning.pytorch.plugins import TorchCheckpointIO
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm

from mosquito_ast_lite.io import atomic_path, remove_orphans

from ..checkpoints.encoder import first_nonfinite


class LastCheckpoint(Checkpoint):
    """Write `last.ckpt` at the end of a training epoch, atomically, so `--resume` continues after that
    epoch: after every epoch once `every_seconds` have passed since the fit (or the last write) began,
    so an interruption loses at most that much work while short epochs do not pay a full checkpoint
    (about 1 GB for AST-base with its optimizer state) each. The last epoch always writes one, deleted once
    the output is written: a full disk or a kill while writing it loses no epoch. (Lightning's `ModelCheckpoint(save_last=True)` writes it only when training ends.)

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


class DivergedError(ValueError):
    """Training produced a non-finite loss or weights; the run stops and exports nothing."""


class FiniteGuard(Callback):
    """Stop at a non-finite training loss, weight or output (a module's `outputs_finite()`, where it has
    one), naming the epoch: Lightning trains on through NaN. Weights and outputs are checked before each
    validation and at each epoch's end, so before anything of that epoch is exported or checkpointed; the
    loss every `check_every` steps and at those points, as reading it on the host each step would stall
    the GPU.
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
