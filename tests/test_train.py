import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from lightning.pytorch.callbacks import Callback

from helpers import CrashAtEpoch
from mosquito_ast.checkpoints.classifier import load_member
from mosquito_ast.config import ConfigError, TrainParams
from mosquito_ast.data import DatasetError
from mosquito_ast.commands.train import balanced_class_weights, run_paths, train


def test_member_folder_describes_itself(tiny_member):
    config = json.loads((tiny_member / "config.json").read_text())
    assert tiny_member.parent.name == "best" and tiny_member.name == "tiny"
    assert config["labels"] == sorted(config["labels"]) and len(config["labels"]) == 4
    assert config["features"]["max_length"] == 100
    assert config["training"]["seed"] == 3 and config["training"]["optimizer"] == "adamw"
    assert [row["epoch"] for row in config["history"]] == [1, 2]
    assert config["selected"] == "last" and config["best_epoch"] == 2  # the recipe keeps the last epoch
    assert set(config["history"][-1]) >= {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "loss"}
    assert config["data"]["train_groups"] and config["data"]["validation_groups"]
    history = pd.read_csv(tiny_member.parent.parent / "runs" / "tiny" / "history.csv")
    assert list(history.epoch) == [1, 2]
    model, _ = load_member(tiny_member)
    assert model(torch.zeros(1, 100, 128)).shape == (1, 4)


def test_batch_size_schedule_is_applied(tiny_params):
    member = train(tiny_params(epochs=3, batch_sizes=[4, 16]))
    history = json.loads((member / "config.json").read_text())["history"]
    assert [row["batch_size"] for row in history] == [4, 16, 16]


def test_balanced_class_weights_make_each_class_weigh_alike():
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 2)
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0]))
    assert float((weights * torch.tensor([3.0, 1.0])).sum()) == pytest.approx(4.0)  # total weight = clips


def test_balanced_class_weight_is_recorded_and_changes_training(tiny_params, synth_split, tmp_path):
    clips = sorted(synth_split[0].rglob("*.wav"))
    first_class = clips[0].parent.name
    kept = [c for c in clips if c.parent.name != first_class] + [c for c in clips if c.parent.name == first_class][:3]
    manifest = tmp_path / "imbalanced.csv"
    pd.DataFrame({"path": [str(c) for c in kept], "label": [c.parent.name for c in kept]}).to_csv(manifest, index=False)
    plain = train(tiny_params(train_dir=str(manifest), output=str(tmp_path / "plain"), epochs=1, class_weight="none"))
    weighted = train(tiny_params(train_dir=str(manifest), output=str(tmp_path / "weighted"), epochs=1))
    config = json.loads((weighted / "config.json").read_text())
    assert config["training"]["class_weight"] == "balanced"
    plain_loss = json.loads((plain / "config.json").read_text())["history"][0]["loss"]
    assert config["history"][0]["loss"] != plain_loss


def test_patience_stops_when_the_metric_stops_improving(tiny_params):
    # a learning rate this small leaves every epoch's validation metrics where the first left them
    member = train(tiny_params(epochs=6, patience=2, learning_rate=1e-12, select="best"))
    config = json.loads((member / "config.json").read_text())
    assert [row["epoch"] for row in config["history"]] == [1, 2, 3]
    assert config["best_epoch"] == 1


def test_same_seed_same_metrics(tiny_params, tmp_path):
    first = train(tiny_params(output=str(tmp_path / "a")))
    second = train(tiny_params(output=str(tmp_path / "b")))
    history = [json.loads((m / "config.json").read_text())["history"] for m in (first, second)]
    for a, b in zip(*history):
        assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"]


def test_resume_reaches_the_same_result_as_an_uninterrupted_run(tiny_params, tmp_path):
    whole = train(tiny_params(output=str(tmp_path / "whole"), epochs=3))
    parts = tiny_params(output=str(tmp_path / "parts"), epochs=3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(parts, callbacks=[CrashAtEpoch(1)])
    assert not run_paths(parts)[0].exists()
    resumed = train(tiny_params(output=str(tmp_path / "parts"), epochs=3, resume=True))
    expected = json.loads((whole / "config.json").read_text())["history"]
    got = json.loads((resumed / "config.json").read_text())["history"]
    assert [r["epoch"] for r in got] == [1, 2, 3]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in expected], rtol=1e-5)


def test_existing_member_is_kept_without_overwrite(tiny_params):
    params = tiny_params(epochs=1)
    member = train(params)
    before = (member / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(params)
    assert (member / "model.safetensors").read_bytes() == before
    train(tiny_params(epochs=1, overwrite=True, seed=99))
    assert (member / "model.safetensors").read_bytes() != before


def test_bad_files_refuse_training_unless_tolerated(tiny_params, synth_split, tmp_path):
    import shutil

    train_dir = tmp_path / "train"
    shutil.copytree(synth_split[0], train_dir)
    bad = train_dir / "C. pipiens" / "broken.wav"
    bad.write_bytes(b"RIFF not really")
    sf.write(train_dir / "C. pipiens" / "silent.wav", np.zeros(1600), 16000)
    with pytest.raises(DatasetError, match="2 of 62 files are unusable") as error:
        train(tiny_params(train_dir=str(train_dir), epochs=1))
    assert "broken.wav" in str(error.value) and "silent.wav" in str(error.value)
    member = train(tiny_params(train_dir=str(train_dir), epochs=1, max_bad_fraction=0.05))
    skipped = json.loads((member / "config.json").read_text())["data"]["skipped_files"]
    assert len(skipped) == 2


def test_validation_class_unknown_to_training(tiny_params, synth_split, tmp_path):
    import shutil

    val_dir = tmp_path / "val"
    shutil.copytree(synth_split[1], val_dir)
    shutil.copytree(val_dir / "C. pipiens", val_dir / "Cs. annulata")
    with pytest.raises(DatasetError, match="Cs. annulata"):
        train(tiny_params(validation_dir=str(val_dir), epochs=1))


def test_parameters_validate_with_clear_messages(tmp_path):
    with pytest.raises(ConfigError, match="optimizer: 'adam' is not one of adamw, rmsprop, sgd"):
        TrainParams(train_dir="a", validation_dir="b", optimizer="adam")
    with pytest.raises(ConfigError, match="train-last-n-layers"):
        TrainParams(train_dir="a", validation_dir="b", freeze="last-n")
    config = tmp_path / "run.yaml"
    config.write_text("train_dir: a\nvalidation_dir: b\nbatch_sizes: [4, 8]\nlearning-rate: 0.001\n")
    params = TrainParams.from_sources(config, learning_rate=0.01)
    assert params.batch_sizes == [4, 8] and params.learning_rate == 0.01
    config.write_text("train_dir: a\nvalidation_dir: b\nlearning_rat: 1\n")
    with pytest.raises(ConfigError, match="unknown parameter.*learning_rat"):
        TrainParams.from_sources(config)


def test_cli_train_with_yaml_and_flags(synth_split, feature_cache_dir, tmp_path):
    from typer.testing import CliRunner

    from mosquito_ast.cli import app

    config = tmp_path / "run.yaml"
    config.write_text(f"train_dir: {synth_split[0]}\nvalidation_dir: {synth_split[1]}\nepochs: 3\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--epochs", "1", "--output",
                                      str(tmp_path / "o"), "--postfix", "cli", "--batch-sizes", "16",
                                      "--precision", "32", "--no-progress", "--cache-dir", str(feature_cache_dir)])
    assert result.exit_code == 0, result.output
    config_json = json.loads((tmp_path / "o" / "best" / "cli" / "config.json").read_text())
    assert config_json["training"]["epochs"] == 1 and config_json["training"]["batch_sizes"] == [16]
    bad = CliRunner().invoke(app, ["train", "--config", str(config), "--optimizer", "adam"])
    assert bad.exit_code != 0 and "adam" in bad.output


def test_wingbeats_tiny_fine_tune_and_reload(wingbeats, tmp_path, feature_cache_dir):
    """Real 8 kHz, 0.625 s recordings: resampled, padded to 1 s, trained 2 epochs, reloaded."""
    params = TrainParams(train_dir=str(wingbeats), validation_dir=str(wingbeats), output=str(tmp_path),
                         postfix="wb", preset="tiny", epochs=2, batch_sizes=[32], learning_rate=1e-3,
                         norm_stats="dataset", precision="32", progress=False, cache_dir=str(feature_cache_dir))
    member = train(params)
    model, config = load_member(member)
    assert len(config["labels"]) == 6 and config["data"]["train_clips"] == 206
    assert config["features"]["norm_mean"] != pytest.approx(-4.2677393)
    assert run_paths(params)[0] == member
    assert model(torch.zeros(2, 100, 128)).shape == (2, 6)


def test_select_last_keeps_the_final_epoch_and_needs_no_validation(tiny_params):
    """Honest selection: the member is the last epoch, whatever the validation set says; without a
    validation set the history keeps the training loss."""
    member = train(tiny_params(select="last", validation_dir=None, epochs=3, postfix="last"))
    config = json.loads((member / "config.json").read_text())
    assert config["selected"] == "last" and config["best_epoch"] == 3
    assert [row["epoch"] for row in config["history"]] == [1, 2, 3]
    assert all(math.isfinite(row["train_loss"]) for row in config["history"])
    assert config["data"]["validation_clips"] == 0

    reported = train(tiny_params(select="last", epochs=2, postfix="reported"))
    config = json.loads((reported / "config.json").read_text())
    assert config["best_epoch"] == 2 and "balanced_accuracy" in config["history"][-1]


def test_validation_set_is_required_only_to_pick_the_best_epoch(tiny_params):
    with pytest.raises(ConfigError, match="--select last"):
        tiny_params(validation_dir=None, select="best")
    with pytest.raises(ConfigError, match="patience"):
        tiny_params(select="last", patience=3)


def test_a_checkpoint_of_ours_brings_its_normalization(tiny_member, tiny_params, synth_split, tmp_path, capsys):
    """Fine-tuning from a member (as from a `pretrain` output) normalizes as the encoder learned, not with
    the new training set's stats; overriding that is allowed, with a loud warning."""
    stored = json.loads((tiny_member / "config.json").read_text())["features"]
    clips = sorted(synth_split[0].rglob("*.wav"))[::2]
    manifest = tmp_path / "half.csv"
    pd.DataFrame({"path": [str(c) for c in clips], "label": [c.parent.name for c in clips]}).to_csv(manifest, index=False)
    inherited = train(tiny_params(train_dir=str(manifest), ssl_checkpoint=str(tiny_member), output=str(tmp_path / "a"),
                                  epochs=1))
    features = json.loads((inherited / "config.json").read_text())["features"]
    assert (features["norm_mean"], features["norm_std"]) == (stored["norm_mean"], stored["norm_std"])
    out = capsys.readouterr()
    assert "checkpoint  norm_stats checkpoint (mean" in out.out and "warning" not in out.err

    overridden = train(tiny_params(train_dir=str(manifest), ssl_checkpoint=str(tiny_member),
                                   output=str(tmp_path / "b"), epochs=1, norm_stats="dataset"))
    assert json.loads((overridden / "config.json").read_text())["features"]["norm_mean"] != stored["norm_mean"]
    assert "warning: --norm-stats dataset replaces the normalization" in capsys.readouterr().err


def test_a_run_prints_only_its_own_lines_with_epochs_counted_from_one(synth_split, feature_cache_dir, tmp_path):
    """No Lightning banner (GPU/TPU available, tips), no transformers bar per loaded model, one line of
    metrics per epoch, epochs counted from 1 (as the history and the member's config count them)."""
    import subprocess
    import sys

    from transformers import ASTConfig, ASTModel

    from mosquito_ast.models.encoder import PRESETS

    hugging_face = tmp_path / "hf"
    ASTModel(ASTConfig(**PRESETS["tiny"], max_length=100)).save_pretrained(hugging_face)
    command = [sys.executable, "-m", "mosquito_ast", "train", "--train-dir", str(synth_split[0]), "--ssl-checkpoint",
               str(hugging_face), "--output", str(tmp_path / "runs"), "--epochs", "2", "--precision", "32",
               "--cache-dir", str(feature_cache_dir)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    lines = (result.stdout + result.stderr).replace("\r", "\n").splitlines()
    for banned in ("GPU available", "TPU available", "litlogger", "Tip", "Loading weights", "Writing model"):
        assert not [line for line in lines if banned in line], (banned, result.stdout + result.stderr)
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    assert "train_loss" in epoch_lines[0]
    assert "last epoch 2:" in result.stdout and "epoch 0" not in result.stdout + result.stderr


class StepWeights(Callback):
    """The model's weights after every optimizer step from epoch `from_epoch` (1-based) on."""

    def __init__(self, from_epoch: int) -> None:
        self.from_epoch = from_epoch
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        if trainer.current_epoch + 1 >= self.from_epoch:
            self.steps.append({k: v.detach().clone() for k, v in module.model.named_parameters()})


def test_averaged_weights_are_the_mean_of_every_step_from_the_epoch_asked(tiny_params):
    seen = StepWeights(from_epoch=2)
    member = train(tiny_params(epochs=3, average_from_epoch=2, postfix="averaged"), callbacks=[seen])
    model, config = load_member(member)
    exported = dict(model.named_parameters())
    for name, tensor in seen.steps[0].items():
        expected = torch.stack([step[name] for step in seen.steps]).mean(dim=0)
        torch.testing.assert_close(exported[name], expected, rtol=1e-5, atol=1e-6)
    assert config["best_metric"]["value"] is None  # no epoch's validation scored the average
    assert config["training"]["average_from_epoch"] == 2


def test_an_interrupted_averaging_run_resumes_the_same_average(tiny_params, tmp_path):
    whole = train(tiny_params(output=str(tmp_path / "whole"), epochs=3, average_from_epoch=2))
    parts = tiny_params(output=str(tmp_path / "parts"), epochs=3, average_from_epoch=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(parts, callbacks=[CrashAtEpoch(2)])  # after epoch 2: half of the average is in last.ckpt
    resumed = train(tiny_params(output=str(tmp_path / "parts"), epochs=3, average_from_epoch=2, resume=True))
    for (name, expected), (_, got) in zip(load_member(whole)[0].named_parameters(),
                                          load_member(resumed)[0].named_parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("overrides, message", [
    (dict(average_from_epoch=2, select="best"), "needs --select last"),
    (dict(average_from_epoch=5, epochs=3), "an epoch of the run"),
    (dict(average_from_epoch=-1), "an epoch of the run"),
])
def test_averaging_options_are_checked(tiny_params, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_params(**overrides)


def time_rows(model) -> torch.Tensor:
    """The patch position embeddings as (frequency rows, time steps, hidden)."""
    from mosquito_ast.models.encoder import patch_grid

    frequency, time = patch_grid(model.encoder.config)
    return model.encoder.embeddings.position_embeddings[0, 2:].reshape(frequency, time, -1)


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_frequency_positions_stay_equal_over_time_and_load_as_any_member(tiny_params, tmp_path, precision):
    """--positions frequency: each frequency row's embedding is the same at every time step after training
    (exactly: AdamW and clipping act elementwise on equal values and equal gradients), differs between
    rows, and the member is an ordinary AST member."""
    tied = load_member(train(tiny_params(positions="frequency", postfix="tied", precision=precision)))
    free = load_member(train(tiny_params(postfix="free", precision=precision)))
    rows = time_rows(tied[0])
    assert torch.equal(rows, rows[:, :1].expand_as(rows))
    assert not torch.allclose(rows[0, 0], rows[1, 0])
    assert tied[1]["training"]["positions"] == "frequency"
    free_rows = time_rows(free[0])
    assert not torch.allclose(free_rows, free_rows[:, :1].expand_as(free_rows))
