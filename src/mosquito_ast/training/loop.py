"""What fine-tuning and pretraining share in their Lightning modules."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import nn

from .optim import build_optimizer, build_scheduler


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
        optimizer = build_optimizer(p.optimizer, self.model.parameters(), p.learning_rate, p.weight_decay)
        return {"optimizer": optimizer,
                "lr_scheduler": build_scheduler(p.scheduler, optimizer, p.warmup_ratio, self.total_steps)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("history", [])
