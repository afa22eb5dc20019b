"""A member saved as a transformers folder gives the tool's own probabilities on clips shorter and longer
than its clip length, through the feature extractor shipped as remote code."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

from mosquito_ast import save_for_transformers
from mosquito_ast.features import FeatureSettings
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.param_groups import ReadParams
from test_api import SPECIES, random_member

RATE = 16000


def flight_tone(seconds: float, frequency: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.02, len(t))
    return (0.3 * np.sin(2 * np.pi * frequency * t) + 0.1 * np.sin(2 * np.pi * 2 * frequency * t) + noise)


def test_transformers_folder_reproduces_the_member_on_any_clip_length(tmp_path):
    from transformers import ASTFeatureExtractor, AutoFeatureExtractor, AutoModelForAudioClassification

    settings = FeatureSettings(norm_mean=-3.5, norm_std=3.0)  # clips of 1.0 s
    member = random_member(tmp_path / "member", SPECIES, settings, seed=5)
    folder = save_for_transformers(member, tmp_path / "hf")
    lengths = [0.3, 0.625, 0.625, 1.0, 1.6, 2.5]  # the wingbeat corpus's clips are 0.625 s
    paths = []
    for i, seconds in enumerate(lengths):
        paths.append(str(tmp_path / f"clip{i}.wav"))
        sf.write(paths[-1], flight_tone(seconds, 400 + 90 * i, i).astype(np.float32), RATE, subtype="FLOAT")
    tool = predict_probabilities(load_members(member), paths, ReadParams(precision="32", no_cache=True),
                                 progress=False).probabilities[0]

    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    inputs = extractor(waves, sampling_rate=RATE, return_tensors="pt")["input_values"]
    with torch.no_grad():
        probabilities = model(input_values=inputs).logits.softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, tool, rtol=0, atol=1e-3)
    assert type(extractor).__name__ == "MosquitoASTFeatureExtractor" and extractor.clip_samples == RATE
    single = extractor(waves[0], sampling_rate=RATE, return_tensors="pt")["input_values"]  # one clip, not batched
    torch.testing.assert_close(single[0], inputs[0])

    plain = AutoFeatureExtractor.from_pretrained(folder)  # no remote code: transformers' own padding
    assert type(plain) is ASTFeatureExtractor
    assert json.loads((folder / "preprocessor_config.json").read_text())["feature_extractor_type"] == "ASTFeatureExtractor"
    padded_frames = plain(waves[1], sampling_rate=RATE, return_tensors="pt")["input_values"][0]
    assert (padded_frames - inputs[1]).abs().max() > 0.5  # why the remote extractor is needed on short clips
    torch.testing.assert_close(plain(waves[3], sampling_rate=RATE, return_tensors="pt")["input_values"][0],
                               inputs[3], rtol=0, atol=1e-5)  # at the clip length both agree
