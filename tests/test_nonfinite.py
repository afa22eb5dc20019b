"""A diverged run fails by name and exports nothing; loaders refuse NaN/inf weights by member folder."""

import shutil

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
from mosquito_ast.training.loop import DivergedError


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
