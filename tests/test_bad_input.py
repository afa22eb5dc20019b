"""Bad input and faults: each case gives a one-line error naming the problem, or is recovered from.
A corpus that grows with every defect found (issue 18)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mosquito_ast_lite.audio import load_clip
from mosquito_ast.checkpoints import CONFIG_NAME, CheckpointError, read_config
from mosquito_ast.cli import app
from mosquito_ast.features import FeatureCache, FeatureSettings, compute_features, fbank


def test_truncated_member_config_is_named(tiny_member, tmp_path):
    member = tmp_path / "member"
    shutil.copytree(tiny_member, member)
    text = (member / CONFIG_NAME).read_text()
    (member / CONFIG_NAME).write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        read_config(member)
    result = CliRunner().invoke(app, ["predict", "--models", str(member), str(tmp_path), "--output",
                                      str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "not valid JSON" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["empty", "wrong shape", "not finite", "garbage"])
def test_damaged_cache_entries_are_computed_again(synth_split, tmp_path, damage):
    path = sorted(synth_split[0].rglob("*.wav"))[0]
    settings = FeatureSettings()
    cache = FeatureCache(tmp_path / "cache")
    entry = cache.entry(path, settings)
    entry.parent.mkdir(parents=True)
    if damage == "empty":
        entry.write_bytes(b"")
    elif damage == "garbage":
        entry.write_bytes(b"not a numpy file")
    else:
        bad = np.zeros((7, 3), np.float32) if damage == "wrong shape" else np.full((100, 128), np.nan, np.float32)
        np.save(entry, bad)
    table = compute_features([path], settings, cache, progress=False)
    expected = fbank(load_clip(path, 16000, 1.0), settings)
    assert not table.bad
    np.testing.assert_allclose(table.features[0], expected)
    np.testing.assert_allclose(np.load(entry), expected)  # the entry is repaired


def test_predict_refuses_members_of_different_clip_lengths(tiny_member, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_member, models / "a")
    shutil.copytree(tiny_member, models / "b")
    config = json.loads((models / "b" / CONFIG_NAME).read_text())
    config["features"].update(clip_seconds=0.625, max_length=62)
    (models / "b" / CONFIG_NAME).write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["predict", "--models", str(models), str(tmp_path), "--output",
                                      str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 2 and "clips of different lengths (a: 1 s, b: 0.625 s)" in result.output


def test_predict_refuses_an_output_it_cannot_create_before_predicting(tiny_member, synth_split, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["predict", "--models", str(tiny_member), str(synth_split[1]),
                                      "--output", str(blocker / "out" / "p.csv"), "--no-progress"])
    assert result.exit_code == 2 and "cannot write the output here" in result.output
    assert "files:" not in result.output  # refused before any file was predicted


@pytest.mark.parametrize("command", ["train", "evaluate", "pretrain"])
def test_every_long_command_refuses_an_unwritable_output_before_working(command, tiny_member, synth_split, tmp_path):
    """train used to fail only after its first epoch; a read-only mount or a path under a file alike."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    output = str(blocker / "out")
    arguments = {"train": ["--train-dir", str(synth_split[0]), "--output", output, "--epochs", "1"],
                 "evaluate": ["--models", str(tiny_member), "--data", str(synth_split[1]), "--output", output],
                 "pretrain": ["--data", str(synth_split[1]), "--output", output, "--epochs", "1"]}[command]
    result = CliRunner().invoke(app, [command, *arguments, "--no-progress"])
    assert result.exit_code == 2 and "cannot write the output here" in result.output, result.output
    assert "epoch 1" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("fault", ["cache path is a file", "disk full"])
def test_an_unwritable_cache_costs_only_the_caching(synth_split, tmp_path, monkeypatch, capsys, fault):
    """A read-only or full cache folder used to make every audio file 'unreadable'."""
    import errno

    paths = sorted(synth_split[0].rglob("*.wav"))[:3]
    if fault == "cache path is a file":
        (tmp_path / "occupied").write_text("")
        cache = FeatureCache(tmp_path / "occupied" / "cache")
    else:
        cache = FeatureCache(tmp_path / "cache")

        def full(self, entry, features):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(FeatureCache, "store", full)
    table = compute_features(paths, FeatureSettings(), cache, progress=False)
    assert not table.bad and table.features.shape == (3, 100, 128)
    warning = capsys.readouterr().err
    assert "feature cache not written for 3 of 3 files" in warning


def _tone_wav(path, seconds=1.0, rate=16000):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 500 * t), rate, subtype="PCM_16")
    return path


def test_a_class_folder_without_audio_is_reported(tmp_path, capsys):
    from mosquito_ast.data import discover

    _tone_wav(tmp_path / "data" / "aegypti" / "a.wav")
    (tmp_path / "data" / "albopictus").mkdir()
    (tmp_path / "data" / "albopictus" / "notes.txt").write_text("no audio here")
    samples = discover(tmp_path / "data")
    assert {s.label for s in samples} == {"aegypti"}
    assert "albopictus" in capsys.readouterr().err


def test_a_class_whose_files_are_all_skipped_is_reported(tmp_path, capsys):
    from mosquito_ast.config import TrainParams
    from mosquito_ast.training.datasets import feature_settings, load_clip_set

    for index in range(3):
        _tone_wav(tmp_path / "data" / "aegypti" / f"a{index}.wav")
    (tmp_path / "data" / "albopictus").mkdir()
    (tmp_path / "data" / "albopictus" / "broken.wav").write_bytes(b"RIFF not audio")
    params = TrainParams(train_dir=str(tmp_path / "data"), output=str(tmp_path / "out"), max_bad_fraction=0.5,
                         no_cache=True, progress=False)
    clips = load_clip_set(params.train_dir, params, feature_settings(params), progress=False)
    assert len(clips.samples) == 3
    captured = capsys.readouterr()
    assert "skipped 1 of 4" in captured.out and "class(es) albopictus" in captured.err


def test_a_wav_cut_short_is_reported_and_used(tmp_path, capsys):
    from mosquito_ast_lite.audio import cut_short

    whole = _tone_wav(tmp_path / "whole.wav")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:2000])
    assert cut_short(whole) is None and "declares 32000 bytes" in cut_short(cut)
    table = compute_features([whole, cut], FeatureSettings(), None, progress=False)
    assert not table.bad and len(table.paths) == 2
    warning = capsys.readouterr().err
    assert "1 of 2 WAV files are cut short" in warning and str(cut) in warning


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    """Two runs with one --output and --postfix interleaved their epochs in one best-candidate folder."""
    import subprocess
    import sys

    from mosquito_ast.training.run import exclusive_run

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from mosquito_ast.training.run import exclusive_run\n"
        f"with exclusive_run(Path({str(tmp_path / 'run')!r})):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match="another run with this --output and --postfix"):
            with exclusive_run(tmp_path / "run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive_run(tmp_path / "run"):  # a killed holder leaves no lock behind
        pass
