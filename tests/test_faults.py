"""Runs that would silently do something else than asked: resumed with other parameters, an interrupted
run started again over its checkpoint, a member written outside --output, a classifier of one class."""

import dataclasses

import pytest
from lightning.pytorch.callbacks import Callback
from typer.testing import CliRunner

from helpers import CrashAtEpoch
from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError
from mosquito_ast.commands.train import run_paths, train


class EpochsRun(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.epochs.append(trainer.current_epoch + 1)


def interrupted_run(tiny_params, **overrides):
    """Params of a run stopped after epoch 1 of 2, its `last.ckpt` written."""
    params = tiny_params(epochs=2, **overrides)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(params, callbacks=[CrashAtEpoch(1)])
    last = run_paths(params)[1] / "checkpoints" / "last.ckpt"
    assert last.is_file()
    return params, last


def cli_arguments(params, *extra):
    return ["train", "--train-dir", params.train_dir, "--validation-dir", params.validation_dir, "--output",
            params.output, "--preset", "tiny", "--epochs", str(params.epochs), "--batch-sizes", "8",
            "--learning-rate", str(params.learning_rate), "--precision", "32", "--cache-dir", params.cache_dir,
            "--seed", str(params.seed), "--checkpoint-minutes", "0", "--no-progress", *extra]


def test_resume_with_other_training_parameters_is_refused_by_name(tiny_params):
    params, last = interrupted_run(tiny_params)
    before = last.read_bytes()
    changed = dataclasses.replace(params, resume=True, epochs=3, learning_rate=1e-2, batch_sizes=[4])
    with pytest.raises(ConfigError, match=r"--resume: the interrupted run was started with other parameters: "
                                          r"epochs 2 \(now 3\), batch_sizes \[8\] \(now \[4\]\), "
                                          r"learning_rate 0.001 \(now 0.01\); resume with the same ones"):
        train(changed)
    assert last.read_bytes() == before and not run_paths(params)[0].exists()
    result = CliRunner().invoke(app, cli_arguments(dataclasses.replace(params, seed=8), "--resume"))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: --resume: the interrupted run was started with other parameters: seed 7 (now 8); "
                      "resume with the same ones, or start again with --overwrite"], result.output
    seen = EpochsRun()
    train(dataclasses.replace(params, resume=True, progress=True, checkpoint_minutes=5), callbacks=[seen])
    assert seen.epochs == [2]  # where it writes and what it shows may change


def test_rerun_without_resume_keeps_the_interrupted_epochs(tiny_params):
    params, last = interrupted_run(tiny_params)
    before = last.read_bytes()
    result = CliRunner().invoke(app, cli_arguments(params))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"error: {run_paths(params)[1]}: an interrupted run left checkpoints/last.ckpt; continue it with "
        f"--resume, or start again with --overwrite"]
    assert last.read_bytes() == before
    seen = EpochsRun()
    train(dataclasses.replace(params, overwrite=True), callbacks=[seen])
    assert seen.epochs == [1, 2] and run_paths(params)[0].is_dir()


@pytest.mark.parametrize("postfix", ["../../../escaped", "/tmp/escaped-member", "..", "a\\..\\..\\b", ""])
def test_a_postfix_that_leaves_the_output_folder_is_refused(tiny_params, tmp_path, postfix):
    with pytest.raises(ConfigError, match=r"postfix: .* is not a folder name; the member must stay in <output>/best/"):
        tiny_params(postfix=postfix)
    params = tiny_params()
    result = CliRunner().invoke(app, [*cli_arguments(params), "--postfix", postfix])
    assert result.exit_code == 2 and "error: postfix:" in result.output, result.output
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escaped").exists()


def test_training_on_one_class_is_refused_naming_the_folder(tiny_params, synth_split, tmp_path):
    species = sorted(p for p in synth_split[0].iterdir() if p.is_dir())[0]
    single = tmp_path / "single"
    single.mkdir()
    (single / species.name).symlink_to(species, target_is_directory=True)
    params = tiny_params(train_dir=str(single), validation_dir=None, select="last")
    result = CliRunner().invoke(app, ["train", "--train-dir", str(single), "--output", params.output,
                                      "--preset", "tiny", "--epochs", "1", "--cache-dir", params.cache_dir,
                                      "--no-progress"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {single}: clips of one class only ({species.name}); a classifier needs at least "
                      "two class folders"], result.output
    assert not run_paths(params)[0].exists()
