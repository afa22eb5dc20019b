"""Encoders from every checkpoint format in use, and the weight checks all loaders share.

transformers maps 4.x key names itself, so weights go through `ASTModel.from_pretrained` with the
state dict in hand: the model is built on the meta device (no random initialisation) and takes the
loaded tensors as they are. Only the position embeddings need resizing to the clip's frame count.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from safetensors.torch import load_file
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


@torch.no_grad()
def _finite(tensor: torch.Tensor) -> bool:
    """Whether a tensor holds no NaN/inf, told by its minimum and maximum (NaN propagates through both):
    one pass and no per-element mask, several times faster than `isfinite(t).all()` on AST-base's weights."""
    if not tensor.is_floating_point() or not tensor.numel():
        return True
    low, high = tensor.aminmax()
    return math.isfinite(low.item()) and math.isfinite(high.item())


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf; None when all are finite."""
    return next((name for name, tensor in tensors.items() if not _finite(tensor)), None)


def check_finite(state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights holding NaN/inf, naming `source`: a diverged member otherwise labels every file
    with one class at confidence NaN, and one such member spoils a whole ensemble."""
    name = first_nonfinite(state)
    if name is not None:
        raise CheckpointError(f"{source}: weights hold NaN/inf (first: {name}); the run that wrote them "
                              f"diverged, train it again (lower --learning-rate, --max-grad-norm 1.0)")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """transformers draws a bar per loaded model (an ensemble would print one per member) and logs a
    table of unfitting keys, which `encoder_from_state` turns into one error instead."""
    enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if enabled:
            hf_logging.enable_progress_bar()


def _unfitting_keys(info: Mapping[str, Any]) -> str:
    """What `from_pretrained`'s loading info says does not fit the architecture; "" when all fits."""
    problems = {"missing": info["missing_keys"], "unexpected": info["unexpected_keys"],
                "of another shape": {key for key, *_ in info["mismatched_keys"]}}
    return "; ".join(f"{kind} {sorted(keys)[:5]}" for kind, keys in problems.items() if keys)


def encoder_from_state(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], origin: Path) -> ASTModel:
    """The one construction of an encoder from our or the old notebooks' weights: the `encoder.*` keys
    under the config's `encoder` architecture (AST-base at 1024 frames without one)."""
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder_state:
        raise CheckpointError(f"{origin}: no 'encoder.*' weights (keys start with {sorted(state)[:3]})")
    check_finite(encoder_state, origin)
    architecture = ASTConfig(**config["encoder"]) if "encoder" in config else old_notebook_config()
    with _quiet_loading():
        encoder, info = ASTModel.from_pretrained(None, config=architecture, state_dict=encoder_state,
                                                 dtype=torch.float32, ignore_mismatched_sizes=True,
                                                 output_loading_info=True)
    problems = _unfitting_keys(info)
    if problems:
        raise CheckpointError(f"{origin}: encoder weights do not fit its architecture (hidden size "
                              f"{architecture.hidden_size}, {architecture.num_hidden_layers} layers, "
                              f"{architecture.max_length} frames): {problems}")
    return encoder


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def load_pretrained_encoder(source: str | Path) -> ASTModel:
    """An `ASTModel` with the weights of any supported checkpoint, at the checkpoint's own length."""
    path = Path(source)
    if not path.exists():
        if str(source).startswith((".", "/")) or path.suffix in WEIGHT_SUFFIXES:  # MIT/ast-...-0.4593 is a hub id
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


def encoder_from_checkpoint(source: str | Path, features: FeatureSettings, dropout: float = 0.0) -> ASTModel:
    """The checkpoint's architecture at the clip's frame count, with its weights (position embeddings
    resized): fine-tuning or continued pretraining needs no --preset that matches the checkpoint."""
    loaded = load_pretrained_encoder(source)
    if loaded.config.num_mel_bins != features.num_mel_bins:
        raise CheckpointError(f"{source}: checkpoint has num_mel_bins={loaded.config.num_mel_bins}, the features "
                              f"have {features.num_mel_bins}; set --num-mel-bins to match")
    values = {**config_to_dict(loaded.config), "max_length": features.max_length,
              "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    with torch.device("meta"):  # every weight is assigned next: random initialisation would be wasted
        encoder = ASTModel(ASTConfig(**values))
    state = loaded.state_dict()
    key = "embeddings.position_embeddings"
    state[key] = resize_position_embeddings(state[key], loaded.config, encoder.config)
    encoder.load_state_dict(state, assign=True)  # tensors handed over, not copied into meta ones
    return encoder
