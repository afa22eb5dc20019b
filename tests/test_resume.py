"""`--resume` really resumes: `last.ckpt` after every epoch (--checkpoint-minutes 0), a killed run continues at the next epoch
with the weights an uninterrupted run reaches, and a damaged checkpoint is refused by name."""

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import CrashAtEpoch
from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.cli import app
from mosquito_ast.commands.train import run_paths, train
from mosquito_ast.training.callbacks import FileCheckpointIO
from mosquito_ast.training.run import resume_checkpoint
from mosquito_ast.commands.pretrain import pretrain

KILL_AT_SECOND_EPOCH = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    from lightning.pytorch.callbacks import Callback
    from mosquito_ast.config import TrainParams
    from mosquito_ast.commands.train import train

    class KillDashNine(Callback):
        def on_train_epoch_start(self, trainer, module):
            if trainer.current_epoch == 1:  # epoch 1 is finished, epoch 2 not begun: as `kill -9` would stop it
                os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(2)
    train(TrainParams(**json.loads(sys.argv[1])), callbacks=[KillDashNine()])
""")


class EpochsRun(Callback):
    """Records the (1-based) epochs that actually train."""

    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.epochs.append(trainer.current_epoch + 1)


def weights(member) -> dict[str, torch.Tensor]:
    return load_file(str(member / "model.safetensors"))


def test_killed_run_resumes_at_the_next_epoch_with_the_same_weights(tiny_params, tmp_path):
    params = tiny_params(output=str(tmp_path / "parts"), epochs=3)
    child = subprocess.run([sys.executable, "-c", KILL_AT_SECOND_EPOCH, json.dumps(dataclasses.asdict(params))],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr[-2000:]
    member_dir, run_dir = run_paths(params)
    assert not member_dir.exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert [row["epoch"] for row in checkpoint["history"]] == [1]
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))  # no leftover of the atomic write

    seen = EpochsRun()
    resumed = train(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [2, 3]  # epoch 1 is not trained again
    history = json.loads((resumed / "config.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[0] == checkpoint["history"][0]  # the killed run's row, timing included

    whole_params = tiny_params(output=str(tmp_path / "whole"), epochs=3)
    whole = train(whole_params)
    expected = json.loads((whole / "config.json").read_text())
    for got, want in zip(history, expected["history"]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["accuracy"] == want["accuracy"]
    assert json.loads((resumed / "config.json").read_text())["best_epoch"] == expected["best_epoch"]
    for name, tensor in weights(whole).items():
        torch.testing.assert_close(weights(resumed)[name], tensor, rtol=1e-4, atol=1e-5)
    for finished in (params, whole_params):  # a finished run keeps no checkpoint to resume from
        assert not (run_paths(finished)[1] / "checkpoints" / "last.ckpt").exists()
    again = EpochsRun()
    train(dataclasses.replace(params, resume=True), callbacks=[again])
    assert again.epochs == []  # --resume on a finished run: nothing to do


def test_checkpoints_are_written_once_the_interval_has_passed(tiny_params, tmp_path):
    """Short epochs do not pay a full checkpoint each: with 60 minutes between checkpoints a run stopped
    after 2 quick epochs has none, so --resume starts again at epoch 1."""
    params = tiny_params(output=str(tmp_path / "sparse"), epochs=3, checkpoint_minutes=60)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(params, callbacks=[CrashAtEpoch(2)])
    assert not (run_paths(params)[1] / "checkpoints" / "last.ckpt").exists()
    seen = EpochsRun()
    train(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [1, 2, 3]


def test_pretrain_resumes_at_the_next_epoch(tmp_path, synth_split, feature_cache_dir):
    from mosquito_ast.config import PretrainParams

    params = PretrainParams(data=str(synth_split[1]), output=str(tmp_path / "pre"), preset="tiny", epochs=2,
                            learning_rate=1e-3, precision="32", progress=False, cache_dir=str(feature_cache_dir),
                            validation_fraction=0.2, seed=5, checkpoint_minutes=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(params, callbacks=[CrashAtEpoch(1)])
    assert (tmp_path / "pre" / "run" / "checkpoints" / "last.ckpt").is_file()
    seen = EpochsRun()
    output = pretrain(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [2]
    assert [row["epoch"] for row in json.loads((output / "config.json").read_text())["history"]] == [1, 2]


def test_damaged_checkpoint_is_refused_by_name(tiny_params, tmp_path):
    whole = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.arange(5000.0)}}, whole)
    data = whole.read_bytes()
    flipped = tmp_path / "flipped.ckpt"
    flipped.write_bytes(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:])
    assert resume_checkpoint(whole) == whole
    assert resume_checkpoint(tmp_path / "absent.ckpt") is None
    with pytest.raises(CheckpointError, match="flipped.ckpt: damaged checkpoint"):
        resume_checkpoint(flipped)

    params = tiny_params(epochs=1, resume=True)
    last = run_paths(params)[1] / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(data[:len(data) // 2])  # torn, as a full disk leaves it
    with pytest.raises(CheckpointError, match="last.ckpt: damaged checkpoint"):
        train(params)
    result = CliRunner().invoke(app, ["train", "--train-dir", params.train_dir, "--validation-dir",
                                      params.validation_dir, "--output", params.output, "--preset", "tiny",
                                      "--epochs", "1", "--cache-dir", params.cache_dir, "--no-progress", "--resume"])
    assert result.exit_code == 2
    assert "last.ckpt: damaged checkpoint" in result.output and "Traceback" not in result.output
    assert last.read_bytes() == data[:len(data) // 2]  # kept for the user to decide


def test_a_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    writer = FileCheckpointIO()
    writer.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, last)
    with pytest.raises(Exception):  # the write fails, as on a full disk
        writer.save_checkpoint({"epoch": 2, "w": torch.zeros(3), "unpicklable": lambda: None}, last)
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]


class CtrlC(Callback):
    def on_train_epoch_start(self, trainer, module) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_ctrl_c_says_how_to_resume_and_leaves_ctrl_c_working(tiny_params, monkeypatch):
    """Lightning turns Ctrl+C into sys.exit(1) and ignores SIGINT from then on."""
    params = tiny_params(epochs=3)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match=f"training of {params.postfix} interrupted; continue it with --resume"):
        train(params, callbacks=[CtrlC()])
    assert signal.getsignal(signal.SIGINT) is before
    seen = EpochsRun()
    train(dataclasses.replace(params, resume=True), callbacks=[seen])
    assert seen.epochs == [2, 3]

    def interrupted(params):
        raise KeyboardInterrupt("training of x interrupted; continue it with --resume")

    monkeypatch.setattr("mosquito_ast.commands.train.train", interrupted)
    result = CliRunner().invoke(app, ["train", "--train-dir", params.train_dir, "--output", params.output])
    assert result.exit_code == 130
    assert "training of x interrupted; continue it with --resume" in result.output
