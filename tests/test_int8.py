"""`--precision int8` in evaluate and predict: onnxruntime graphs with int8 weights, built once per member
(checked against fp32), cached, and close to the fp32 scores."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError, EvaluateParams, PredictParams, TrainParams
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.commands.predict import predict


def evaluation(models, data, output, cache, precision):
    return evaluate(EvaluateParams(models=str(models), data=str(data), output=str(output), precision=precision,
                                   progress=False, cache_dir=str(cache), bootstrap=0, baseline=False))


def test_evaluate_int8_builds_each_graph_once_and_agrees_with_fp32(tiny_member, synth_split, tmp_path, capsys):
    models = tmp_path / "models"
    shutil.copytree(tiny_member, models / "a")
    cache = tmp_path / "cache"
    fp32 = evaluation(models, synth_split[1], tmp_path / "fp32", cache, "32").predictions
    first = evaluation(models, synth_split[1], tmp_path / "int8", cache, "int8").predictions
    printed = capsys.readouterr().out
    assert "precision int8" in printed
    assert "int8 graph of member a built, against its fp32 scores on" in printed and "same label" in printed
    graphs = sorted((cache / "int8").glob("*.onnx"))
    assert len(graphs) == 1
    built = graphs[0].stat().st_mtime_ns

    again = evaluation(models, synth_split[1], tmp_path / "again", cache, "int8").predictions
    assert "built" not in capsys.readouterr().out  # found in the cache
    assert graphs[0].stat().st_mtime_ns == built
    columns = [c for c in fp32.columns if c.startswith("a:p:")]
    np.testing.assert_array_equal(first[columns].to_numpy(), again[columns].to_numpy())

    graphs[0].write_bytes(b"not a graph")  # a damaged cache entry is built again and replaced
    repaired = evaluation(models, synth_split[1], tmp_path / "repaired", cache, "int8").predictions
    printed = capsys.readouterr().out
    assert "cannot be loaded" in printed and "built" in printed
    np.testing.assert_array_equal(repaired[columns].to_numpy(), first[columns].to_numpy())
    np.testing.assert_allclose(first[columns].to_numpy(), fp32[columns].to_numpy(), atol=0.03)
    assert (first["a:label"] == fp32["a:label"]).mean() >= 0.9


def test_predict_int8_matches_fp32_labels(tiny_member, synth_split, tmp_path, monkeypatch):
    monkeypatch.setenv("MOSQUITO_AST_CACHE", str(tmp_path / "cache"))
    results = {}
    for precision in ("32", "int8"):
        output = tmp_path / f"{precision}.csv"
        predict(PredictParams(inputs=[str(synth_split[1])], models=str(tiny_member), output=str(output),
                              precision=precision, progress=False))
        results[precision] = pd.read_csv(output)
    labels = [c for c in results["32"].columns if c.startswith(("Ae.", "An.", "C."))]
    assert len(results["int8"]) == len(results["32"]) > 10
    np.testing.assert_allclose(results["int8"][labels].to_numpy(), results["32"][labels].to_numpy(), atol=0.03)
    assert (results["int8"]["label"] == results["32"]["label"]).mean() >= 0.9
    assert len(list((tmp_path / "cache" / "int8").glob("*.onnx"))) == 1


def test_int8_is_for_inference_only(synth_split, tmp_path):
    with pytest.raises(ConfigError, match="precision"):
        TrainParams(train_dir=str(synth_split[0]), precision="int8")
    result = CliRunner().invoke(app, ["train", "--train-dir", str(synth_split[0]), "--precision", "int8"])
    assert result.exit_code == 2 and "int8" in result.output
