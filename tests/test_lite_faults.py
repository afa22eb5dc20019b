"""Faults of the field runtime and of `predict`, which share its rules: a model.json naming a graph outside
its folder (`../x.onnx`, an absolute path) is refused even where that graph exists and runs; WAV files cut
short are reported as `train` reports them."""

import json
import shutil

import numpy as np
import soundfile as sf

import pytest
import torch
from typer.testing import CliRunner

from mosquito_ast.cli import app
from mosquito_ast.features import FeatureSettings
from mosquito_ast_lite.__main__ import main as lite_main
from mosquito_ast_lite.runtime import ModelError, load_model
from test_lite import LABELS, TinyModel, write_model_folder


@pytest.fixture
def model_folder(tmp_path):
    torch.manual_seed(0)
    return write_model_folder(tmp_path / "models" / "tiny", TinyModel(FeatureSettings(), len(LABELS)).eval(),
                              FeatureSettings(), LABELS)


@pytest.mark.parametrize("key", ["onnx", "onnx_fp32"])
def test_graph_names_that_leave_the_model_folder_are_refused(model_folder, tmp_path, key):
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(model_folder / "model.onnx", outside)  # a valid graph: only where it lies is wrong
    meta = json.loads((model_folder / "model.json").read_text())
    load_model(model_folder)
    for name in ("../../outside.onnx", str(outside), "sub/../../../outside.onnx"):
        written = {**meta, key: name, **({"precision": "int8"} if key == "onnx_fp32" else {})}
        (model_folder / "model.json").write_text(json.dumps(written))
        with pytest.raises(ModelError, match=f"'{key}' is .*, outside the model folder; it must name a file in it"):
            load_model(model_folder, fp32=key == "onnx_fp32")


def test_wavs_cut_short_are_reported_by_predict_and_the_runtime(model_folder, tiny_member, tmp_path, capsys):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    tone = 0.1 * np.sin(2 * np.pi * 500 * np.arange(32000) / 16000)
    sf.write(recordings / "whole.wav", tone, 16000, subtype="PCM_16")
    cut = recordings / "cut.wav"
    cut.write_bytes((recordings / "whole.wav").read_bytes()[:20000])  # 2 s declared, 0.6 s present
    expected = (f"warning: 1 of 2 WAV files are cut short (incomplete copies?); the audio present is used:\n"
                f"  {cut}: WAV data cut short: the header declares 64000 bytes, the file holds 19956")

    assert lite_main([str(model_folder), str(recordings), "--output", str(tmp_path / "lite.csv"), "--quiet"]) == 0
    assert capsys.readouterr().err.strip() == expected
    result = CliRunner().invoke(app, ["predict", "--models", str(tiny_member), str(recordings), "--output",
                                      str(tmp_path / "predict.csv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert expected in result.output


def test_inputs_and_outputs_are_checked_before_any_work(model_folder, tiny_member, tmp_path, capsys):
    clip = tmp_path / "clip.wav"
    sf.write(clip, 0.1 * np.sin(2 * np.pi * 500 * np.arange(16000) / 16000), 16000, subtype="PCM_16")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "a-folder.csv").mkdir()
    cases = {  # arguments after MODEL_DIR -> the one error line
        "missing input": ([str(tmp_path / "nowhere.wav"), str(clip)], f"{tmp_path / 'nowhere.wav'}: no such file or folder"),
        "output under a file": ([str(clip), "--output", str(tmp_path / "a-file" / "p.csv")], "cannot write the output here"),
        "output is a folder": ([str(clip), "--output", str(tmp_path / "a-folder.csv")],
                               f"{tmp_path / 'a-folder.csv'}: is a folder; --output names the file to write"),
    }
    for name, (arguments, message) in cases.items():
        assert lite_main([str(tmp_path / "no-model"), *arguments]) == 2, name  # before the model is even read
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and message in error and "\n" not in error, (name, error)
    result = CliRunner().invoke(app, ["predict", "--models", str(tiny_member), str(clip), "--output",
                                      str(tmp_path / "a-folder.csv"), "--no-progress"])
    assert result.exit_code == 2 and "predict:" not in result.output, result.output  # no member loaded
    assert result.output.strip() == f"error: {tmp_path / 'a-folder.csv'}: is a folder; --output names the file to write"
