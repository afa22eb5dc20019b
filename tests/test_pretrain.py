import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file, save_file
from transformers import ASTConfig, ASTModel
from typer.testing import CliRunner

from helpers import CrashAtEpoch, old_state
from mosquito_ast.augment import axis_masks, frequency_mask, spec_augment, time_mask
from mosquito_ast.checkpoints.encoder import config_to_dict, encoder_from_checkpoint
from mosquito_ast.cli import app
from mosquito_ast.config import ConfigError, PretrainParams
from mosquito_ast.data import DatasetError
from mosquito_ast.features import FeatureSettings
from mosquito_ast.models.encoder import build_encoder, encoder_config, resize_position_embeddings
from mosquito_ast.models.ssl import MaskedPatchAST, masked_patch_loss
from mosquito_ast.commands.train import train
from mosquito_ast.commands.pretrain import initial_encoder, pretrain
from mosquito_ast.data import discover_unlabelled


@pytest.fixture
def pretrain_params(tmp_path, synth_split, feature_cache_dir):
    """PretrainParams for a fast tiny run on the 20 generated validation clips (labels ignored)."""

    def make(**overrides) -> PretrainParams:
        values = dict(data=str(synth_split[1]), output=str(tmp_path / "pretrained"), preset="tiny", epochs=3,
                      learning_rate=1e-3, precision="32", progress=False, cache_dir=str(feature_cache_dir),
                      validation_fraction=0.2, seed=5, checkpoint_minutes=0)
        values.update(overrides)
        return PretrainParams(**values)

    return make


@pytest.fixture(scope="session")
def denoise_output(tmp_path_factory, synth_split, feature_cache_dir):
    """A 3-epoch denoise pretraining on 20 clips, with a linear probe on the generated training tree."""
    out = tmp_path_factory.mktemp("pretrain") / "denoise"
    return pretrain(PretrainParams(data=str(synth_split[1]), output=str(out), preset="tiny", epochs=3,
                                   learning_rate=1e-3, precision="32", progress=False, seed=5,
                                   validation_fraction=0.2, cache_dir=str(feature_cache_dir),
                                   probe=str(synth_split[0])))


def encoder_tensors(folder) -> dict[str, torch.Tensor]:
    state = load_file(str(folder / "model.safetensors"))
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


# augment

def test_mask_widths_scale_with_the_frame_count():
    generator = torch.Generator().manual_seed(0)
    for frames in (100, 1000):
        hidden = axis_masks(200, frames, max_fraction=0.2, count=1, generator=generator)
        widths = hidden.sum(dim=1)
        assert widths.max() <= 0.2 * frames and widths.max() >= 0.15 * frames
        runs = (hidden[:, 1:] & ~hidden[:, :-1]).sum(1) + hidden[:, 0]  # one contiguous span per row
        assert runs.max() <= 1


def test_time_and_frequency_masks_hit_their_own_axis_and_follow_the_generator():
    features = torch.ones(8, 100, 128)
    masked = time_mask(features, 0.3, generator=torch.Generator().manual_seed(1))
    zero_frames = (masked == 0).all(dim=2)
    assert ((masked == 0) == zero_frames.unsqueeze(-1)).all() and zero_frames.any()
    masked = frequency_mask(features, 0.3, generator=torch.Generator().manual_seed(1))
    zero_bins = (masked == 0).all(dim=1)
    assert ((masked == 0) == zero_bins.unsqueeze(1)).all() and zero_bins.any()
    first = spec_augment(features, 0.2, 0.2, 2, 2, torch.Generator().manual_seed(3))
    again = spec_augment(features, 0.2, 0.2, 2, 2, torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and not torch.equal(first, features)
    assert torch.equal(spec_augment(features, 0.0, 0.0), features)
    assert features.eq(1).all()  # the input is never changed in place


# masked-patch objective

def test_masked_patch_targets_are_what_the_patch_embedding_sees():
    model = MaskedPatchAST(build_encoder(encoder_config("tiny", FeatureSettings())), mask_ratio=0.5)
    features = torch.randn(2, 100, 128)
    targets = model.patch_targets(features)
    assert targets.shape == (2, model.num_patches, 256) and model.num_patches == 12 * 9
    projection = model.encoder.embeddings.patch_embeddings.projection
    expected = model.encoder.embeddings.patch_embeddings(features)
    torch.testing.assert_close(targets @ projection.weight.reshape(64, -1).T + projection.bias, expected,
                               atol=1e-4, rtol=1e-4)
    mask = model.random_mask(3, torch.Generator().manual_seed(0))
    assert mask.sum(dim=1).tolist() == [54, 54, 54]


def test_masked_patch_loss_ignores_visible_patches():
    model = MaskedPatchAST(build_encoder(encoder_config("tiny", FeatureSettings())))
    features = torch.randn(2, 100, 128)
    mask = model.random_mask(2, torch.Generator().manual_seed(0))
    predictions = model(features, mask).detach()
    targets = model.patch_targets(features)
    loss = masked_patch_loss(predictions, targets, mask)
    changed = torch.where(mask.unsqueeze(-1), predictions, predictions + 100 * torch.randn_like(predictions))
    assert masked_patch_loss(changed, targets, mask) == loss
    assert masked_patch_loss(torch.where(mask.unsqueeze(-1), targets, predictions), targets, mask) == 0


# runs

def test_denoise_output_folder_describes_itself(denoise_output, synth_split):
    config = json.loads((denoise_output / "config.json").read_text())
    assert config["format"] == "mosquito-ast-pretrained" and config["objective"]["name"] == "denoise"
    assert config["encoder"]["hidden_size"] == 64 and config["encoder"]["max_length"] == 100
    assert config["features"]["max_length"] == 100 and config["features"]["norm_std"] > 0
    assert config["pretraining"]["grad_accumulation"] == 2 and config["pretraining"]["learning_rate"] == 1e-3
    assert config["data"]["train_clips"] + config["data"]["validation_clips"] == 20
    assert 0 < config["data"]["validation_clips"] < 10  # whole recordings held out
    history = pd.read_csv(denoise_output / "history.csv")
    assert list(history.epoch) == [1, 2, 3] == [row["epoch"] for row in config["history"]]
    assert config["best_val_loss"] == pytest.approx(history.val_loss.min(), rel=1e-9)  # CSV rounds the last digit
    assert history.val_loss.iloc[-1] < history.val_loss.iloc[0]
    assert history.train_loss.iloc[-1] < history.train_loss.iloc[0]
    keys = load_file(str(denoise_output / "model.safetensors")).keys()
    assert {k.split(".")[0] for k in keys} == {"encoder", "projector", "decoder"}
    probe = json.loads((denoise_output / "probe.json").read_text())
    assert probe == config["probe"] and probe["groups"] == 12 and probe["clips"] == 60
    for side in ("pretrained", "random"):
        assert 0 <= probe[side]["balanced_accuracy"] <= 1 and probe[side]["folds"] == 5


def test_masked_patch_loss_decreases(pretrain_params):
    folder = pretrain(pretrain_params(objective="masked-patch", mask_ratio=0.4, epochs=2, grad_accumulation=1))
    config = json.loads((folder / "config.json").read_text())
    losses = [row["val_loss"] for row in config["history"]]
    assert losses[-1] < losses[0]
    assert config["objective"] == {"name": "masked-patch", "mask_ratio": 0.4}
    keys = load_file(str(folder / "model.safetensors")).keys()
    assert {k.split(".")[0] for k in keys} == {"encoder", "mask_token", "patch_head"}
    fresh = encoder_from_checkpoint(folder, FeatureSettings())  # heads dropped, as `train --ssl-checkpoint` does
    torch.testing.assert_close(fresh.layernorm.weight, encoder_tensors(folder)["layernorm.weight"])


class EncoderAtStart(Callback):
    def on_train_start(self, trainer, module) -> None:
        self.state = {k: v.detach().cpu().clone() for k, v in module.model.encoder.state_dict().items()}


def test_train_starts_from_the_pretrained_encoder(denoise_output, tiny_params, synth_split):
    seen = EncoderAtStart()
    small = dict(train_dir=str(synth_split[1]), validation_dir=str(synth_split[1]), epochs=1)
    train(tiny_params(ssl_checkpoint=str(denoise_output), **small), callbacks=[seen])
    pretrained = encoder_tensors(denoise_output)
    assert set(seen.state) == set(pretrained)
    for name, tensor in pretrained.items():
        torch.testing.assert_close(seen.state[name], tensor, msg=name)
    fresh = encoder_from_checkpoint(denoise_output, FeatureSettings(clip_seconds=2.0))
    torch.testing.assert_close(fresh.layers[1].mlp.fc2.weight, pretrained["layers.1.mlp.fc2.weight"])


def test_old_notebook_ssl_checkpoint_loads_in_train(tmp_path, tiny_params, synth_split):
    old = build_encoder(encoder_config("tiny", FeatureSettings(clip_seconds=10.24)))
    state = old_state(old)
    state.update({"projector.weight": torch.randn(128, 64), "projector.bias": torch.randn(128),
                  "decoder.0.weight": torch.randn(128, 128, 3), "decoder.2.weight": torch.randn(128, 128, 3)})
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"encoder": config_to_dict(old.config)}))
    seen = EncoderAtStart()
    small = dict(train_dir=str(synth_split[1]), validation_dir=str(synth_split[1]), epochs=1)
    train(tiny_params(ssl_checkpoint=str(tmp_path), output=str(tmp_path / "out"), **small), callbacks=[seen])
    torch.testing.assert_close(seen.state["layers.0.attention.q_proj.weight"], old.layers[0].attention.q_proj.weight)
    expected = resize_position_embeddings(old.embeddings.position_embeddings, old.config,
                                          encoder_config("tiny", FeatureSettings()))
    torch.testing.assert_close(seen.state["embeddings.position_embeddings"], expected)


def test_old_notebook_ssl_checkpoint_without_config_is_ast_base_at_1024_frames(tmp_path):
    started = time.perf_counter()
    torch.manual_seed(0)
    old = build_encoder(ASTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, max_length=1024))
    state = old_state(old)
    state.update({"projector.weight": torch.randn(128, 768), "decoder.0.weight": torch.randn(128, 128, 3)})
    save_file(state, str(tmp_path / "model.safetensors"))
    target = encoder_from_checkpoint(tmp_path, FeatureSettings())  # what `train --ssl-checkpoint` calls
    torch.testing.assert_close(target.layers[11].mlp.fc1.weight, old.layers[11].mlp.fc1.weight)
    assert target.embeddings.position_embeddings.shape[1] == 12 * 9 + 2
    print(f"AST-base old-format load: {time.perf_counter() - started:.1f} s")


def test_resume_repeats_the_uninterrupted_history(pretrain_params, tmp_path):
    whole = pretrain(pretrain_params(output=str(tmp_path / "whole"), epochs=2))
    parts = pretrain_params(output=str(tmp_path / "parts"), epochs=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(parts, callbacks=[CrashAtEpoch(1)])
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    resumed = pretrain(pretrain_params(output=str(tmp_path / "parts"), epochs=2, resume=True))
    expected = json.loads((whole / "config.json").read_text())["history"]
    got = json.loads((resumed / "config.json").read_text())["history"]
    assert [r["epoch"] for r in got] == [1, 2]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose([r[key] for r in got], [r[key] for r in expected], rtol=1e-5)
    for name, tensor in encoder_tensors(whole).items():
        torch.testing.assert_close(encoder_tensors(resumed)[name], tensor, rtol=1e-4, atol=1e-5)


def test_existing_output_needs_overwrite(denoise_output):
    with pytest.raises(FileExistsError, match="--overwrite"):
        pretrain(PretrainParams(data="unused", output=str(denoise_output)))


def test_init_from_a_hugging_face_folder_resizes_position_embeddings(tmp_path):
    reference = ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                   max_length=1024))
    reference.save_pretrained(tmp_path)
    encoder = initial_encoder(PretrainParams(data="unused", init=str(tmp_path)), FeatureSettings())
    assert encoder.config.hidden_size == 32 and encoder.config.max_length == 100
    torch.testing.assert_close(encoder.layers[0].mlp.fc1.weight, reference.layers[0].mlp.fc1.weight)
    assert encoder.embeddings.position_embeddings.shape == (1, 12 * 9 + 2, 32)


# data

def test_unlabelled_discovery_any_layout_and_manifest(tmp_path, synth_split):
    nested = sorted(synth_split[1].rglob("*.wav"))
    assert discover_unlabelled(synth_split[1]) == [str(p) for p in nested]
    (tmp_path / "local.wav").write_bytes(nested[0].read_bytes())
    manifest = tmp_path / "clips.csv"
    manifest.write_text(f"path,notes\nlocal.wav,x\n{nested[1]},y\n")
    assert discover_unlabelled(manifest) == [str(tmp_path / "local.wav"), str(nested[1])]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        discover_unlabelled(tmp_path / "empty")
    (tmp_path / "labels.csv").write_text("file,label\na.wav,x\n")
    with pytest.raises(DatasetError, match="'path' column"):
        discover_unlabelled(tmp_path / "labels.csv")


def test_bad_files_and_validation_dir(pretrain_params, synth_split, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(synth_split[1].rglob("*.wav"))[:10]:
        (data / path.name).write_bytes(path.read_bytes())
    (data / "broken.wav").write_bytes(b"not audio")
    params = dict(data=str(data), validation_dir=str(synth_split[1]), epochs=1)
    with pytest.raises(DatasetError, match="broken.wav"):
        pretrain(pretrain_params(**params))
    folder = pretrain(pretrain_params(**params, max_bad_fraction=0.2))
    config = json.loads((folder / "config.json").read_text())
    assert config["data"]["train_clips"] == 10 and config["data"]["validation_clips"] == 20


def test_cli_pretrain_with_config_file(tmp_path, synth_split, feature_cache_dir):
    config = tmp_path / "pretrain.yaml"
    config.write_text(f"data: {synth_split[1]}\nobjective: masked-patch\nepochs: 1\nprecision: '32'\n"
                      f"cache_dir: {feature_cache_dir}\nprogress: false\n")
    result = CliRunner().invoke(app, ["pretrain", "--config", str(config), "--output", str(tmp_path / "out"),
                                      "--validation-fraction", "0.25", "--seed", "3"])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["objective"]["name"] == "masked-patch" and saved["pretraining"]["seed"] == 3
    assert saved["data"]["validation_clips"] == 5


def test_parameter_errors():
    with pytest.raises(ConfigError, match="--data"):
        PretrainParams()
    with pytest.raises(ConfigError, match="objective"):
        PretrainParams(data="x", objective="contrastive")
    with pytest.raises(ConfigError, match="validation_fraction"):
        PretrainParams(data="x", validation_fraction=1.5)
    with pytest.raises(ConfigError, match="mask_ratio"):
        PretrainParams(data="x", mask_ratio=1.0)


def test_validation_hold_out_keeps_recordings_whole(tmp_path):
    """Clips of one recording on both sides would let the validation loss reward memorised recordings."""
    from mosquito_ast.commands.pretrain import hold_out_recordings, recording_groups

    paths = [str(tmp_path / f"session{s}" / f"clip{c}.wav") for s in range(6) for c in range(5)]
    train_index, val_index = hold_out_recordings(tmp_path, paths, "auto", 0.34, seed=0)
    groups = recording_groups(tmp_path, paths, "auto")
    assert {groups[i] for i in train_index}.isdisjoint({groups[i] for i in val_index})
    assert len(train_index) + len(val_index) == 30 and len(val_index) % 5 == 0 and len(val_index) > 0


def test_one_recording_falls_back_to_clips_with_a_warning(tmp_path, capsys):
    from mosquito_ast.commands.pretrain import hold_out_recordings

    paths = [str(tmp_path / "session" / f"clip{c}.wav") for c in range(10)]
    train_index, val_index = hold_out_recordings(tmp_path, paths, "auto", 0.2, seed=0)
    assert len(val_index) == 2 and len(train_index) == 8
    assert "one recording" in capsys.readouterr().out
