"""`export`: one member or an ensemble as one ONNX graph (fbank in, soft vote out), int8, its self-check,
model.json, and the refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mosquito_ast import __version__
from mosquito_ast.checkpoints import WEIGHTS_NAME
from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError, ExportParams
from mosquito_ast.data import discover
from mosquito_ast.inference.votes import soft_vote
from mosquito_ast.inference.members import load_members, score_features
import mosquito_ast.commands.export as export_module
from mosquito_ast.commands.export import METADATA_KEY, export
from mosquito_ast_lite.runtime import INT8_NAME, JSON_NAME, ONNX_NAME
from mosquito_ast_lite.runtime import MODEL_FORMAT as FORMAT
from mosquito_ast.features import FeatureSettings, compute_features

runner = CliRunner()


def member_copy(source: Path, target: Path, **changes) -> Path:
    """A copy of a member folder whose config.json has `changes`: `features` entries, `labels` (a permuted
    order: the same weights now name the classes differently) or `data`."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config["features"].update(changes.pop("features", {}))
    if "labels" in changes:
        config["labels"] = changes.pop("labels")
        config["id2label"] = {str(i): name for i, name in enumerate(config["labels"])}
    config.update(changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def ensemble(tiny_member, tmp_path_factory) -> Path:
    """Two members of one feature setting: the tiny member, and a copy with its own normalization and its
    classes in another order (so the graph must reorder its columns)."""
    root = tmp_path_factory.mktemp("ensemble")
    member_copy(tiny_member, root / "a")
    labels = json.loads((tiny_member / "config.json").read_text())["labels"]
    other = member_copy(tiny_member, root / "b", features={"norm_mean": -3.0, "norm_std": 3.5}, labels=labels[::-1])
    generator = torch.Generator().manual_seed(0)
    weights = {k: v * (1 + 0.05 * torch.randn(v.shape, generator=generator)) for k, v in load_file(other / WEIGHTS_NAME).items()}
    save_file(weights, str(other / WEIGHTS_NAME))
    return root


def params(models, output, feature_cache_dir, **overrides) -> ExportParams:
    values = dict(models=str(models), output=str(output), cache_dir=str(feature_cache_dir), progress=False,
                  check_clips=12)
    values.update(overrides)
    return ExportParams(**values)


def generated_clips(synth_split, feature_cache_dir, settings: FeatureSettings) -> np.ndarray:
    paths = [s.path for s in discover(synth_split[1])]
    return compute_features(paths, settings, None, progress=False).features


def run(path: Path, features: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"fbank": features})[0]


def pytorch(models: Path, features: np.ndarray, weights=None) -> np.ndarray:
    members = load_members(models)
    probabilities = score_features(members, {members[0].features.extraction_key(): features}, "32", device="cpu")
    return soft_vote(probabilities, weights)


def test_one_member_exports_fbank_to_probabilities(tiny_member, synth_split, feature_cache_dir, tmp_path):
    result = export(params(tiny_member, tmp_path / "onnx", feature_cache_dir))
    out = tmp_path / "onnx"
    assert sorted(p.name for p in out.iterdir()) == [JSON_NAME, ONNX_NAME]  # no temporary files left
    info = json.loads((out / JSON_NAME).read_text())
    member = load_members(tiny_member)[0]
    assert info == result.info
    assert info["format"] == FORMAT and info["precision"] == "fp32" and info["onnx"] == ONNX_NAME
    assert "onnx_fp32" not in info
    assert info["labels"] == member.labels and info["members"] == [member.name] and info["weights"] == [1.0]
    assert info["features"] == member.features.to_dict() and info["tool_version"] == __version__
    check = info["self_check"]
    assert check["clips"] == 12 and check["same_label"] == 1.0 and check["max_probability_difference"] < 1e-4
    assert "training clips" in check["source"]

    assert info["files"] == [ONNX_NAME, JSON_NAME]
    model = onnx.load(str(out / ONNX_NAME))
    onnx.checker.check_model(model)
    metadata = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])  # the graph says what it is
    assert metadata["labels"] == member.labels and metadata["features"] == member.features.to_dict()
    assert metadata["members"] == [member.name] and metadata["tool_version"] == __version__
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == "fbank" and graph_output.name == "probabilities"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    batch, frames, mel = graph_input.type.tensor_type.shape.dim
    assert batch.dim_param and (frames.dim_value, mel.dim_value) == (100, 128)

    features = generated_clips(synth_split, feature_cache_dir, member.features)
    expected = pytorch(tiny_member, features)
    for rows in (slice(0, 1), slice(0, len(features))):  # the batch axis is dynamic
        got = run(out / ONNX_NAME, features[rows])
        assert got.dtype == np.float32 and got.shape == expected[rows].shape
        np.testing.assert_allclose(got, expected[rows], atol=1e-4)


def test_ensemble_votes_inside_the_graph_and_int8_agrees(ensemble, synth_split, feature_cache_dir, tmp_path):
    out = tmp_path / "onnx"
    result = export(params(ensemble, out, feature_cache_dir, int8=True, weights="1,3"))
    info = json.loads((out / JSON_NAME).read_text())
    assert info["members"] == ["a", "b"] and info["weights"] == [0.25, 0.75]
    assert info["precision"] == "int8" and info["onnx"] == INT8_NAME and info["onnx_fp32"] == ONNX_NAME
    candidates = info["quantization"]["candidates"]  # QInt8 (fast u8s8 kernels) unless QUInt8 agrees more
    assert info["quantization"]["weight_type"] == "QInt8" or \
        candidates["QUInt8"]["same_label"] > candidates["QInt8"]["same_label"]
    assert info["self_check"]["fp32"]["max_probability_difference"] < 1e-4
    assert info["self_check"]["same_label"] == info["self_check"]["int8"]["same_label"] >= 0.9
    assert any("int8" in line for line in result.lines)
    assert (out / INT8_NAME).stat().st_size < (out / ONNX_NAME).stat().st_size

    members = load_members(ensemble)
    features = generated_clips(synth_split, feature_cache_dir, members[0].features)
    expected = pytorch(ensemble, features, np.array([0.25, 0.75]))
    np.testing.assert_allclose(run(out / ONNX_NAME, features), expected, atol=1e-4)
    single = pytorch(ensemble / "a", features)
    assert np.abs(expected - single).max() > 1e-3  # the second member (own norm, reordered labels) counts
    int8 = run(out / INT8_NAME, features)
    assert (int8.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.9

    # again without --int8: --overwrite replaces the files and drops the int8 model model.json no longer names
    with pytest.raises(FileExistsError, match="--overwrite"):
        export(params(ensemble, out, feature_cache_dir))
    export(params(ensemble, out, feature_cache_dir, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == [JSON_NAME, ONNX_NAME]
    assert json.loads((out / JSON_NAME).read_text())["weights"] == [0.5, 0.5]


def test_weights_beyond_one_file_go_to_data_files_beside_the_graph(ensemble, synth_split, feature_cache_dir,
                                                                   tmp_path, monkeypatch):
    """Ensembles over 2 GB (one protobuf file's limit): each graph keeps its weights in one .data file."""
    out = tmp_path / "onnx"
    monkeypatch.setattr(export_module, "MAX_ONNX_BYTES", 0)
    result = export(params(ensemble, out, feature_cache_dir, int8=True))
    data = [f"{ONNX_NAME}.data", f"{INT8_NAME}.data"]
    assert sorted(p.name for p in out.iterdir()) == sorted([JSON_NAME, ONNX_NAME, INT8_NAME, *data])
    assert result.info["files"] == sorted([ONNX_NAME, INT8_NAME, *data]) + [JSON_NAME]
    assert any("copy the whole folder" in line for line in result.lines)
    for name in (ONNX_NAME, INT8_NAME):
        assert (out / name).stat().st_size < (out / f"{name}.data").stat().st_size
        metadata = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        assert json.loads(metadata[METADATA_KEY])["members"] == ["a", "b"]
    features = generated_clips(synth_split, feature_cache_dir, load_members(ensemble)[0].features)
    np.testing.assert_allclose(run(out / ONNX_NAME, features), pytorch(ensemble, features), atol=1e-4)

    monkeypatch.setattr(export_module, "MAX_ONNX_BYTES", 2 ** 40)
    export(params(ensemble, out, feature_cache_dir, overwrite=True))  # the data files it no longer needs go
    assert sorted(p.name for p in out.iterdir()) == [JSON_NAME, ONNX_NAME]
    np.testing.assert_allclose(run(out / ONNX_NAME, features), pytorch(ensemble, features), atol=1e-4)


def test_int8_of_members_with_equal_weights(tiny_member, feature_cache_dir, tmp_path):
    """Copies of one member: the exporter stores their weights once, which the quantizer must survive."""
    member_copy(tiny_member, tmp_path / "models" / "a")
    member_copy(tiny_member, tmp_path / "models" / "b")
    info = export(params(tmp_path / "models", tmp_path / "onnx", feature_cache_dir, int8=True, check_clips=8)).info
    assert info["self_check"]["int8"]["same_label"] >= 0.9 and info["self_check"]["fp32"]["same_label"] == 1.0


def test_self_check_falls_back_to_generated_clips(tiny_member, feature_cache_dir, tmp_path):
    moved = member_copy(tiny_member, tmp_path / "models" / "m", data={"train": str(tmp_path / "gone")})
    info = export(params(moved.parent, tmp_path / "onnx", feature_cache_dir, check_clips=8)).info
    assert info["self_check"]["source"].startswith("generated") and info["self_check"]["clips"] == 8
    assert info["self_check"]["max_probability_difference"] < 1e-4


def test_members_of_other_feature_settings_are_refused(tiny_member, feature_cache_dir, tmp_path):
    models = tmp_path / "models"
    member_copy(tiny_member, models / "a")
    member_copy(tiny_member, models / "b", features={"window_ms": 20.0})
    with pytest.raises(ConfigError, match="member b .*window|member b .*win20"):
        export(params(models, tmp_path / "onnx", feature_cache_dir))
    assert not (tmp_path / "onnx").exists()


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def test_command_line_errors_are_one_line(tiny_member, feature_cache_dir, tmp_path):
    models = tmp_path / "models"
    member_copy(tiny_member, models / "a")
    member_copy(tiny_member, models / "b", features={"num_mel_bins": 64})
    base = ["export", "--output", str(tmp_path / "onnx"), "--no-progress", "--cache-dir", str(feature_cache_dir)]
    assert "member b" in one_line_error(runner.invoke(app, [*base, "--models", str(models)]))
    assert "--int8" in one_line_error(runner.invoke(app, [*base, "--models", str(tiny_member), "--calibration", "x"]))
    assert "required" in one_line_error(runner.invoke(app, ["export", "--models", str(tiny_member)]))
    assert "no such models folder" in one_line_error(runner.invoke(app, [*base, "--models", str(tmp_path / "none")]))
    assert "weights" in one_line_error(runner.invoke(app, [*base, "--models", str(tiny_member), "--weights", "1,2"]))

    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / ONNX_NAME).write_bytes(b"earlier export")
    assert "--overwrite" in one_line_error(runner.invoke(app, [*base, "--models", str(tiny_member)]))
    assert (tmp_path / "onnx" / ONNX_NAME).read_bytes() == b"earlier export"
