"""Outputs written as one unit and keys checked on load: a crash or kill mid-write leaves the old output
whole, and a cached or shipped file that belongs to something else is refused, not used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import mosquito_ast.evaluation.report as report
from mosquito_ast.cli import app
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.config import EvaluateParams
from mosquito_ast.evaluation.report import write_outputs
from mosquito_ast.inference.int8 import graph_key
from mosquito_ast.inference.members import load_members
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


def int8_evaluation(models, data, output, cache):
    return evaluate(EvaluateParams(models=str(models), data=str(data), output=str(output), precision="int8",
                                   progress=False, cache_dir=str(cache), bootstrap=0, baseline=False))


def test_a_cached_int8_graph_of_other_weights_is_not_used(tiny_member, synth_split, tmp_path, capsys):
    models, cache = tmp_path / "models", tmp_path / "cache"
    shutil.copytree(tiny_member, models / "a")
    shutil.copytree(tiny_member, models / "b")
    weights = load_file(models / "b" / "model.safetensors")
    save_file({k: v * 1.5 if v.ndim == 2 else v for k, v in weights.items()}, models / "b" / "model.safetensors")
    first = int8_evaluation(models, synth_split[1], tmp_path / "first", cache).predictions
    graphs = {m.name: cache / "int8" / f"{graph_key(m)}.onnx" for m in load_members(str(models))}
    assert all(path.is_file() for path in graphs.values())
    shutil.copyfile(graphs["b"], graphs["a"])  # a valid graph, of the other member's weights
    capsys.readouterr()
    again = int8_evaluation(models, synth_split[1], tmp_path / "again", cache).predictions
    printed = capsys.readouterr().out
    assert "was built for other weights" in printed and "int8 graph of member a built" in printed
    columns = [c for c in first.columns if c.startswith("a:p:")]
    np.testing.assert_array_equal(again[columns].to_numpy(), first[columns].to_numpy())


def test_int8_with_a_cache_that_cannot_be_written_warns_once_and_scores(tiny_member, synth_split, tmp_path, capsys):
    (tmp_path / "occupied").write_text("")  # the cache folder would be under a file: nothing can be written
    result = CliRunner().invoke(app, ["evaluate", "--models", str(tiny_member), "--data", str(synth_split[1]),
                                      "--output", str(tmp_path / "out"), "--precision", "int8", "--bootstrap", "0",
                                      "--no-baseline", "--no-progress", "--cache-dir", str(tmp_path / "occupied" / "c")])
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: int8 graph cache not written for 1 of 1 members") == 1
    assert (tmp_path / "out" / "report.html").is_file()
