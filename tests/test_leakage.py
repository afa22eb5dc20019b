"""check-split finds the same audio on both sides of a split however it was re-encoded."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr

from mosquito_ast.leakage import check_split


def _flight_tone(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(16000) / 16000
    wobble = np.cumsum(rng.normal(0, 0.02, t.size))  # wingbeat jitter: each recording its own
    return 0.3 * np.sin(2 * np.pi * 500 * t + wobble) + 0.05 * rng.standard_normal(t.size)


def _split(tmp_path, copy_format: str):
    train, validation = tmp_path / "train" / "aegypti", tmp_path / "validation" / "aegypti"
    train.mkdir(parents=True)
    validation.mkdir(parents=True)
    for seed in range(3):
        sf.write(train / f"rec{seed}_a.wav", _flight_tone(seed), 16000)
    sf.write(validation / "rec9_a.wav", _flight_tone(9), 16000)
    source = _flight_tone(1)
    if copy_format == "mp3":
        sf.write(validation / "copy_a.mp3", source, 16000, format="MP3")
    else:
        sf.write(validation / "copy_a.wav", 0.5 * soxr.resample(source, 16000, 22050), 22050)
    return tmp_path / "train", tmp_path / "validation"


def test_lossy_and_resampled_copies_are_found_and_distinct_recordings_are_not(tmp_path):
    for copy_format in ("mp3", "resampled"):
        train, validation = _split(tmp_path / copy_format, copy_format)
        report = check_split(train, validation)
        assert not report.duplicates and not report.shared_groups
        assert [(a.split("/")[-1], b.split("/")[-1].split(".")[0]) for a, b, _ in report.near_duplicates] == \
            [("rec1_a.wav", "copy_a")]
        assert report.leaks and "re-encoded" in report.summary()
        assert report.to_dict()["near_duplicates"][0][2] > 0.95
