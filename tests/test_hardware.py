import numpy as np
import pytest
import torch

from mosquito_ast import hardware
from mosquito_ast.checkpoints.classifier import load_member
from mosquito_ast.features import FeatureSettings, compute_features, normalize
from mosquito_ast.hardware import cpu_has_bf16, resolve_precision
from mosquito_ast.commands.train import train


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, True),  # Sapphire Rapids and later
    ({"avx2", "avx512f", "avx512_bf16"}, True),  # Cooper Lake, AMD Zen 4
    ({"avx2", "avx512f", "avx512_vnni"}, False),  # Ice Lake: AVX-512 without bf16
    ({"avx2", "fma"}, False),
    (set(), False),
])
def test_cpu_has_bf16_reads_the_matrix_flags(flags, expected):
    assert cpu_has_bf16(flags) is expected


@pytest.mark.parametrize("cuda, cuda_bf16, cpu_bf16, expected", [
    (True, True, False, "bf16-mixed"),
    (True, False, True, "32"),  # a GPU without bf16 decides, whatever the CPU has
    (False, None, True, "bf16-mixed"),
    (False, None, False, "32"),
])
def test_auto_precision_follows_the_hardware(cuda, cuda_bf16, cpu_bf16, expected):
    assert resolve_precision("auto", cuda=cuda, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16) == expected


@pytest.mark.parametrize("requested", ["32", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("cuda", [True, False])
def test_explicit_precision_passes_through(requested, cuda):
    assert resolve_precision(requested, cuda=cuda, cuda_bf16=False, cpu_bf16=False) == requested


@pytest.mark.parametrize("cuda, cuda_bf16, flags, expected", [
    (True, True, set(), "bf16-mixed"),
    (True, False, {"amx_bf16"}, "32"),
    (False, False, {"avx512f", "amx_bf16", "amx_tile"}, "bf16-mixed"),
    (False, False, {"avx512f", "avx512_bf16"}, "bf16-mixed"),
    (False, False, {"avx2", "avx512f"}, "32"),
])
def test_auto_precision_detects_mocked_hardware(monkeypatch, cuda, cuda_bf16, flags, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
    assert resolve_precision("auto") == expected


def test_auto_precision_ignores_emulated_bf16_on_pre_ampere_gpus(monkeypatch):
    """torch counts bf16 a pre-Ampere GPU can only emulate (slower than fp32) unless told not to."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto") == "32"


def test_member_trained_in_bf16_predicts_finite_probabilities(tiny_params, synth_split):
    member = train(tiny_params(precision="bf16-mixed", epochs=1, postfix="bf16"))
    model, config = load_member(member)
    assert config["precision"] == "bf16-mixed"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    settings = FeatureSettings.from_dict(config["features"])
    paths = sorted(str(p) for p in synth_split[1].rglob("*.wav"))
    table = compute_features(paths, settings, progress=False)
    with torch.inference_mode():
        probabilities = model(torch.from_numpy(normalize(table.features, settings))).softmax(dim=1).numpy()
    assert probabilities.shape == (len(paths), len(config["labels"]))
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
