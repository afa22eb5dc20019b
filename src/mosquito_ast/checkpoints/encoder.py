"""Encoders from every checkpoint format in use, and the weight checks all loaders share.

transformers maps 4.x key names itself when loading a folder, so weights go through
`ASTModel.from_pretrained` from a staged folder; only the position embeddings need resizing to the
clip's frame count.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTModel
from transformers.utils import logging as hf_logging

from ..features import FeatureSettings
from ..models.encoder import PRESETS, resize_position_embeddings
from . import (HUGGING_FACE_FORMAT, OLD_NOTEBOOK_MAX_LENGTH, WEIGHTS_NAME, CheckpointError, checkpoint_format,
               read_config)


def old_notebook_config() -> ASTConfig:
    """The old notebooks' encoder: AST-base at 1024 frames."""
    return ASTConfig(**PRESETS["base"], max_length=OLD_NOTEBOOK_MAX_LENGTH)


def config_to_dict(config: ASTConfig) -> dict:
    """The architecture fields of an ASTConfig, enough to rebuild it."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "layer_norm_eps",
            "patch_size", "qkv_bias", "frequency_stride", "time_stride", "max_length", "num_mel_bins")
    return {k: getattr(config, k) for k in keys}


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


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a bar per loaded model; an ensemble would print one per member."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def encoder_from_state(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], origin: Path) -> ASTModel:
    """The one construction of an encoder from our or the old notebooks' weights: the `encoder.*` keys
    under the config's `encoder` architecture (AST-base at 1024 frames without one)."""
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder_state:
        raise CheckpointError(f"{origin}: no 'encoder.*' weights (keys start with {sorted(state)[:3]})")
    check_finite(encoder_state, origin)
    architecture = ASTConfig(**config["encoder"]) if "encoder" in config else old_notebook_config()
    with tempfile.TemporaryDirectory() as staging, _no_progress_bars():
        architecture.save_pretrained(staging)
        save_file(encoder_state, str(Path(staging) / WEIGHTS_NAME))
        encoder, info = ASTModel.from_pretrained(staging, output_loading_info=True)
    if info["missing_keys"]:
        raise CheckpointError(f"{origin}: encoder weights missing {sorted(info['missing_keys'])[:5]}")
    return encoder


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
    config = read_config(folder)
    if checkpoint_format(config) == HUGGING_FACE_FORMAT:
        return ASTModel.from_pretrained(str(folder))
    return encoder_from_state(load_file(str(weights_file)), config, weights_file)


def _check_compatible(source: ASTConfig, target: ASTConfig, origin: str) -> None:
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "patch_size", "frequency_stride", "time_stride", "num_mel_bins"):
        if getattr(source, name) != getattr(target, name):
            raise CheckpointError(
                f"{origin}: checkpoint has {name}={getattr(source, name)}, the model needs "
                f"{getattr(target, name)}; pick the matching --preset"
            )


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
