import numpy as np
import pytest
import soundfile as sf

from mosquito_ast_lite.audio import AudioError, fit_length, load_audio, load_clip


def write(path, data, rate, subtype="PCM_16"):
    sf.write(path, data, rate, subtype=subtype)
    return path


def test_stereo_8k_is_mixed_to_mono_and_resampled(tmp_path):
    t = np.arange(8000) / 8000
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 440 * t)
    path = write(tmp_path / "stereo file.v1.wav", np.stack([left, right], axis=1), 8000)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert np.abs(wave).max() == pytest.approx(0.3, abs=0.02)  # mean of the two channels


@pytest.mark.parametrize("suffix,fmt", [(".flac", "FLAC"), (".ogg", "OGG")])
def test_flac_and_ogg_decode(tmp_path, suffix, fmt):
    wave = 0.3 * np.sin(2 * np.pi * 500 * np.arange(16000) / 16000)
    path = tmp_path / f"clip{suffix}"
    sf.write(path, wave, 16000, format=fmt)
    assert len(load_audio(path)) == 16000


def test_clip_is_padded_or_trimmed(tmp_path):
    short = write(tmp_path / "short.wav", 0.2 * np.ones(5000), 8000)  # 0.625 s at 8 kHz
    clip = load_clip(short, 16000, 1.0)
    assert clip.shape == (16000,)
    assert np.all(clip[10_500:] == 0)
    assert fit_length(np.ones(20), 10).shape == (10,)


@pytest.mark.parametrize(
    "make,problem",
    [
        (lambda p: p.write_bytes(b"not audio at all"), "unreadable"),
        (lambda p: write(p, np.zeros((0,)), 16000), "empty"),
        (lambda p: write(p, np.zeros(1600), 16000), "all zeros"),
        (lambda p: write(p, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 16000, "FLOAT"), "NaN"),
    ],
)
def test_bad_files_raise_an_error_naming_the_file(tmp_path, make, problem):
    path = tmp_path / "bad clip.wav"
    make(path)
    with pytest.raises(AudioError, match=problem) as error:
        load_audio(path)
    assert str(path) in str(error.value)
