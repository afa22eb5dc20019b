"""Bad input and faults: each case gives a one-line error naming the problem, or is recovered from.
A corpus that grows with every defect found (issue 18)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from mosquito_ast.audio import load_clip
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
    assert result.exit_code == 2 and "cannot create the output folder" in result.output
    assert "files:" not in result.output  # refused before any file was predicted
