"""The spectrum-forest member: fitted by train, saved as ONNX, voted with by predict, export and the lite runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mosquito_ast.config import ExportParams, PredictParams
from mosquito_ast.data import DatasetError, discover
from mosquito_ast.inference.forest import (FOREST_FOLDER, GRAPH_NAME, find_forest_folders, load_forest, load_forests,
                                          real_frame_mean, vote_weights)
from mosquito_ast.inference.members import load_members, score_features
from mosquito_ast.commands.export import export
from mosquito_ast.features import FeatureSettings, compute_features, fbank
from mosquito_ast.commands.predict import predict_files
from mosquito_ast.training.spectrum_forest import fit_forest, save_forest
from mosquito_ast.commands.train import train
from mosquito_ast_lite.runtime import load_model
from mosquito_ast_lite.stream import recording_windows

SETTINGS = FeatureSettings(num_mel_bins=16, max_length=20)
# ONNX's own operators and TreeEnsembleClassifier (ai.onnx.ml): nothing that runs code when loaded
ALLOWED_OPS = {"ReduceMax", "ReduceMin", "Greater", "Cast", "Unsqueeze", "Mul", "ReduceSum", "Max", "Div",
               "TreeEnsembleClassifier", "Identity"}


def fbank_like(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(clips, 20 frames, 16 bins) with class-dependent levels, padding frames as the fbank writes them."""
    rng = np.random.default_rng(seed)
    targets = np.arange(count) % 3
    features = rng.normal(size=(count, 20, 16)).astype(np.float32) + targets[:, None, None]
    features[:, 15:18] = np.log(1.192092955078125e-07)  # zero padding: the log floor in every bin
    features[:, 18:] = 0  # frames past the clip's end
    return features, targets


def test_real_frame_mean_skips_padding_frames():
    features = np.array([[[1.0, 3.0], [-2.0, 2.0], [-15.9, -15.9], [0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(real_frame_mean(features), [[-0.5, 2.5]])


def test_saved_forest_matches_sklearn_and_holds_no_code(tmp_path):
    features, targets = fbank_like(45, 0)
    forest = fit_forest(features, targets, seed=3)
    folder = save_forest(tmp_path / FOREST_FOLDER, forest, ["a", "b", "c"], SETTINGS, 0.4, "digest", 3, {})
    graph = onnx.load(str(folder / GRAPH_NAME))
    assert {node.op_type for node in graph.graph.node} <= ALLOWED_OPS
    config = json.loads((folder / "config.json").read_text())
    assert config["vote_share"] == 0.4 and config["labels"] == ["a", "b", "c"] and config["forest"]["n_estimators"] == 500
    loaded = load_forest(folder)
    scored, _ = fbank_like(12, 1)
    expected = forest.predict_proba(real_frame_mean(scored).astype(np.float32))
    np.testing.assert_allclose(loaded.probabilities(scored, ["a", "b", "c"]), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.probabilities(scored, ["c", "a", "b"]), expected[:, [2, 0, 1]], atol=1e-5)


def test_a_forest_of_other_classes_is_refused(tmp_path):
    features, targets = fbank_like(30, 0)
    save_forest(tmp_path / FOREST_FOLDER, fit_forest(features, targets), ["a", "b", "w"], SETTINGS, 0.5, "d", 0, {})
    with pytest.raises(DatasetError, match=r"does not share the members' label map: extra classes \['w'\]"):
        load_forests(tmp_path, ["a", "b", "c"])


def test_vote_weights_give_the_forest_its_share_and_one_hard_vote():
    class Forest:
        share = 0.5

    soft, hard = vote_weights(np.array([0.25, 0.75]), [Forest()])
    np.testing.assert_allclose(soft, [0.125, 0.375, 0.5])
    np.testing.assert_allclose(hard, [1 / 6, 1 / 2, 1 / 3])


def test_train_fits_the_forest_once_per_training_set(tiny_params, capsys):
    first = train(tiny_params(postfix="a", spectrum_forest=True))
    folder = first.parent / FOREST_FOLDER
    written = (folder / GRAPH_NAME).stat().st_mtime_ns
    train(tiny_params(postfix="b", seed=8, spectrum_forest=True))
    assert (folder / GRAPH_NAME).stat().st_mtime_ns == written
    assert "spectrum forest of these training clips already at" in capsys.readouterr().out
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["train_clips"] == len(discover(tiny_params().train_dir))
    assert list(find_forest_folders(first.parent)) == [FOREST_FOLDER]


def test_no_spectrum_forest_fits_none(tiny_params):
    member = train(tiny_params(postfix="a", spectrum_forest=False))
    assert not (member.parent / FOREST_FOLDER).exists()


def test_predict_export_and_lite_runtime_vote_with_the_forest(tiny_member, synth_split, feature_cache_dir, tmp_path):
    best = tiny_member.parent
    members, forests = load_members(best), load_forests(best, load_members(best)[0].labels)
    assert [f.name for f in forests] == [FOREST_FOLDER] and forests[0].share == 0.25
    labels = members[0].labels
    path = sorted(synth_split[1].rglob("*.wav"))[0]
    params = PredictParams(inputs=[str(path)], models=[str(best)], progress=False, precision="32")
    settings = members[0].features
    windows = np.stack([fbank(wave, settings) for _, _, wave in recording_windows(
        path, settings.sample_rate, settings.clip_seconds, params.hop_seconds)])
    ast = score_features(members, {members[0].features.extraction_key(): windows}, "32")[0]
    expected = 0.75 * ast + 0.25 * forests[0].probabilities(windows, labels)
    table = predict_files(members, [path], params, forests).windows
    np.testing.assert_allclose(table[labels].to_numpy(), expected, atol=5e-5)  # written with 4 decimals

    result = export(ExportParams(models=[str(best)], output=str(tmp_path / "export"), progress=False,
                                 cache_dir=str(feature_cache_dir), check_clips=8, int8=True))
    assert result.info["spectrum_forests"][FOREST_FOLDER]["vote_share"] == 0.25
    assert result.info["self_check"]["fp32"]["max_probability_difference"] < 1e-4
    lite = load_model(tmp_path / "export", fp32=True)
    clips = sorted(str(p) for p in synth_split[1].rglob("*.wav"))[:6]
    clip_fbanks = compute_features(clips, members[0].features, progress=False).features
    reference = 0.75 * score_features(members, {members[0].features.extraction_key(): clip_fbanks}, "32")[0] \
        + 0.25 * forests[0].probabilities(clip_fbanks, labels)
    np.testing.assert_allclose(lite.probabilities(clip_fbanks), reference, atol=1e-4)
    assert (load_model(tmp_path / "export").probabilities(clip_fbanks).argmax(1) == reference.argmax(1)).mean() >= 0.8
