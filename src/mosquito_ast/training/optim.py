"""Optimizers and per-step learning-rate schedules shared by pretraining and fine-tuning."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from transformers import get_scheduler

FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], learning_rate: float,
                    weight_decay: float, fused: bool = True) -> torch.optim.Optimizer:
    """AdamW and SGD update all parameters in one fused kernel where torch has one for their device
    (`fused=False` where a gradient scaler must unscale first): much faster than the per-tensor loop on a
    CPU (benchmarks/README.md, "Figures moved from code comments")."""
    parameters = [p for p in parameters if p.requires_grad]
    fused = fused and bool(parameters) and all(p.device.type in FUSED_DEVICES for p in parameters)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay, fused=fused)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate, weight_decay=weight_decay, momentum=0.9, fused=fused)
    raise ValueError(f"unknown optimizer {name!r}")


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, warmup_ratio: float, total_steps: int) -> dict:
    """A Lightning scheduler config stepping every optimizer step."""
    warmup = int(round(warmup_ratio * total_steps)) if name != "constant" else 0
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))
    return {"scheduler": scheduler, "interval": "step"}


def optimizer_steps(num_samples: int, batch_sizes: Iterable[int], accumulation: int) -> int:
    """Optimizer steps over a run whose batch size changes per epoch."""
    return sum(math.ceil(math.ceil(num_samples / size) / accumulation) for size in batch_sizes)


def run_steps(params: Any, num_samples: int) -> int:
    """Optimizer steps of a run over `num_samples` clips with its loop parameters' batch-size schedule."""
    schedule = [params.batch_size_for(epoch) for epoch in range(params.epochs)]
    return optimizer_steps(num_samples, schedule, params.grad_accumulation)
