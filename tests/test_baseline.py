"""The spectrum baseline that every evaluation scores beside the members."""

from __future__ import annotations

import numpy as np
import soundfile as sf

import pytest

from mosquito_ast_lite.audio import AudioError
from mosquito_ast.evaluation.baselines import (BASELINES, WELCH_BASELINES, WELCH_POINTS, baseline_probabilities,
                                   mel_spectrum_features, spectrum_features)
from mosquito_ast.data import discover, label_names
from mosquito_ast.features import FeatureSettings, compute_features

TONE_FEATURES = FeatureSettings(sample_rate=8000, clip_seconds=0.5)


def test_spectrum_is_read_at_the_lowest_native_rate(tmp_path):
    """An 8 kHz and a 16 kHz file give spectra on one 0-4 kHz grid: no bin above the 8 kHz file's Nyquist."""
    t8, t16 = np.arange(8000) / 8000, np.arange(16000) / 16000
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 1000 * t8), 8000)
    sf.write(tmp_path / "b.wav", 0.5 * np.sin(2 * np.pi * 1000 * t16), 16000)
    features = spectrum_features([str(tmp_path / "a.wav"), str(tmp_path / "b.wav")])
    assert features.shape == (2, WELCH_POINTS // 2 + 1)
    peak = features.argmax(axis=1)
    assert peak.tolist() == [32, 32]  # 1000 Hz at 4000 Hz / 128 bins per Hz step of 31.25 Hz


def tones(folder, seed: int) -> tuple[list[str], list[int]]:
    """Noisy tones at 400, 600 and 800 Hz (one class each), 8 kHz, random gain."""
    rng = np.random.default_rng(seed)
    paths, targets = [], []
    t = np.arange(4000) / 8000
    for target, hz in enumerate((400, 600, 800)):
        for clip in range(6):
            wave = rng.uniform(0.3, 0.6) * np.sin(2 * np.pi * hz * rng.uniform(0.98, 1.02) * t)
            path = folder / f"{hz}_{seed}_{clip}.wav"
            sf.write(path, wave + rng.normal(0, 0.02, t.size), 8000)
            paths.append(str(path))
            targets.append(target)
    return paths, targets


def test_baselines_separate_tones(tmp_path):
    train_paths, train_targets = tones(tmp_path, 0)
    scored_paths, truth = tones(tmp_path, 1)
    probabilities = baseline_probabilities(train_paths, train_targets, scored_paths, 3, seed=0,
                                           settings=TONE_FEATURES)
    assert set(probabilities) == set(BASELINES)
    for name, p in probabilities.items():
        assert p.shape == (len(scored_paths), 3)
        np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
        assert (p.argmax(axis=1) == np.array(truth)).mean() >= 0.9, name


def test_a_class_missing_from_training_gets_probability_zero(synth_split):
    train = [s for s in discover(synth_split[0]) if s.label != sorted({s.label for s in discover(synth_split[0])})[0]]
    scored = discover(synth_split[1])
    labels = label_names(scored)
    probabilities = baseline_probabilities([s.path for s in train], [labels.index(s.label) for s in train],
                                           [s.path for s in scored], len(labels))
    for p in probabilities.values():
        assert np.all(p[:, 0] == 0)


def test_without_feature_settings_only_welch_baselines_run(tmp_path):
    train_paths, train_targets = tones(tmp_path, 0)
    assert set(baseline_probabilities(train_paths, train_targets, train_paths[:2], 3)) == set(WELCH_BASELINES)


def test_mel_spectrum_is_the_members_fbank_averaged_over_its_real_frames(tmp_path):
    """0.5 s tones: 48 whole 25 ms frames at a 10 ms hop; the 2 frames past the clip's end are not averaged."""
    paths, _ = tones(tmp_path, 0)
    expected = compute_features(paths[:3], TONE_FEATURES, progress=False).features[:, :48].mean(axis=1)
    features = mel_spectrum_features(paths[:3], TONE_FEATURES)
    assert features.shape == (3, TONE_FEATURES.num_mel_bins)
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_a_padded_clip_has_the_mel_spectrum_of_the_clip_itself(tmp_path):
    """Padding a 0.5 s clip to 2 s (75 % zeros, as 0.625 s wingbeat clips in 1 s members hold 37 %) leaves
    its feature as it was, up to the 2 frames that straddle the clip's end: the mean covers sound, not
    the clip length the members chose. Averaged over every frame it moved by several log units."""
    paths, _ = tones(tmp_path, 0)
    padded = FeatureSettings(sample_rate=8000, clip_seconds=2.0)
    own = mel_spectrum_features(paths[:3], TONE_FEATURES)
    assert np.abs(mel_spectrum_features(paths[:3], padded) - own).max() < 0.25
    every_frame = compute_features(paths[:3], padded, progress=False).features.mean(axis=1)
    assert np.abs(every_frame - own).max() > 3


def test_an_unreadable_training_clip_is_named(tmp_path):
    paths, targets = tones(tmp_path, 0)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="broken.wav"):
        mel_spectrum_features([*paths, str(broken)], TONE_FEATURES)
