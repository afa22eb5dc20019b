"""Checkpoints never run code, and `--overwrite` replaces only what the tool itself wrote (issue 26, items 1-2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mosquito_ast_lite.io import FolderKind, OutputFolderError, atomic_directory

from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import load_member, save_member
from mosquito_ast.checkpoints.transformers_format import write_transformers_folder
from mosquito_ast.cli import app
from mosquito_ast.config import EvaluateParams, PretrainParams
from mosquito_ast.commands.evaluate import evaluate
from mosquito_ast.training.run import resume_checkpoint
from mosquito_ast.commands.pretrain import pretrain

runner = CliRunner()


class Payload:
    """Unpickling it creates a folder: the proof that loading ran code."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self):
        return os.mkdir, (str(self.proof),)


def crafted_checkpoint(path: Path, proof: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 1, "payload": Payload(proof)}, path)
    return path


def user_folder(folder: Path) -> dict[str, bytes]:
    """A researcher's folder given as --output by mistake: 12 recordings and a note."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        (folder / f"clip{i:02d}.wav").write_bytes(b"RIFF" + bytes(i))
    (folder / "notes.txt").write_text("field notes")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_checkpoint_holding_objects_is_refused_without_running_them(tmp_path):
    proof = tmp_path / "code-ran"
    checkpoint = crafted_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", proof)
    with pytest.raises(CheckpointError, match="last.ckpt: holds more than tensors and plain types.*could run code"):
        resume_checkpoint(checkpoint)
    assert not proof.exists()


def test_a_plain_checkpoint_is_accepted(tmp_path):
    checkpoint = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 2, "history": [{"epoch": 1, "loss": 0.5}]}, checkpoint)
    assert resume_checkpoint(checkpoint) == checkpoint


def test_pretrain_resume_from_a_crafted_checkpoint_runs_no_code(tmp_path, synth_split, feature_cache_dir):
    output = tmp_path / "pretrained"
    proof = tmp_path / "code-ran"
    crafted_checkpoint(output / "run" / "checkpoints" / "last.ckpt", proof)
    result = runner.invoke(app, ["pretrain", "--data", str(synth_split[1]), "--output", str(output), "--preset",
                                 "tiny", "--epochs", "1", "--resume", "--no-progress", "--cache-dir",
                                 str(feature_cache_dir)])
    assert result.exit_code == 2, result.output
    assert "holds more than tensors and plain types" in result.output
    assert not proof.exists()


def test_train_resume_from_a_crafted_checkpoint_runs_no_code(tmp_path, synth_split, feature_cache_dir):
    output = tmp_path / "runs"
    proof = tmp_path / "code-ran"
    crafted_checkpoint(output / "runs" / "m" / "checkpoints" / "last.ckpt", proof)
    result = runner.invoke(app, ["train", "--train-dir", str(synth_split[0]), "--validation-dir", str(synth_split[1]),
                                 "--output", str(output), "--postfix", "m", "--preset", "tiny", "--epochs", "1",
                                 "--resume", "--no-progress", "--cache-dir", str(feature_cache_dir)])
    assert result.exit_code == 2, result.output
    assert "holds more than tensors and plain types" in result.output
    assert not proof.exists()


def test_atomic_directory_never_replaces_a_folder_of_another_kind(tmp_path):
    kind = FolderKind("a thing", ("thing.json",), ("thing.json", "*.bin"))
    folder = tmp_path / "mine"
    before = user_folder(folder)
    with pytest.raises(OutputFolderError, match=r"mine: not a thing written by mosquito-ast \(no thing.json, "
                                                r"clip00.wav, clip01.wav and 11 more\)"):
        with atomic_directory(folder, kind) as staging:
            (staging / "thing.json").write_text("{}")
    assert contents(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging folder left


def test_atomic_directory_replaces_its_own_kind(tmp_path):
    kind = FolderKind("a thing", ("thing.json",), ("thing.json", "*.bin"))
    folder = tmp_path / "ours"
    for version in ("1", "2"):
        with atomic_directory(folder, kind) as staging:
            (staging / "thing.json").write_text(version)
            (staging / f"v{version}.bin").write_text(version)
    assert sorted(contents(folder)) == ["thing.json", "v2.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["ours"]


def test_a_member_never_replaces_a_user_folder(tmp_path, tiny_member):
    model, config = load_member(tiny_member)
    folder = tmp_path / "recordings"
    before = user_folder(folder)
    with pytest.raises(OutputFolderError, match="recordings: not a member written by mosquito-ast"):
        save_member(model, folder, model_features(config), {}, overwrite=True)
    with pytest.raises(OutputFolderError, match="not a transformers folder"):
        write_transformers_folder(model, model_features(config), folder, overwrite=True)
    assert contents(folder) == before


def model_features(config: dict):
    from mosquito_ast.features import FeatureSettings

    return FeatureSettings.from_dict(config["features"])


def test_train_overwrite_refuses_a_user_folder_before_training(tmp_path, synth_split, feature_cache_dir):
    output = tmp_path / "runs"
    before = user_folder(output / "best" / "m")
    result = runner.invoke(app, ["train", "--train-dir", str(synth_split[0]), "--validation-dir", str(synth_split[1]),
                                 "--output", str(output), "--postfix", "m", "--preset", "tiny", "--epochs", "1",
                                 "--overwrite", "--no-progress", "--cache-dir", str(feature_cache_dir)])
    assert result.exit_code == 2, result.output
    assert "not a member written by mosquito-ast" in result.output
    assert contents(output / "best" / "m") == before


def test_distill_overwrite_refuses_a_user_folder(tmp_path, tiny_member, synth_split, feature_cache_dir):
    output = tmp_path / "field"
    before = user_folder(output)
    result = runner.invoke(app, ["distill", "--models", str(tiny_member), "--data", str(synth_split[0]),
                                 "--output", str(output), "--preset", "tiny", "--epochs", "1", "--overwrite",
                                 "--no-progress", "--cache-dir", str(feature_cache_dir)])
    assert result.exit_code == 2, result.output
    assert "not a member written by mosquito-ast" in result.output
    assert contents(output) == before


def test_pretrain_overwrite_refuses_a_user_folder(tmp_path, synth_split, feature_cache_dir):
    output = tmp_path / "pretrained"
    before = user_folder(output)
    (output / "run").mkdir()
    (output / "run" / "thesis.tex").write_text("chapter 1")
    with pytest.raises(OutputFolderError, match="not a pretrain output written by mosquito-ast"):
        pretrain(PretrainParams(data=str(synth_split[1]), output=str(output), preset="tiny", epochs=1,
                                overwrite=True, progress=False, cache_dir=str(feature_cache_dir)))
    assert (output / "run" / "thesis.tex").read_text() == "chapter 1"
    assert contents(output) == before


def test_export_overwrite_refuses_a_folder_that_is_no_export(tmp_path, tiny_member):
    output = tmp_path / "deploy"
    before = user_folder(output)
    (output / "model.onnx").write_bytes(b"another tool's graph")
    before["model.onnx"] = b"another tool's graph"
    result = runner.invoke(app, ["export", "--models", str(tiny_member), "--output", str(output), "--overwrite",
                                 "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "not an export written by mosquito-ast" in result.output
    assert contents(output) == before


def test_evaluate_refuses_to_write_into_a_user_folder(tmp_path, tiny_member, synth_split):
    output = tmp_path / "results"
    before = user_folder(output)
    with pytest.raises(OutputFolderError, match="results: not an evaluation written by mosquito-ast"):
        evaluate(EvaluateParams(models=[str(tiny_member)], data=str(synth_split[1]), output=str(output),
                                progress=False, bootstrap=0, baseline=False))
    assert contents(output) == before
