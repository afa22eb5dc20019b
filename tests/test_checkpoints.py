"""Member folders written before checkpoints/ existed still load, and predict as they did."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import ASTConfig, ASTModel

from mosquito_ast.checkpoints.classifier import load_member
from mosquito_ast.inference.members import load_members
from mosquito_ast.features import FeatureSettings

LABELS = ["Ae. aegypti", "An. gambiae", "C. pipiens"]
# The encoder and feature fields exactly as the previous version's save_member wrote them (no
# window_ms/hop_ms/max_frequency: those feature settings came later and must take their defaults).
ENCODER = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
           "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
           "initializer_range": 0.02, "layer_norm_eps": 1e-12, "patch_size": 16, "qkv_bias": True,
           "frequency_stride": 10, "time_stride": 10, "max_length": 100, "num_mel_bins": 128}
FEATURES = {"sample_rate": 16000, "clip_seconds": 1.0, "num_mel_bins": 128, "max_length": 100,
            "norm_mean": -4.2677393, "norm_std": 4.5689974}


@pytest.fixture
def previous_member(tmp_path) -> tuple[Path, ASTModel, torch.nn.Linear]:
    """A member folder byte for byte as the previous version wrote it: `model.safetensors` with keys
    `encoder.*`/`classifier.*` in float32, `config.json` by json.dumps(indent=2, default=str)."""
    torch.manual_seed(3)
    encoder = ASTModel(ASTConfig(**ENCODER)).eval()
    torch.nn.init.normal_(encoder.embeddings.position_embeddings, std=0.02)  # not transformers' zeros
    head = torch.nn.Linear(ENCODER["hidden_size"], len(LABELS))
    state = {f"encoder.{k}": v.detach().float().contiguous() for k, v in encoder.state_dict().items()}
    state.update({f"classifier.{k}": v.detach().float().contiguous() for k, v in head.state_dict().items()})
    config = {"format": "mosquito-ast-member", "encoder": ENCODER,
              "head": {"type": "layernorm-meanpool-linear", "num_labels": len(LABELS)},
              "labels": LABELS, "id2label": {str(i): name for i, name in enumerate(LABELS)},
              "features": FEATURES, "training": {"seed": 7, "optimizer": "adamw"}, "best_epoch": 2}
    folder = tmp_path / "models" / "previous"
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return folder, encoder, head


def test_member_written_by_the_previous_version_loads_and_predicts_identically(previous_member):
    folder, encoder, head = previous_member
    model, config = load_member(folder)
    assert model.labels == LABELS and config["training"]["seed"] == 7 and config["best_epoch"] == 2
    settings = FeatureSettings.from_dict(config["features"])
    assert (settings.max_length, settings.norm_mean) == (100, FEATURES["norm_mean"])
    assert settings == FeatureSettings()  # the later feature fields take the values the member was trained with
    loaded = model.state_dict()
    for name, value in encoder.state_dict().items():
        assert torch.equal(loaded[f"encoder.{name}"], value), name
    features = torch.randn(4, 100, 128)
    with torch.no_grad():
        expected = head(encoder(input_values=features).last_hidden_state.mean(dim=1))
        torch.testing.assert_close(model(features), expected, rtol=0, atol=0)
    [member] = load_members(folder.parent)
    assert member.name == "previous" and member.features == settings and member.format == "mosquito-ast-member"
