"""Build AST encoders from size presets and load weights from every checkpoint format in use.

Formats: a Hugging Face AST checkpoint (local folder or hub id), a `pretrain` output or fine-tuned
member of this tool, and the old notebooks' `model.safetensors` (keys `encoder.*` next to
`projector.*`/`decoder.*` or `classifier.*`, AST-base at 1024 frames, transformers 4.x key names).
transformers maps 4.x key names itself when loading a folder, so old weights go through
`ASTModel.from_pretrained`; only the position embeddings need resizing to the clip's frame count.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import ASTConfig, ASTModel

from ..features import FeatureSettings

PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
    "small": dict(hidden_size=192, num_hidden_layers=4, num_attention_heads=3, intermediate_size=768),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
OLD_NOTEBOOK_MAX_LENGTH = 1024
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names it and the problem."""


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf; None when all are finite."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_finite(state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights holding NaN/inf, naming `source`: a diverged member otherwise labels every file
    with one class at confidence NaN, and one such member spoils a whole ensemble."""
    name = first_nonfinite(state)
    if name is not None:
        raise CheckpointError(f"{source}: weights hold NaN/inf (first: {name}); the run that wrote them "
                              f"diverged, train it again (lower --learning-rate, --max-grad-norm 1.0)")


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


def _check_compatible(source: ASTConfig, target: ASTConfig, origin: str) -> None:
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "patch_size", "frequency_stride", "time_stride", "num_mel_bins"):
        if getattr(source, name) != getattr(target, name):
            raise CheckpointError(
                f"{origin}: checkpoint has {name}={getattr(source, name)}, the model needs "
                f"{getattr(target, name)}; pick the matching --preset"
            )


def load_pretrained_encoder(source: str | Path) -> ASTModel:
    """An `ASTModel` with the weights of any supported checkpoint, at the checkpoint's own length."""
    path = Path(source)
    if not path.exists():
        if str(source).startswith((".", "/")) or path.suffix:
            raise CheckpointError(f"{source}: no such checkpoint folder or file")
        return ASTModel.from_pretrained(str(source))  # a Hugging Face hub id
    folder = path.parent if path.is_file() else path
    weights_file = path if path.is_file() else folder / WEIGHTS_NAME
    if not weights_file.exists():
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME} in this checkpoint folder")
    config_file = folder / CONFIG_NAME
    config_values = json.loads(config_file.read_text()) if config_file.exists() else {}
    if config_values.get("model_type") == "audio-spectrogram-transformer":
        return ASTModel.from_pretrained(str(folder))
    state = load_file(str(weights_file))
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder_state:
        raise CheckpointError(f"{weights_file}: no 'encoder.*' weights (keys start with {sorted(state)[:3]})")
    check_finite(encoder_state, weights_file)
    if "encoder" in config_values:
        config = ASTConfig(**config_values["encoder"])
    else:
        config = ASTConfig(**PRESETS["base"], max_length=OLD_NOTEBOOK_MAX_LENGTH)
    with tempfile.TemporaryDirectory() as staging:
        config.save_pretrained(staging)
        save_file(encoder_state, str(Path(staging) / WEIGHTS_NAME))
        encoder, info = ASTModel.from_pretrained(staging, output_loading_info=True)
    if info["missing_keys"]:
        raise CheckpointError(f"{weights_file}: encoder weights missing {sorted(info['missing_keys'])[:5]}")
    return encoder


def _copy_resized(loaded: ASTModel, target: ASTModel, origin: str) -> None:
    _check_compatible(loaded.config, target.config, origin)
    state = loaded.state_dict()
    key = "embeddings.position_embeddings"
    state[key] = resize_position_embeddings(state[key], loaded.config, target.config)
    target.load_state_dict(state)


def load_encoder_into(target: ASTModel, source: str | Path) -> None:
    """Copy a checkpoint's encoder weights into `target`, resizing position embeddings to its length."""
    _copy_resized(load_pretrained_encoder(source), target, str(source))


def encoder_from_checkpoint(source: str | Path, features: FeatureSettings, dropout: float = 0.0) -> ASTModel:
    """The checkpoint's architecture at the clip's frame count, with its weights (position embeddings
    resized): fine-tuning or continued pretraining needs no --preset that matches the checkpoint."""
    loaded = load_pretrained_encoder(source)
    if loaded.config.num_mel_bins != features.num_mel_bins:
        raise CheckpointError(f"{source}: checkpoint has num_mel_bins={loaded.config.num_mel_bins}, the features "
                              f"have {features.num_mel_bins}; set --num-mel-bins to match")
    values = {**config_to_dict(loaded.config), "max_length": features.max_length,
              "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    encoder = ASTModel(ASTConfig(**values))
    _copy_resized(loaded, encoder, str(source))
    return encoder


def config_to_dict(config: ASTConfig) -> dict:
    """The architecture fields of an ASTConfig, enough to rebuild it."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins")
    return {k: getattr(config, k) for k in keys}

