"""What fine-tuning and pretraining share in their Lightning modules, and the one Trainer that fits them."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from huggingface_hub import utils as hub_utils
from lightning.pytorch.callbacks import Callback
from torch import nn
from transformers.utils import logging as hf_logging

from ..params import DATA, LOOP, MODEL, ConfigError
from .callbacks import EpochProgress, FileCheckpointIO
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
        self.epoch_started = 0.0
        self.largest_batch = 0

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.params.seed * 100_003 + self.current_epoch)
        self.epoch_started = time.perf_counter()
        self.largest_batch = 0

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
    Lightning turns Ctrl+C into `sys.exit(1)` and leaves the process ignoring it."""
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
