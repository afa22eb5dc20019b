"""The classifier member: AST encoder, final layernorm, mean over tokens, linear head.

Its files (a member folder) are written and read by `mosquito_ast.checkpoints`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import ASTConfig, ASTModel

from .encoder import build_encoder

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
        raise ValueError(f"last_n_layers must be between 1 and {len(layers)} with freeze mode 'last-n'")
    for parameter in model.encoder.parameters():
        parameter.requires_grad = mode == "none"
    if mode == "last-n":
        for module in [*layers[len(layers) - last_n_layers:], model.encoder.layernorm]:
            for parameter in module.parameters():
                parameter.requires_grad = True
    for parameter in model.classifier.parameters():
        parameter.requires_grad = True
