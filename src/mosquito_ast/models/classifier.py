"""The classifier member: AST encoder, final layernorm, mean over tokens, linear head.

Two options give the transformer a spectrum model's view and regularise it against memorising a
recording session: a spectrum token (the clip's time-averaged fbank, embedded by a linear layer, as one
more token or joined to the pooled output before the head) and layer drop (each encoder layer skipped
with probability P per training batch, Fan et al. 2019; every layer runs at inference).

Its files (a member folder) are written and read by `mosquito_ast.checkpoints`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import ASTConfig, ASTModel

from .encoder import build_encoder

FREEZE_MODES = ("none", "head", "last-n")
SPECTRUM_TOKEN_MODES = ("none", "token", "head")


def clip_spectrum(features: torch.Tensor) -> torch.Tensor:
    """(batch, mel) mean of each clip's fbank over its real frames. A frame whose bins are all equal holds
    no signal: zero padding of a short clip, frames past its end, or a time mask (any constant fill, before
    or after normalization); a clip without a real frame gets zeros."""
    real = (features.amax(dim=-1) > features.amin(dim=-1)).to(features.dtype).unsqueeze(-1)
    return (features * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


class ASTClassifier(nn.Module):
    def __init__(self, encoder: ASTModel, labels: list[str], spectrum_token: str = "none",
                 layer_drop: float = 0.0) -> None:
        super().__init__()
        if spectrum_token not in SPECTRUM_TOKEN_MODES:
            raise ValueError(f"unknown spectrum token mode {spectrum_token!r}; choose one of "
                             f"{', '.join(SPECTRUM_TOKEN_MODES)}")
        if not 0 <= layer_drop < 1:
            raise ValueError(f"layer drop must be at least 0 and below 1, got {layer_drop}")
        self.encoder = encoder
        self.labels = list(labels)
        self.spectrum_token = spectrum_token
        self.layer_drop = layer_drop
        hidden = encoder.config.hidden_size
        if spectrum_token != "none":
            self.spectrum = nn.Linear(encoder.config.num_mel_bins, hidden)
        self.classifier = nn.Linear(hidden * (2 if spectrum_token == "head" else 1), len(labels))

    @classmethod
    def from_config(cls, config: ASTConfig, labels: list[str], spectrum_token: str = "none",
                    layer_drop: float = 0.0) -> "ASTClassifier":
        return cls(build_encoder(config), labels, spectrum_token, layer_drop)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Mean over all tokens of the layernormed last hidden state, then the embedded clip spectrum
        joined to it with `spectrum_token` head: (batch, hidden or 2 * hidden). ASTModel.forward's steps,
        run here so that a spectrum token can join the patch tokens and layers can be dropped."""
        hidden = self.encoder.embeddings(features)
        if self.spectrum_token == "token":
            hidden = torch.cat([hidden, self.spectrum(clip_spectrum(features)).unsqueeze(1)], dim=1)
        for layer in self.encoder.layers:
            if self.training and self.layer_drop and float(torch.rand(())) < self.layer_drop:
                continue
            hidden = layer(hidden, None)
        pooled = self.encoder.layernorm(hidden).mean(dim=1)
        if self.spectrum_token == "head":
            pooled = torch.cat([pooled, self.spectrum(clip_spectrum(features))], dim=1)
        return pooled

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(features))


def apply_freezing(model: ASTClassifier, mode: str, last_n_layers: int = 0) -> None:
    """Choose what trains. The new head (with the spectrum token's embedding) always trains; 'last-n' adds
    the last N encoder layers and the final layernorm; 'head' trains the head alone; 'none' trains everything."""
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
    for parameter in [*model.classifier.parameters(), *head_inputs(model)]:
        parameter.requires_grad = True


def head_inputs(model: ASTClassifier) -> list[nn.Parameter]:
    """The spectrum token's embedding: new with the head, so it trains whenever the head does."""
    return list(model.spectrum.parameters()) if model.spectrum_token != "none" else []

