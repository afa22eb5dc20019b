"""Every file this tool reads or writes for a model; `models/` holds the networks and knows no files.

A checkpoint folder holds `model.safetensors` and, except for the old notebooks', a `config.json`:
- a member (format `mosquito-ast-member`, `classifier.py`): keys `encoder.*`, `classifier.*`, as the
  old notebooks wrote them; the config (encoder, labels, feature settings, training record) fully
  describes it, so evaluation and prediction need no flags;
- a `pretrain` output (format `mosquito-ast-pretrained`, `ssl.py`): keys `encoder.*` plus the
  objective's head;
- a Hugging Face AST checkpoint (`model_type` audio-spectrogram-transformer), local or a hub id;
- an old-notebook folder: weights only (keys `encoder.*` next to `projector.*`/`decoder.*` or
  `classifier.*`), AST-base at 1024 frames, transformers 4.x key names.
Our formats' and the old notebooks' encoders are built by `encoder.encoder_from_state`, Hugging Face
folders and hub ids by transformers' `from_pretrained`. This module imports no torch, so the file
names serve light callers (the sweep planner) too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mosquito_ast_lite.io import FolderKind

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
MEMBER_FOLDER = FolderKind("a member", (CONFIG_NAME, WEIGHTS_NAME), (CONFIG_NAME, WEIGHTS_NAME))
PRETRAINED_FOLDER = FolderKind("a pretrain output", (CONFIG_NAME, "run"),
                               (CONFIG_NAME, WEIGHTS_NAME, "history.csv", "probe.json", "run"))
TRANSFORMERS_FOLDER = FolderKind("a transformers folder (save_pretrained)", (CONFIG_NAME,),
                                 (CONFIG_NAME, "model*.safetensors*", "preprocessor_config.json", "*.py"))
MEMBER_FORMAT = "mosquito-ast-member"
PRETRAINED_FORMAT = "mosquito-ast-pretrained"
HUGGING_FACE_FORMAT = "hugging-face"
OLD_NOTEBOOK_FORMAT = "old-notebook"
OLD_NOTEBOOK_MAX_LENGTH = 1024


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message names it and the problem."""


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json values; {} when it has none (old-notebook folders)."""
    config_file = folder / CONFIG_NAME
    if not config_file.exists():
        return {}
    try:
        values = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error}); the file is damaged or was cut short")
    if not isinstance(values, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, found {type(values).__name__}")
    return values


def checkpoint_format(config: Mapping[str, Any]) -> str:
    """Which writer made a folder, told by its config.json values (the one place that reads `format`):
    anything neither ours nor Hugging Face's is taken for the old notebooks'."""
    if config.get("format") in (MEMBER_FORMAT, PRETRAINED_FORMAT):
        return config["format"]
    if config.get("model_type") == "audio-spectrogram-transformer":
        return HUGGING_FACE_FORMAT
    return OLD_NOTEBOOK_FORMAT


def run_folders(output: str | Path, postfix: str) -> tuple[Path, Path]:
    """The layout of one training run under `output`: (member folder `best/<postfix>`, working folder
    `runs/<postfix>` with checkpoints, history and candidate). `train` and `sweep` both use it."""
    output = Path(output)
    return output / "best" / postfix, output / "runs" / postfix


def model_folders(models: str | Path | Sequence[str | Path]) -> list[Path]:
    """The folders `--models` names: one path, or several (a YAML list, or the flag's comma-separated list)."""
    folders = [Path(models)] if isinstance(models, (str, Path)) else [Path(m) for m in models]
    if not folders:
        raise CheckpointError("no models folder given")
    return folders


def named_member_folders(roots: Sequence[Path], found: Iterable[Path]) -> dict[str, Path]:
    """Member folders found under `roots`, by name: the path below the roots' common folder (a member
    folder given alone is named after itself), so names stay unique across several roots. A folder
    reached twice (the same once links are followed, or under nested roots) counts once, with a warning:
    it would otherwise vote twice."""
    common = os.path.commonpath([os.path.abspath(root) for root in roots])
    named: dict[str, Path] = {}
    seen: dict[Path, Path] = {}
    for folder in found:
        real = folder.resolve()
        if real in seen:
            print(f"warning: member {folder} is {seen[real]} reached again; counted once")
            continue
        seen[real] = folder
        relative = Path(os.path.relpath(os.path.abspath(folder), common)).as_posix()
        named[folder.name if relative == "." else relative] = folder
    return named
