"""Member folders: saved atomically, promoted by hard link, loaded in this tool's or the old notebooks' format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mosquito_ast_lite.io import atomic_directory

from ..features import FeatureSettings
from ..models.classifier import ASTClassifier
from . import (CONFIG_NAME, MEMBER_FOLDER, MEMBER_FORMAT, OLD_NOTEBOOK_FORMAT, OLD_NOTEBOOK_MAX_LENGTH, WEIGHTS_NAME,
               CheckpointError, checkpoint_format, read_config)
from .encoder import check_finite, config_to_dict, encoder_from_state, old_notebook_config


def _write_config(folder: Path, config: Mapping[str, Any]) -> None:
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=str))


def save_member(model: ASTClassifier, folder: str | Path, features: FeatureSettings, provenance: dict[str, Any],
                overwrite: bool = True) -> Path:
    """Write a member folder atomically: a reader sees the old member or the new one, never half."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder}: a member already exists here (use --overwrite to replace it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": MEMBER_FORMAT,
        "encoder": config_to_dict(model.encoder.config),
        "head": {"type": "layernorm-meanpool-linear", "num_labels": len(model.labels),
                 "spectrum_token": model.spectrum_token},
        "labels": model.labels,
        "id2label": {str(i): name for i, name in enumerate(model.labels)},
        "features": features.to_dict(),
        **provenance,
    }
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    with atomic_directory(folder, MEMBER_FOLDER) as staging:
        save_file(state, str(staging / WEIGHTS_NAME))
        _write_config(staging, config)
    return folder


def promote_member(candidate: str | Path, folder: str | Path, selection: dict[str, Any]) -> Path:
    """Put an exported member in place with its `selection` record added to its config, atomically. The weights are
    hard-linked (copied across file systems), not loaded and rewritten: AST-base's are 350 MB."""
    candidate = Path(candidate)
    config = {**json.loads((candidate / CONFIG_NAME).read_text()), **selection}
    with atomic_directory(folder, MEMBER_FOLDER) as staging:
        try:
            os.link(candidate / WEIGHTS_NAME, staging / WEIGHTS_NAME)
        except OSError:
            shutil.copyfile(candidate / WEIGHTS_NAME, staging / WEIGHTS_NAME)
        _write_config(staging, config)
    return Path(folder)


def is_member_folder(folder: Path) -> bool:
    return (folder / WEIGHTS_NAME).is_file()


def holds_classifier(folder: Path) -> bool:
    """Whether the folder's weights include a classification head: encoders alone are no members."""
    try:
        with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as weights:
            return any(key.startswith("classifier.") for key in weights.keys())
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{folder / WEIGHTS_NAME}: unreadable weights ({error})") from error


def _old_member_config(labels: list[str]) -> dict[str, Any]:
    """What an old-notebook member's missing config.json would say."""
    features = FeatureSettings(max_length=OLD_NOTEBOOK_MAX_LENGTH)
    return {"format": OLD_NOTEBOOK_FORMAT, "labels": list(labels), "features": features.to_dict(),
            "encoder": config_to_dict(old_notebook_config())}


def _check_head(head: Mapping[str, torch.Tensor], model: ASTClassifier, origin: Path) -> None:
    """The head's weights (and the spectrum token's) must have the shapes of the config's head: a Linear
    from the encoder's width (twice it with --spectrum-token head) to one output per label."""
    shapes = {name: tuple(tensor.shape) for name, tensor in head.items()}
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()
                if not name.startswith("encoder.")}
    if shapes != expected:
        raise CheckpointError(f"{origin}: classifier weights {shapes}, expected {expected} ({len(model.labels)} "
                              f"labels, hidden size {model.encoder.config.hidden_size}, spectrum token "
                              f"{model.spectrum_token})")


def load_member(folder: str | Path, labels: list[str] | None = None) -> tuple[ASTClassifier, dict]:
    """Load a member and its config. Folders without our config.json are old-notebook members:
    AST-base at 1024 frames with AudioSet normalization, labels given in the old id order. Both build
    their encoder as `load_pretrained_encoder` does, then add the head; nothing is randomly initialised,
    every weight is the file's (AST-base loads in a fraction of a second)."""
    folder = Path(folder)
    if not is_member_folder(folder):
        raise CheckpointError(f"{folder}: no {WEIGHTS_NAME}, not a member folder")
    stored = read_config(folder)
    old = checkpoint_format(stored) != MEMBER_FORMAT
    if old and not labels:
        raise CheckpointError(
            f"{folder}: an old-format member (weights only, no label names); pass --labels in the old id order"
        )
    config = _old_member_config(labels) if old else stored
    state = load_file(str(folder / WEIGHTS_NAME))
    check_finite(state, folder)
    head = {k: v for k, v in state.items() if not k.startswith("encoder.")}
    encoder = encoder_from_state(state, stored, folder / WEIGHTS_NAME)
    if old and config_to_dict(encoder.config) != config["encoder"]:
        raise CheckpointError(f"{folder}: old-format members must be AST-base at {OLD_NOTEBOOK_MAX_LENGTH} frames")
    spectrum_token = config.get("head", {}).get("spectrum_token", "none")
    try:
        with torch.device("meta"):  # the head's weights follow: no random initialisation
            model = ASTClassifier(encoder, config["labels"], spectrum_token)
    except ValueError as error:
        raise CheckpointError(f"{folder / CONFIG_NAME}: {error}") from error
    _check_head(head, model, folder / WEIGHTS_NAME)
    model.load_state_dict(head, strict=False, assign=True)  # every other key is the encoder's, loaded above
    if not outputs_finite(model.eval()):
        raise CheckpointError(f"{folder}: outputs NaN/inf on a probe input although its weights are finite; the run "
                              f"that wrote it diverged, train it again (lower --learning-rate, --max-grad-norm 1.0)")
    return model, config


@torch.no_grad()
def outputs_finite(model: ASTClassifier) -> bool:
    """Whether the model's logits on a fixed probe clip (seeded standard normal, as normalized features are) are
    finite: weights can be finite while the outputs overflow (a run at --learning-rate 1e6), and such a
    member labelled every file with its first class. Runs in eval mode on the weights' device and dtype."""
    weight = next(model.parameters())
    config = model.encoder.config
    probe = torch.randn(1, config.max_length, config.num_mel_bins, generator=torch.Generator().manual_seed(0))
    training = model.training
    try:
        logits = model.eval()(probe.to(device=weight.device, dtype=weight.dtype))
    finally:
        model.train(training)
    return bool(torch.isfinite(logits).all())
