"""`pretrain` output folders: the SSL model's weights (`encoder.*` plus the objective's head) and a
config naming the encoder, objective and feature settings. `train --ssl-checkpoint` reads only the
encoder, through `load_pretrained_encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from mosquito_ast_lite.io import atomic_path, atomic_write_json

from ..features import FeatureSettings
from ..models.ssl import SSLModel, build_ssl_model
from . import CONFIG_NAME, PRETRAINED_FORMAT, WEIGHTS_NAME, CheckpointError, checkpoint_format, read_config
from .encoder import config_to_dict, encoder_from_state


def save_pretrained(model: SSLModel, folder: str | Path, features: FeatureSettings,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` then `config.json`, each atomically (the config names the weights' format)."""
    folder = Path(folder)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as temporary:
        save_file(state, str(temporary))
    config = {"format": PRETRAINED_FORMAT,
              "encoder": config_to_dict(model.encoder.config),
              "objective": {"name": model.objective, **model.options},
              "features": features.to_dict(),
              **(extra or {})}
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder


def load_pretrained(folder: str | Path) -> tuple[SSLModel, dict]:
    """The SSL model (encoder and head) and config of a `pretrain` output folder; the encoder is built
    as `load_pretrained_encoder` builds it."""
    folder = Path(folder)
    config = read_config(folder)
    if checkpoint_format(config) != PRETRAINED_FORMAT:
        raise CheckpointError(f"{folder}: not a `pretrain` output (no {CONFIG_NAME} with format {PRETRAINED_FORMAT})")
    state = load_file(str(folder / WEIGHTS_NAME))
    options = {k: v for k, v in config["objective"].items() if k != "name"}
    encoder = encoder_from_state(state, config, folder / WEIGHTS_NAME)
    model = build_ssl_model(config["objective"]["name"], encoder, **options)
    model.load_state_dict(state)
    return model.eval(), config
