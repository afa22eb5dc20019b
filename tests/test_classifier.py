import pytest
import torch

from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import load_member, save_member
from mosquito_ast.features import FeatureSettings
from mosquito_ast.models.classifier import ASTClassifier, apply_freezing


def trainable_parameter_names(model) -> list[str]:
    """What the optimizer updates: the parameters `apply_freezing` left trainable."""
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]
from mosquito_ast.models.encoder import encoder_config

LABELS = ["Ae. aegypti", "An. gambiae", "C. pipiens"]


@pytest.fixture
def model() -> ASTClassifier:
    return ASTClassifier.from_config(encoder_config("tiny", FeatureSettings()), LABELS)


def test_logits_shape(model):
    assert model(torch.zeros(5, 100, 128)).shape == (5, 3)


def test_freeze_head_trains_only_the_new_head(model):
    apply_freezing(model, "head")
    assert trainable_parameter_names(model) == ["classifier.weight", "classifier.bias"]


def test_freeze_last_n_trains_last_layers_norm_and_head(model):
    apply_freezing(model, "last-n", 1)
    names = trainable_parameter_names(model)
    assert "classifier.weight" in names and "classifier.bias" in names  # the old notebook froze these
    assert "encoder.layernorm.weight" in names
    assert all(n.startswith(("encoder.layers.1.", "encoder.layernorm.", "classifier.")) for n in names)
    assert any(n.startswith("encoder.layers.1.") for n in names)


def test_freeze_none_trains_everything(model):
    apply_freezing(model, "head")
    apply_freezing(model, "none")
    assert len(trainable_parameter_names(model)) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="between 1 and 2"):
        apply_freezing(model, "last-n", 5)


def test_member_round_trip_keeps_labels_and_outputs(model, tmp_path):
    folder = save_member(model, tmp_path / "best" / "m1", FeatureSettings(), {"training": {"seed": 1}})
    loaded, config = load_member(folder)
    assert loaded.labels == LABELS and config["id2label"]["1"] == "An. gambiae"
    assert config["features"]["max_length"] == 100
    features = torch.randn(2, 100, 128)
    torch.testing.assert_close(loaded(features), model.eval()(features))
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_member(model, folder, FeatureSettings(), {}, overwrite=False)
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["m1"]  # no staging leftovers


def test_old_format_member_needs_labels(model, tmp_path):
    folder = save_member(model, tmp_path / "old", FeatureSettings(), {})
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="--labels"):
        load_member(folder)
