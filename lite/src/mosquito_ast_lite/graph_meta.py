"""What an exported graph says about itself, checked against the model.json beside it when it loads."""

from __future__ import annotations

import json
from pathlib import Path

METADATA_KEY = "mosquito_ast"  # the graph's metadata entry: JSON with its labels, features and members


class ModelError(ValueError):
    """A model folder that cannot be used; the message names the folder and the problem."""


def check_graph_labels(session, onnx_path: Path, labels: list[str]) -> None:
    """An exported graph carries its labels: they must be model.json's, in order. A crash between writing
    new graphs and model.json, or edited labels, would otherwise name every class wrongly. A graph without
    the entry (not written by `export`) is taken as model.json describes it."""
    try:
        found = json.loads(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}")).get("labels", labels)
    except (json.JSONDecodeError, AttributeError):
        raise ModelError(f"{onnx_path}: unreadable {METADATA_KEY!r} metadata; export the model again") from None
    if found != labels:
        raise ModelError(f"{onnx_path}: the graph's labels {found} differ from model.json's {labels} (an export "
                         "cut short, or edited labels); export the model again")
