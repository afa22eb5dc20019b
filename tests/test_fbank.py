"""One fbank, the field runtime's (`mosquito_ast_lite.fbank`), used by the tool too: equal to transformers'
`ASTFeatureExtractor` at 16 kHz and to transformers' audio utilities at every other setting, to 1e-5."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from transformers import ASTFeatureExtractor
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from mosquito_ast.features import FeatureSettings, fbank, make_extractor, normalize
from mosquito_ast_lite import Fbank
from mosquito_ast_lite.audio import load_clip
from mosquito_ast_lite.fbank import KALDI_MEL_FLOOR, LOWEST_MEL_HZ

TOLERANCE = 1e-5
SETTINGS = {
    "16k": FeatureSettings(),
    "8k": FeatureSettings(sample_rate=8000, clip_seconds=0.625, num_mel_bins=64),
    "16k_fmax4000": FeatureSettings(max_frequency=4000.0),
    "8k_fmax3000_win": FeatureSettings(sample_rate=8000, clip_seconds=0.5, num_mel_bins=48, window_ms=32.0, hop_ms=8.0,
                                       max_frequency=3000.0),
}


def generated_waves(rate: int, seconds: float) -> list[np.ndarray]:
    """Noise, tones, a burst in silence (the log floor), clipped noise and a constant (DC only)."""
    rng = np.random.default_rng(0)
    n = int(round(rate * seconds))
    t = np.arange(n) / rate
    tone = 0.3 * np.sin(2 * np.pi * 500 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t + 1.0)
    burst = np.zeros(n)
    burst[n // 3:n // 3 + 200] = rng.standard_normal(200)
    loud = np.clip(3 * rng.standard_normal(n), -1, 1)
    return [w.astype(np.float32) for w in (0.1 * rng.standard_normal(n), tone + 0.01 * rng.standard_normal(n), burst,
                                           loud, np.full(n, 0.25))]


def transformers_fbank(wave: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """The reference: transformers' `spectrogram` with the Kaldi settings AST uses, padded or cut to max_length."""
    frame = int(round(settings.sample_rate * settings.window_ms / 1000))
    fft = 1 << (frame - 1).bit_length()
    with warnings.catch_warnings():  # 128 Kaldi mel bins at 16 kHz leave one empty filter, as in AST itself
        warnings.simplefilter("ignore")
        filters = mel_filter_bank(num_frequency_bins=fft // 2 + 1, num_mel_filters=settings.num_mel_bins,
                                  min_frequency=LOWEST_MEL_HZ, max_frequency=settings.top_frequency,
                                  sampling_rate=settings.sample_rate, norm=None, mel_scale="kaldi",
                                  triangularize_in_mel_space=True)
    log_mel = spectrogram(wave, window_function(frame, "hann", periodic=False), frame_length=frame,
                          hop_length=int(round(settings.sample_rate * settings.hop_ms / 1000)), fft_length=fft,
                          power=2.0, center=False, preemphasis=0.97, mel_filters=filters, log_mel="log",
                          mel_floor=KALDI_MEL_FLOOR, remove_dc_offset=True).T
    out = np.zeros((settings.max_length, settings.num_mel_bins), np.float32)
    out[:min(len(log_mel), settings.max_length)] = log_mel[:settings.max_length]
    return out


@pytest.mark.parametrize("seconds", [0.3, 0.625, 1.0, 2.5])
def test_equals_ast_feature_extractor_at_16_khz(seconds):
    """Dither off and normalization off (AST's is (x - mean) / (2 std), applied by the member); AST pads the
    fbank frames of a short clip with zeros and cuts a long one, as ours does."""
    settings = FeatureSettings()
    extractor = ASTFeatureExtractor(max_length=settings.max_length, do_normalize=False, dither=0.0)
    for wave in generated_waves(16000, seconds):
        reference = extractor(wave, sampling_rate=16000, return_tensors="np")["input_values"][0]
        ours = fbank(wave, settings)
        assert ours.shape == reference.shape == (100, 128)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    normalized = ASTFeatureExtractor(max_length=settings.max_length, dither=0.0)(wave, sampling_rate=16000)
    np.testing.assert_allclose(normalize(ours, settings), normalized["input_values"][0], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_equals_transformers_audio_utilities_at_every_setting(name):
    settings = SETTINGS[name]
    ours = make_extractor(settings)
    assert isinstance(ours, Fbank)
    waves = generated_waves(settings.sample_rate, settings.clip_seconds)
    batch = ours(np.stack(waves))
    assert batch.shape == (len(waves), settings.max_length, settings.num_mel_bins) and batch.dtype == np.float32
    for wave, row in zip(waves, batch):
        np.testing.assert_allclose(row, transformers_fbank(wave, settings), rtol=0, atol=TOLERANCE)
        np.testing.assert_array_equal(ours(wave), row)  # one wave or a batch: the same numbers
    for length in (settings.sample_rate // 10, 3 * settings.sample_rate):  # short, long: frames padded or cut
        wave = np.tile(waves[0], 3)[:length]
        np.testing.assert_allclose(ours(wave), transformers_fbank(wave, settings), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_equals_transformers_on_real_clips(wingbeats, name):
    settings = SETTINGS[name]
    files = sorted(wingbeats.rglob("*.wav"))[::7][:30]
    waves = np.stack([load_clip(f, settings.sample_rate, settings.clip_seconds) for f in files])
    reference = np.stack([transformers_fbank(w, settings) for w in waves])
    difference = np.abs(make_extractor(settings)(waves) - reference).max()
    assert difference < TOLERANCE, f"{name}: max |ours - transformers| = {difference}"
