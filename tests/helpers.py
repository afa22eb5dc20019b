"""Helpers shared by tests: old-notebook (transformers 4.x) key names for checkpoint fixtures, and a
simulated crash for resume tests."""

from __future__ import annotations

import re

import torch
from lightning.pytorch.callbacks import Callback

_NEW_TO_OLD = (
    (r"^layers\.(\d+)\.", r"encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
)


def old_key(name: str) -> str:
    """The transformers 4.x name of an ASTModel parameter (as the old notebooks saved them)."""
    for pattern, replacement in _NEW_TO_OLD:
        name = re.sub(pattern, replacement, name)
    return name


def old_state(encoder: torch.nn.Module, prefix: str = "encoder.") -> dict[str, torch.Tensor]:
    return {prefix + old_key(k): v.detach().clone().contiguous() for k, v in encoder.state_dict().items()}


class CrashAtEpoch(Callback):
    """Raise at the start of `epoch`, as a killed run would stop there."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")
