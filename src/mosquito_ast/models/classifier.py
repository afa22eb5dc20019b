"""The classifier member: AST encoder, final layernorm, mean over tokens, linear head.

A member folder holds `model.safetensors` (keys `encoder.*`, `classifier.*`, as the old notebooks
wrote them) and a `config.json` that fully describes it, so evaluation and prediction need no flags.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ASTConfig, ASTModel

from ..features import FeatureSettings
from ..io import atomic_directory
from .encoder import (CONFIG_NAME, OLD_NOTEBOOK_MAX_LENGTH, PRESETS, WEIGHTS_NAME, CheckpointError,
                      build_encoder, check_finite, config_to_dict)

MEMBER_FORMAT = "mosquito-ast-member"
FREEZE_MODES = ("none", "head", "last-n")


class ASTClassifier(nn.Module):
    def __init__(self, encoder: ASTModel, labels: list[str]) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        self.classifier = nn.Linear(encoder.config.hidden_size, len(labels))

    @classmethod
    def from_config(cls, config: ASTConfig, labels: list[str]) -> "ASTClassifier":
        return cls(build_encoder(config), labels)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over all tokens of the layernormed last hidden state: (batch, hidden)."""
        return self.encoder(input_values=features).last_hidden_state.mean(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))


def apply_freezing(model: ASTClassifier, mode: str, last_n_layers: int = 0) -> None:
    """Choose what trains. The new head always trains; 'last-n' adds the last N encoder layers and
    the final layernorm; 'head' trains the head alone; 'none' trains everything."""
    if mode not in FREEZE_MODES:
        raise ValueError(f"unknown freeze mode {mode!r}; choose one of {', '.join(FREEZE_MODES)}")
    layers = model.encoder.layers
    if mode == "last-n" and not 1 <= last_n_layers <= len(layers):
        raise ValueError(f"--train-last-n-layers must be between 1 and {len(layers)} with --freeze last-n")
    for parameter in model.encoder.parameters():
        parameter.requires_grad = mode == "none"
    if mode == "last-n":
        for module in [*layers[len(layers) - last_n_layers:], model.encoder.layernorm]:
            for parameter in module.parameters():
                parameter.requires_grad = True
    for parameter in model.classifier.parameters():
        parameter.requires_grad = True


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def save_member(model: ASTClassifier, folder: str | Path, features: FeatureSettings, extra: dict[str, Any],
                overwrite: bool = True) -> Path:
    """Write a member folder atomically: a reader sees the old member or the new one, never half."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder}: a member already exists here (use --overwrite to replace it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": MEMBER_FORMAT,
        "encoder": config_to_dict(model.encoder.config),
        "head": {"type": "layernorm-meanpool-linear", "num_labels": len(model.labels)},
        "labels": model.labels,
        "id2label": {str(i): name for i, name in enumerate(model.labels)},
        "features": features.to_dict(),
        **extra,
    }
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    with atomic_directory(folder) as staging:
        save_file(state, str(staging / WEIGHTS_NAME))
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=str))
    return folder


def promote_member(candidate: str | Path, folder: str | Path, extra: dict[str, Any]) -> Path:
    """Put an exported member in place with `extra` added to its config, atomically. The weights are
    hard-linked (copied across file systems), not loaded and rewritten: AST-base's are 350 MB."""
    candidate = Path(candidate)
    config = {**json.loads((candidate / CONFIG_NAME).read_text()), **extra}
    with atomic_directory(folder) as staging:
        try:
            os.link(candidate / WEIGHTS_NAME, staging / WEIGHTS_NAME)
        except OSError:
            shutil.copyfile(candidate / WEIGHTS_NAME, staging / WEIGHTS_NAME)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=str))
    return Path(folder)


def is_member_folder(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file()


def load_member(folder: str | Path, labels: list[str] | None = None) -> tuple[ASTClassifier, dict]:
    """Load a member and its config. Folders without our config.json are old-notebook members:
    AST-base at 1024 frames with AudioSet normalization, labels given in the old id order."""
    folder = Path(folder)
    if not is_member_folder(folder):
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}, not a member folder")
    config_file = folder / CONFIG_NAME
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    if config.get("format") == MEMBER_FORMAT:
        model = ASTClassifier(ASTModel(ASTConfig(**config["encoder"])), config["labels"])
        state = load_file(str(folder / WEIGHTS_NAME))
        check_finite(state, folder)
        model.load_state_dict(state)
        return model.eval(), config
    if not labels:
        raise CheckpointError(
            f"{folder}: an old-format member (weights only, no label names); pass --labels in the old id order"
        )
    encoder_config = ASTConfig(**PRESETS["base"], max_length=OLD_NOTEBOOK_MAX_LENGTH)
    model = _load_old_member(folder, encoder_config, labels)
    features = FeatureSettings(max_length=OLD_NOTEBOOK_MAX_LENGTH)
    config = {"format": "old-notebook", "labels": list(labels), "features": features.to_dict(),
              "encoder": config_to_dict(encoder_config)}
    return model.eval(), config


def _load_old_member(folder: Path, encoder_config: ASTConfig, labels: list[str]) -> ASTClassifier:
    from .encoder import load_pretrained_encoder

    state = load_file(str(folder / WEIGHTS_NAME))
    check_finite(state, folder)
    head = {k[len("classifier."):]: v for k, v in state.items() if k.startswith("classifier.")}
    if "weight" not in head or head["weight"].shape[0] != len(labels):
        found = head.get("weight", torch.empty(0)).shape
        raise CheckpointError(f"{folder}: classifier weight has shape {tuple(found)}, expected {len(labels)} labels")
    encoder = load_pretrained_encoder(folder / WEIGHTS_NAME)
    if config_to_dict(encoder.config) != config_to_dict(encoder_config):
        raise CheckpointError(f"{folder}: old-format members must be AST-base at {OLD_NOTEBOOK_MAX_LENGTH} frames")
    model = ASTClassifier(encoder, labels)
    model.classifier.load_state_dict(head)
    return model
