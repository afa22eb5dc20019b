"""Inference in bf16 weights (no autocast) where the precision resolves to bf16: evaluate, predict and
the pretraining probe. The labels stay those of fp32 inference; probabilities come back in float32."""

import numpy as np
import pytest
import torch

from mosquito_ast.inference.members import load_members, score_features
from mosquito_ast.features import compute_features, normalize
from mosquito_ast.hardware import inference_dtype
from mosquito_ast.training.probe import embed_clips

CLEAR_MARGIN = 0.02  # fp32 top-2 gaps wider than this must not flip in bf16


@pytest.fixture(scope="module")
def clip_features(tiny_member, synth_split):
    """Un-normalized fbanks of the generated validation clips, keyed as `score_features` wants them."""
    settings = load_members(tiny_member)[0].features
    paths = sorted(str(p) for p in synth_split[1].rglob("*.wav"))
    return {settings.extraction_key(): compute_features(paths, settings, progress=False).features}


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16),
                                              ("32", torch.float32)])
def test_inference_dtype_follows_the_precision(precision, dtype):
    assert inference_dtype(precision) == dtype


def test_bf16_weights_keep_the_labels_of_fp32(tiny_member, clip_features):
    fp32 = score_features(load_members(tiny_member), clip_features, "32", device="cpu")[0]
    members = load_members(tiny_member)
    bf16 = score_features(members, clip_features, "bf16-mixed", device="cpu")[0]
    assert all(p.dtype == torch.bfloat16 for p in members[0].model.parameters())  # weights, not autocast
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    np.testing.assert_allclose(bf16.sum(axis=1), 1.0, rtol=1e-5)
    top2 = np.sort(fp32, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > CLEAR_MARGIN
    assert clear.sum() >= len(fp32) // 2
    assert (bf16.argmax(1)[clear] == fp32.argmax(1)[clear]).all()
    assert np.abs(bf16 - fp32).max() < 0.05


def test_scoring_again_at_the_same_precision_reuses_the_cast_and_refuses_fp32(tiny_member, clip_features):
    members = load_members(tiny_member)
    first = score_features(members, clip_features, "bf16-mixed", device="cpu")
    np.testing.assert_array_equal(score_features(members, clip_features, "bf16-mixed", device="cpu"), first)
    with pytest.raises(ValueError, match="already holds torch.bfloat16 weights; load it again"):
        score_features(members, clip_features, "32", device="cpu")


def test_probe_embeds_in_bf16_on_a_copy(tiny_member, clip_features):
    members = load_members(tiny_member)
    encoder, settings = members[0].model.encoder, members[0].features
    features = normalize(next(iter(clip_features.values())), settings)
    fp32 = embed_clips(encoder, features)
    bf16 = embed_clips(encoder, features, dtype=torch.bfloat16)
    assert encoder.dtype == torch.float32  # `pretrain` saves this encoder after the probe
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99
