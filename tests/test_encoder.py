import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import ASTConfig, ASTModel

from helpers import old_state
from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.encoder import config_to_dict, encoder_from_checkpoint, load_pretrained_encoder
from mosquito_ast.features import FeatureSettings
from mosquito_ast.models.encoder import build_encoder, encoder_config, patch_grid, resize_position_embeddings


def tiny(max_length: int) -> ASTConfig:
    return encoder_config("tiny", FeatureSettings(max_length=max_length))


def test_presets_and_token_init():
    base = encoder_config("base", FeatureSettings())
    assert (base.hidden_size, base.num_hidden_layers, base.max_length) == (768, 12, 100)
    encoder = build_encoder(tiny(100))
    std = encoder.embeddings.position_embeddings.std().item()
    assert 0.01 < std < 0.03  # truncated normal 0.02, not transformers' zeros
    assert encoder.embeddings.cls_token.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown encoder preset"):
        encoder_config("huge", FeatureSettings())


def test_position_embeddings_keep_the_centre_when_shortened():
    source, target = tiny(1024), tiny(100)
    f, t = patch_grid(source)
    grid = torch.arange(f * t, dtype=torch.float32).reshape(f, t)
    position = torch.cat([torch.full((2,), -1.0), grid.flatten()]).reshape(1, -1, 1).repeat(1, 1, 4)
    resized = resize_position_embeddings(position, source, target)
    new_f, new_t = patch_grid(target)
    assert resized.shape == (1, 2 + new_f * new_t, 4)
    start = t // 2 - new_t // 2
    expected = grid[:, start:start + new_t].flatten()
    torch.testing.assert_close(resized[0, 2:, 0], expected)
    torch.testing.assert_close(resized[0, :2, 0], torch.tensor([-1.0, -1.0]))
    longer = resize_position_embeddings(resized, target, source)
    assert longer.shape == position.shape


def test_old_notebook_ssl_checkpoint_at_1024_frames_loads_into_a_100_frame_model(tmp_path):
    """Old SSL checkpoints hold transformers-4.x key names with encoder/projector/decoder prefixes."""
    old = build_encoder(tiny(1024))
    state = old_state(old)
    assert any(".attention.attention.query." in k for k in state)
    state["projector.weight"] = torch.zeros(128, 64)
    state["decoder.0.weight"] = torch.zeros(128, 128, 3)
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"encoder": config_to_dict(old.config)}))
    target = encoder_from_checkpoint(tmp_path, FeatureSettings(max_length=100))
    torch.testing.assert_close(target.layers[0].attention.q_proj.weight, old.layers[0].attention.q_proj.weight)
    torch.testing.assert_close(target.embeddings.cls_token, old.embeddings.cls_token)
    expected = resize_position_embeddings(old.embeddings.position_embeddings, old.config, target.config)
    torch.testing.assert_close(target.embeddings.position_embeddings, expected)


def test_hugging_face_folder_loads(tmp_path):
    reference = ASTModel(tiny(1024))
    reference.save_pretrained(tmp_path)
    target = encoder_from_checkpoint(tmp_path, FeatureSettings(max_length=100))
    torch.testing.assert_close(target.layernorm.weight, reference.layernorm.weight)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_pretrained_encoder(tmp_path / "missing")
    save_file({"projector.weight": torch.zeros(2, 2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="no 'encoder"):
        load_pretrained_encoder(tmp_path)


def test_a_hub_id_with_a_dot_is_not_taken_for_a_missing_file(monkeypatch):
    """The README's own hub id ends in `.4593`, which used to be refused as a missing file."""
    from transformers import ASTModel as HubModel

    asked = []
    monkeypatch.setattr(HubModel, "from_pretrained", classmethod(lambda cls, name, **kw: asked.append(name)))
    load_pretrained_encoder("MIT/ast-finetuned-audioset-10-10-0.4593")
    assert asked == ["MIT/ast-finetuned-audioset-10-10-0.4593"]
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_pretrained_encoder("encoder.safetensors")
