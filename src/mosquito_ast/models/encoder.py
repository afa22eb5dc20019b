"""Build AST encoders from size presets, and adapt position embeddings to another clip length.

Loading weights from the checkpoint formats in use is `mosquito_ast.checkpoints`'s job.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import ASTConfig, ASTModel

from ..features import FeatureSettings

PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "small": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def encoder_config(preset: str, features: FeatureSettings, dropout: float = 0.0) -> ASTConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown encoder preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return ASTConfig(
        **PRESETS[preset],
        max_length=features.max_length,
        num_mel_bins=features.num_mel_bins,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )


def init_tokens(encoder: ASTModel) -> None:
    """Truncated-normal (std 0.02) class/distillation tokens and position embeddings, as the original
    AST does; transformers leaves them at zero."""
    embeddings = encoder.embeddings
    for parameter in (embeddings.cls_token, embeddings.distillation_token, embeddings.position_embeddings):
        nn.init.trunc_normal_(parameter.data, std=0.02)


def build_encoder(config: ASTConfig) -> ASTModel:
    encoder = ASTModel(config)
    init_tokens(encoder)
    return encoder


def tie_positions_over_time(encoder: ASTModel) -> None:
    """Make the patch position embeddings depend on the frequency row only, for the rest of training.

    Each row's embedding becomes its mean over time, and a gradient hook averages every gradient over
    time too: elementwise optimizers (AdamW, SGD, clipping, weight averaging) then keep the rows equal
    exactly, so the weights stay an ordinary AST that loads and exports as any other. The encoder can
    tell where in the spectrum a patch lies but not when in the clip (a tone's timing is a recording
    artefact that may not carry over to other sessions)."""
    frequency, time = patch_grid(encoder.config)

    def tied(position: torch.Tensor) -> torch.Tensor:
        grid = position[:, 2:].reshape(position.shape[0], frequency, time, -1).mean(dim=2, keepdim=True)
        return torch.cat([position[:, :2], grid.expand(-1, -1, time, -1).flatten(1, 2)], dim=1)

    position = encoder.embeddings.position_embeddings
    with torch.no_grad():
        position.copy_(tied(position))
    position.register_hook(tied)


def patch_grid(config: ASTConfig) -> tuple[int, int]:
    """(frequency patches, time patches) of a config."""
    frequency = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    time = (config.max_length - config.patch_size) // config.time_stride + 1
    return frequency, time


def resize_position_embeddings(position: torch.Tensor, source: ASTConfig, target: ASTConfig) -> torch.Tensor:
    """Adapt position embeddings to another patch grid, as the original AST does: keep the centre of
    a longer axis, interpolate a shorter one bilinearly. The two token embeddings are kept."""
    source_f, source_t = patch_grid(source)
    target_f, target_t = patch_grid(target)
    if (source_f, source_t) == (target_f, target_t):
        return position
    tokens, grid = position[:, :2], position[:, 2:]
    hidden = position.shape[-1]
    grid = grid.reshape(1, source_f, source_t, hidden).permute(0, 3, 1, 2)
    grid = _fit_axis(grid, 3, target_t)
    grid = _fit_axis(grid, 2, target_f)
    grid = grid.permute(0, 2, 3, 1).reshape(1, target_f * target_t, hidden)
    return torch.cat([tokens, grid], dim=1)


def _fit_axis(grid: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    current = grid.shape[axis]
    if current > size:
        start = current // 2 - size // 2
        return grid.narrow(axis, start, size)
    if current < size:
        target = list(grid.shape[2:])
        target[axis - 2] = size
        return nn.functional.interpolate(grid, size=tuple(target), mode="bilinear", align_corners=False)
    return grid
