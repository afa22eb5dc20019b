"""Outputs written as one unit and keys checked on load: a crash or kill mid-write leaves the old output
whole, and a cached or shipped file that belongs to something else is refused, not used."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import mosquito_ast.evaluation.report as report
from mosquito_ast.evaluation.report import write_outputs
from mosquito_ast.features import FeatureSettings
from mosquito_ast_lite.__main__ import main as lite_main
from mosquito_ast_lite.graph_meta import METADATA_KEY
from mosquito_ast_lite.runtime import ModelError, load_model
from test_lite import LABELS, TinyModel, write_model_folder
from test_report import hand_built


def test_an_evaluation_killed_mid_write_leaves_the_old_one_whole(tmp_path, monkeypatch):
    evaluation = hand_built(tmp_path)
    out = write_outputs(evaluation)
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    def crash(*args, **kwargs):
        raise RuntimeError("killed while drawing the report")

    monkeypatch.setattr(report, "html_report", crash)
    evaluation.predictions = evaluation.predictions.iloc[:3]
    with pytest.raises(RuntimeError, match="killed"):
        write_outputs(evaluation)
    after = {path.name: path.read_bytes() for path in out.iterdir()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def with_graph_labels(folder: Path, labels: list[str]) -> None:
    """Give the folder's graph the metadata `export` writes: its labels, in its column order."""
    model = onnx.load(str(folder / "model.onnx"))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps({"labels": labels, "members": ["tiny"]})})
    onnx.save(model, str(folder / "model.onnx"))


def test_the_runtime_refuses_graph_labels_other_than_model_json(tmp_path, capsys):
    torch.manual_seed(0)
    folder = write_model_folder(tmp_path / "tiny", TinyModel(FeatureSettings(), len(LABELS)).eval(),
                                FeatureSettings(), LABELS)
    load_model(folder)  # a graph without the metadata (not written by export) is taken as model.json says
    with_graph_labels(folder, LABELS)
    assert load_model(folder).labels == LABELS
    meta = json.loads((folder / "model.json").read_text())
    edited = [LABELS[1], LABELS[0], *LABELS[2:]]
    (folder / "model.json").write_text(json.dumps({**meta, "labels": edited}))  # edited by hand
    with pytest.raises(ModelError, match=r"model.onnx: the graph's labels \[.*\] differ from model.json's"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps(meta))
    with_graph_labels(folder, [*LABELS[:-1], "Culex sp."])  # a new graph beside the old model.json
    with pytest.raises(ModelError, match="export the model again"):
        load_model(folder)
    assert lite_main([str(folder), str(folder), "--output", str(tmp_path / "lite.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "differ from model.json's" in error and "\n" not in error
