"""Mechanisms aimed at recording sessions never heard (issue 25): the spectrum token, layer drop and
session mixup; trained, saved, loaded, exported to ONNX, and refused where they cannot apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mosquito_ast.augment import session_mixup, session_partners
from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import load_member, save_member
from mosquito_ast.checkpoints.transformers_format import write_transformers_folder
from mosquito_ast.config import ConfigError, DistillParams, ExportParams, TrainParams
from mosquito_ast.commands.export import ONNX_NAME, export
from mosquito_ast.features import FeatureSettings
from mosquito_ast.models.classifier import ASTClassifier, clip_spectrum
from mosquito_ast.models.encoder import build_encoder, encoder_config
from mosquito_ast.inference.onnx_graphs import onnx_session, run_onnx
from mosquito_ast.commands.train import augment_batch, train

LABELS = ["a", "b", "c"]


def tiny_model(spectrum_token: str = "none", layer_drop: float = 0.0, seed: int = 0) -> ASTClassifier:
    torch.manual_seed(seed)
    return ASTClassifier(build_encoder(encoder_config("tiny", FeatureSettings())), LABELS, spectrum_token, layer_drop)


def padded_fbank(clips: int = 4, real_frames: int = 62) -> torch.Tensor:
    """Normalized fbank whose frames past `real_frames` are constant, as a 0.625 s clip padded to 1 s."""
    features = torch.randn(clips, 100, 128, generator=torch.Generator().manual_seed(1))
    features[:, real_frames:] = -2.5
    return features


def test_clip_spectrum_averages_the_real_frames_only():
    features = torch.zeros(2, 4, 3)
    features[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    features[0, 1] = torch.tensor([3.0, 4.0, 5.0])
    features[0, 2:] = -7.0  # padding: every bin alike
    features[1] = 5.0  # a clip without one real frame
    assert torch.equal(clip_spectrum(features), torch.tensor([[2.0, 3.0, 4.0], [0.0, 0.0, 0.0]]))


def test_without_options_the_member_computes_what_the_ast_computes():
    model = tiny_model().eval()
    features = padded_fbank()
    expected = model.classifier(model.encoder(input_values=features).last_hidden_state.mean(dim=1))
    assert torch.equal(model(features), expected)


@pytest.mark.parametrize("mode, width", [("token", 64), ("head", 128)])
def test_spectrum_token_changes_the_prediction_with_the_spectrum(mode, width):
    model = tiny_model(mode).eval()
    assert model.classifier.in_features == width and model.spectrum.in_features == 128
    features = padded_fbank()
    shifted = features.clone()
    shifted[:, :62, :10] += 1.0  # more energy in the lowest bands, on the real frames
    assert not torch.allclose(model(features), model(shifted))
    if mode == "head":  # the pooled tokens, then the embedded mean of the 62 real frames
        expected = model.spectrum(features[:, :62].mean(dim=1))
        assert torch.allclose(model.embed(features)[:, 64:], expected, atol=1e-6)


def test_layer_drop_skips_layers_in_training_only():
    model = tiny_model(layer_drop=0.5)
    calls = []
    for layer in model.encoder.layers:
        layer.register_forward_hook(lambda *_: calls.append(1))
    torch.manual_seed(3)
    features = padded_fbank(2)
    for _ in range(100):
        model(features)
    assert 60 <= len(calls) <= 140  # 2 layers x 100 batches, each kept with probability 0.5
    calls.clear()
    model.eval()
    reference = tiny_model().eval()
    assert torch.equal(model(features), reference(features)) and len(calls) == 2


def test_session_partners_are_of_the_same_class_from_another_session():
    classes, groups = torch.tensor([0, 0, 1, 1, 0]), torch.tensor([0, 1, 0, 0, 0])
    torch.manual_seed(0)
    for _ in range(20):
        partners = session_partners(classes, groups).tolist()
        assert partners[0] == 1 and partners[4] == 1 and partners[1] in (0, 4)
        assert partners[2:4] == [2, 3]  # class 1 holds one session only: no partner


def test_session_mixup_blends_each_clip_with_its_partner():
    features = torch.stack([torch.full((5, 2), float(i)) for i in range(4)])
    classes, groups = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 0, 0])
    torch.manual_seed(1)
    mixed = session_mixup(features, classes, groups, 0.4)
    assert torch.equal(mixed[2:], features[2:])
    weight = mixed[0, 0, 0]  # clip 0 (value 0) blended with clip 1 (value 1): 1 - its weight
    assert 0 < weight < 1 and torch.allclose(mixed[0], torch.full((5, 2), float(weight)))
    params = TrainParams(train_dir="a", preset="tiny", augment="session-mixup")
    out, soft = augment_batch(features, classes, 3, params, FeatureSettings(), groups)
    assert torch.equal(soft, torch.nn.functional.one_hot(classes, 3).float())  # both clips of one class
    with pytest.raises(ValueError, match="recording"):
        augment_batch(features, classes, 3, params, FeatureSettings())


@pytest.mark.parametrize("mode", ["token", "head"])
def test_saved_member_loads_and_exports_to_onnx_alike(mode, tmp_path, feature_cache_dir):
    model = tiny_model(mode).eval()
    features = FeatureSettings(norm_mean=-5.0, norm_std=2.0)
    save_member(model, tmp_path / "member", features, {})
    loaded, config = load_member(tmp_path / "member")
    assert config["head"]["spectrum_token"] == mode
    fbank = padded_fbank() * 4.0 - 5.0  # un-normalized
    normalized = (fbank + 5.0) / 4.0
    assert torch.equal(loaded(normalized), model(normalized))

    export(ExportParams(models=[str(tmp_path / "member")], output=str(tmp_path / "onnx"), check_clips=4,
                        cache_dir=str(feature_cache_dir), progress=False))
    expected = model(normalized).softmax(dim=-1).detach().numpy()
    got = run_onnx(onnx_session(tmp_path / "onnx" / ONNX_NAME), fbank.numpy())
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_trained_member_records_its_options(tiny_params, synth_split):
    params = tiny_params(spectrum_token="head", layer_drop=0.5, augment="session-mixup,mask", epochs=1,
                         select="last")
    member = train(params)
    config = json.loads((member / "config.json").read_text())
    assert config["head"]["spectrum_token"] == "head"
    assert config["training"]["layer_drop"] == 0.5 and config["training"]["augment"] == ["session-mixup", "mask"]
    model, _ = load_member(member)
    assert model.spectrum_token == "head" and model.layer_drop == 0.0  # layer drop is for training only


def test_refusals(tmp_path):
    with pytest.raises(ConfigError, match="layer_drop"):
        TrainParams(train_dir="a", layer_drop=1.0)
    with pytest.raises(ConfigError, match="spectrum_token"):
        TrainParams(train_dir="a", spectrum_token="tail")
    with pytest.raises(ConfigError, match="session-mixup"):
        DistillParams(models=["m"], data="d", output="o", augment="session-mixup")
    model = tiny_model("token").eval()
    with pytest.raises(ValueError, match="spectrum token"):
        write_transformers_folder(model, FeatureSettings(), tmp_path / "hf")
    save_member(model, tmp_path / "member", FeatureSettings(), {})
    config = json.loads((tmp_path / "member" / "config.json").read_text())
    config["head"]["spectrum_token"] = "none"  # the weights hold one; the config no longer says so
    (tmp_path / "member" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="classifier weights .*spectrum token none"):
        load_member(tmp_path / "member")
