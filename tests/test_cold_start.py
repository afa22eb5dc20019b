"""A cold `predict` or `evaluate` pays only for what it uses: no Lightning (nor, for predict, plotting),
and members built without random initialisation, their weights taken from the file as they are."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from mosquito_ast.checkpoints import CheckpointError
from mosquito_ast.checkpoints.classifier import load_member, save_member
from mosquito_ast.checkpoints.encoder import encoder_from_checkpoint, load_pretrained_encoder
from mosquito_ast.features import FeatureSettings
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import encoder_config

HEAVY = ("lightning", "matplotlib", "sklearn")
COLD_RUN = """
import json, sys
from mosquito_ast.cli import app
try:
    app({arguments!r}, prog_name="mosquito-ast")
except SystemExit as stop:
    assert not stop.code, stop.code
loaded = {{"predict": [m for m in {heavy!r} if m in sys.modules]}}
import mosquito_ast.commands.evaluate, mosquito_ast.evaluation.report  # what the evaluate command imports
loaded["evaluate"] = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps(loaded))
"""


def test_predict_and_evaluate_import_only_what_they_use(tiny_member, synth_split, tmp_path):
    """One fresh interpreter runs `mosquito-ast predict` as the entry point does, then imports what
    `evaluate` needs: Lightning is for training only; predict needs no plots nor sklearn either."""
    clip = next(synth_split[1].rglob("*.wav"))
    arguments = ["predict", "--models", str(tiny_member), str(clip), "--output", str(tmp_path / "p.csv"),
                 "--no-progress"]
    result = subprocess.run([sys.executable, "-c", COLD_RUN.format(arguments=arguments, heavy=HEAVY)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["predict"] == [] and (tmp_path / "p.csv").exists()
    assert "lightning" not in loaded["evaluate"]


@pytest.fixture
def saved(tmp_path):
    """A freshly initialised small member and its folder."""
    torch.manual_seed(0)
    model = ASTClassifier.from_config(encoder_config("small", FeatureSettings()), ["a", "b", "c"]).eval()
    return model, save_member(model, tmp_path / "member", FeatureSettings(), {})


def test_loaded_member_is_the_saved_one_bit_for_bit_and_draws_no_random_numbers(saved):
    model, folder = saved
    before = torch.random.get_rng_state()
    loaded, _ = load_member(folder)
    assert torch.equal(torch.random.get_rng_state(), before)  # nothing was randomly initialised
    assert not any(p.is_meta for p in loaded.parameters())
    features = torch.randn(3, 100, 128)
    with torch.inference_mode():
        assert torch.equal(loaded(features), model(features))


def test_encoder_for_fine_tuning_is_built_without_random_initialisation(saved):
    _, folder = saved
    before = torch.random.get_rng_state()
    encoder = encoder_from_checkpoint(folder, FeatureSettings(clip_seconds=2.0))
    assert torch.equal(torch.random.get_rng_state(), before)
    source = load_pretrained_encoder(folder).state_dict()
    for name, tensor in encoder.state_dict().items():
        assert not tensor.is_meta
        if name != "embeddings.position_embeddings":  # resized to 2 s
            assert torch.equal(tensor, source[name]), name
    assert encoder.embeddings.position_embeddings.shape[1] > source["embeddings.position_embeddings"].shape[1]
    assert all(p.requires_grad for p in encoder.parameters())


def _edited_copy(folder, target, edit):
    shutil.copytree(folder, target)
    state = load_file(str(target / "model.safetensors"))
    edit(state)
    save_file(state, str(target / "model.safetensors"))
    return target


@pytest.mark.parametrize("name, edit, problem", [
    ("missing", lambda s: s.pop("encoder.layers.1.mlp.fc1.weight"), r"missing \['layers.1.mlp.fc1.weight'\]"),
    ("extra", lambda s: s.update({"encoder.layers.0.extra.weight": torch.zeros(2)}),
     r"unexpected \['layers.0.extra.weight'\]"),
    ("reshaped", lambda s: s.update({"encoder.layers.0.mlp.fc2.weight": torch.zeros(4, 4)}),
     r"of another shape \['layers.0.mlp.fc2.weight'\]"),
    ("head", lambda s: s.update({"classifier.weight": torch.zeros(3, 8)}), r"classifier weights .*hidden size 192"),
])
def test_weights_that_do_not_fit_are_refused_by_file_name(saved, tmp_path, name, edit, problem):
    folder = _edited_copy(saved[1], tmp_path / name, edit)
    with pytest.raises(CheckpointError, match=rf"{name}/model.safetensors: .*{problem}"):
        load_member(folder)
