"""`pretrain` output folders: the SSL model's weights (`encoder.*` plus the objective's head) and a
config naming the encoder, objective and feature settings. `train --ssl-checkpoint` reads only the
encoder, through `load_pretrained_encoder`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from mosquito_ast_lite.io import atomic_path, atomic_write_json

from ..features import FeatureSettings
from ..models.ssl import SSLModel
from . import CONFIG_NAME, PRETRAINED_FORMAT, WEIGHTS_NAME
from .encoder import config_to_dict


def save_pretrained(model: SSLModel, folder: str | Path, features: FeatureSettings,
                    provenance: dict[str, Any] | None = None) -> Path:
    """Write `model.safetensors` then `config.json`, each atomically (the config names the weights' format)."""
    folder = Path(folder)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as temporary:
        save_file(state, str(temporary))
    config = {"format": PRETRAINED_FORMAT,
              "encoder": config_to_dict(model.encoder.config),
              "objective": {"name": model.objective, **model.options},
              "features": features.to_dict(),
              **(provenance or {})}
    atomic_write_json(folder / CONFIG_NAME, config)
    return folder
