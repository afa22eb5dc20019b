import multiprocessing

import numpy as np
import pytest
import soundfile as sf

from mosquito_ast.features import FeatureCache, FeatureSettings, compute_features, fbank


def test_one_second_is_100_frames_not_1024():
    assert FeatureSettings().max_length == 100
    assert FeatureSettings(clip_seconds=0.625).max_length == 62


def _wav(path, seed):
    rng = np.random.default_rng(seed)
    sf.write(path, 0.1 * rng.standard_normal(16000), 16000)
    return path


def test_cache_returns_identical_features_and_follows_file_and_settings(tmp_path):
    path = _wav(tmp_path / "a.wav", 0)
    cache = FeatureCache(tmp_path / "cache")
    settings = FeatureSettings()
    first = compute_features([path], settings, cache, progress=False).features
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 1
    again = compute_features([path], settings, cache, progress=False).features
    np.testing.assert_array_equal(first, again)
    _wav(path, 1)  # the file changes: a new content key, new features
    changed = compute_features([path], settings, cache, progress=False).features
    assert not np.allclose(first, changed)
    compute_features([path], FeatureSettings(num_mel_bins=64), cache, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3


def _store(args):
    root, path, value = args
    cache = FeatureCache(root)
    entry = cache.entry(path, FeatureSettings())
    for _ in range(50):
        cache.store(entry, np.full((100, 128), value, dtype=np.float32))
    return str(entry)


def test_cache_survives_two_processes_writing_one_entry(tmp_path):
    path = _wav(tmp_path / "a.wav", 0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        entries = pool.map(_store, [(tmp_path / "cache", path, 1.0), (tmp_path / "cache", path, 1.0)])
    assert entries[0] == entries[1]
    loaded = FeatureCache(tmp_path / "cache").load(FeatureCache(tmp_path / "cache").entry(path, FeatureSettings()))
    assert loaded.shape == (100, 128) and np.all(loaded == 1.0)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_bad_files_are_collected_not_fatal(tmp_path):
    good = _wav(tmp_path / "good.wav", 0)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"garbage")
    table = compute_features([good, bad], FeatureSettings(), None, progress=False)
    assert table.paths == [str(good)] and table.features.shape == (1, 100, 128)
    assert [e.path for e in table.bad] == [str(bad)]


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="clip_seconds"):
        FeatureSettings(clip_seconds=0)


def test_window_and_hop_are_set_in_time_at_any_rate():
    """At 8 kHz a 1 s clip fills all 100 frames (25 ms window, 10 ms hop), not 48 padded to 100."""
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 8000).astype(np.float32)
    features = fbank(wave, FeatureSettings(sample_rate=8000))
    assert features.shape == (100, 128)
    padded_frames = np.all(features == 0, axis=1).sum()
    assert padded_frames <= 3  # (8000 - 200) // 80 + 1 = 98 frames of audio


def test_mel_band_stops_at_max_frequency():
    """A band that ends at the data's Nyquist leaves no constant bins above it."""
    rng = np.random.default_rng(1)
    wave = rng.normal(0, 0.1, 16000).astype(np.float32)
    full = fbank(wave, FeatureSettings())
    band = fbank(wave, FeatureSettings(max_frequency=4000))
    assert band.shape == full.shape
    assert not np.allclose(band, full)
    with pytest.raises(ValueError, match="max_frequency"):
        FeatureSettings(sample_rate=8000, max_frequency=6000)


def test_default_settings_keep_earlier_extraction_keys():
    assert FeatureSettings().extraction_key() == "sr16000_clip1_mel128_len100"
    assert FeatureSettings(hop_ms=20, window_ms=40).max_length == 50
    assert "fmax4000" in FeatureSettings(max_frequency=4000).extraction_key()


def test_cache_entries_are_keyed_by_the_fbank_computation(tmp_path):
    """A cache filled by an earlier fbank computation (revision 2: transformers' audio utilities) is not reused."""
    entry = FeatureCache(tmp_path).entry(_wav(tmp_path / "a.wav", 0), FeatureSettings())
    assert entry.parts[-4] == "fbank-r3"
