"""A diverged run fails by name and exports nothing; loaders refuse NaN/inf weights by member folder."""

import shutil

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import load_member
from mosquito_ast.checkpoints.encoder import load_pretrained_encoder
from mosquito_ast.cli import app
from mosquito_ast.commands.train import run_paths, train
from mosquito_ast.training.callbacks import DivergedError


class PoisonLastStep(Callback):
    """Put a NaN in one weight after the last step of `epoch` (1-based): no training loss sees it."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        if trainer.current_epoch + 1 == self.epoch and batch_index == trainer.num_training_batches - 1:
            with torch.no_grad():
                module.model.classifier.bias[0] = float("nan")


def test_exploding_learning_rate_fails_by_epoch_and_writes_no_member(tiny_params):
    params = tiny_params(epochs=2, learning_rate=1e30, optimizer="sgd", max_grad_norm=0)
    result = CliRunner().invoke(app, ["train", "--train-dir", params.train_dir, "--validation-dir",
                                      params.validation_dir, "--output", params.output, "--preset", "tiny",
                                      "--epochs", "2", "--batch-sizes", "8", "--learning-rate", "1e30",
                                      "--optimizer", "sgd", "--max-grad-norm", "0", "--precision", "32",
                                      "--cache-dir", params.cache_dir, "--seed", "7", "--no-progress"])
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in result.output
    assert "training diverged in epoch 1" in error[0] and "--learning-rate" in error[0]
    assert "--max-grad-norm" in error[0]
    assert not run_paths(params)[0].exists()


def test_nonfinite_weights_after_the_last_step_are_caught_before_export(tiny_params):
    params = tiny_params(epochs=2, select="best")
    with pytest.raises(DivergedError, match=r"epoch 2: weight classifier.bias holds NaN/inf"):
        train(params, callbacks=[PoisonLastStep(2)])
    member_dir, run_dir = run_paths(params)
    assert not member_dir.exists()
    candidate = load_file(str(run_dir / "best-candidate" / "model.safetensors"))  # epoch 1's, untouched
    assert all(torch.isfinite(t).all() for t in candidate.values())


def _poisoned_copy(member, folder):
    shutil.copytree(member, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layernorm.weight"][3] = float("inf")
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_loaders_refuse_nonfinite_weights_by_member_folder(tiny_member, synth_split, feature_cache_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_member, models / "good")
    bad = _poisoned_copy(tiny_member, models / "bad")
    with pytest.raises(CheckpointError, match=r"bad: weights hold NaN/inf \(first: encoder.layernorm.weight\)"):
        load_member(bad)
    with pytest.raises(CheckpointError, match="weights hold NaN/inf"):
        load_pretrained_encoder(bad)  # `train --ssl-checkpoint` and `pretrain --init` go through here

    clip = next(synth_split[1].rglob("*.wav"))
    runs = {
        "predict": ["predict", "--models", str(models), str(clip), "--output", str(tmp_path / "p.csv"),
                    "--no-progress"],
        "evaluate": ["evaluate", "--models", str(models), "--data", str(synth_split[1]), "--output",
                     str(tmp_path / "eval"), "--precision", "32", "--no-progress", "--cache-dir",
                     str(feature_cache_dir)],
    }
    for command, arguments in runs.items():
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (command, result.output)
        assert f"{bad}: weights hold NaN/inf" in lines[0], command
    assert not (tmp_path / "p.csv").exists()


def test_finite_weights_with_nan_outputs_stop_training_by_epoch(tiny_params):
    """One optimizer step at --learning-rate 1e6 leaves finite weights whose outputs are NaN."""
    params = tiny_params(epochs=1, batch_sizes=[100], learning_rate=1e6, select="last")
    with pytest.raises(DivergedError, match=r"epoch 1: the outputs on a probe clip are NaN/inf"):
        train(params)
    assert not run_paths(params)[0].exists()


def _overflowing_copy(member, folder):
    """Finite weights (3e38 is below float32's largest) whose outputs overflow: the final layernorm's scale."""
    shutil.copytree(member, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["encoder.layernorm.weight"][:] = 3e38
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_members_with_nan_outputs_are_refused_on_load(tiny_member, synth_split, tmp_path):
    bad = _overflowing_copy(tiny_member, tmp_path / "models" / "overflowing")
    with pytest.raises(CheckpointError, match=r"overflowing: outputs NaN/inf on a probe input"):
        load_member(bad)
    clip = next(synth_split[1].rglob("*.wav"))
    result = CliRunner().invoke(app, ["predict", "--models", str(bad), str(clip), "--output",
                                      str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: {bad}: outputs NaN/inf on a probe input although its "
                                                  "weights are finite; the run that wrote it diverged, train it "
                                                  "again (lower --learning-rate, --max-grad-norm 1.0)"]
    assert not (tmp_path / "p.csv").exists()


def test_graph_checks_fail_on_nan():
    from mosquito_ast.inference.onnx_graphs import compare

    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    same = compare(reference.copy(), reference)
    assert same.finite and same.max_probability_difference == 0 and same.same_label == 1
    graph = reference.copy()
    graph[1] = np.nan  # argmax of a NaN row is 0, as the reference's of row 0: no longer "the same label"
    check = compare(graph, reference)
    assert not check.finite and check.max_probability_difference == float("inf")
    assert check.same_label == pytest.approx(2 / 3)
    assert not check.max_probability_difference <= 1e-3
    nan_reference = compare(reference, np.full_like(reference, np.nan))
    assert not nan_reference.finite and nan_reference.same_label == 0
