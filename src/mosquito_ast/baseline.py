"""The spectrum baseline: a Welch log-power spectrum at each file's own rate and a scikit-learn classifier.

Flight tones are nearly stationary, so their time-averaged spectrum carries most of what separates
species; a random forest or a logistic regression on it is the cheapest honest competitor of the
transformer. Every evaluation fits it on the members' training clips and shows it beside them, and
`benchmarks/quality.py` uses the same functions, so "is the transformer worth it here?" has one answer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import soundfile as sf
from scipy.signal import welch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .audio import AudioError, load_audio

WELCH_POINTS = 256
BASELINES = ("spectrum + logistic regression", "spectrum + random forest")


def native_rate(path: str) -> int:
    try:
        return sf.info(path).samplerate
    except Exception as error:  # soundfile raises several types for undecodable input
        raise AudioError(path, f"unreadable audio ({error})") from error


def spectrum_features(paths: Sequence[str], sample_rate: int | None = None) -> np.ndarray:
    """(files, WELCH_POINTS // 2 + 1) log power from 0 Hz to Nyquist. Files are read at `sample_rate`,
    by default the lowest rate among them, so no bin lies above a recording's own Nyquist."""
    rate = sample_rate or min(native_rate(p) for p in paths)
    rows = []
    for path in paths:
        _, power = welch(load_audio(path, rate), fs=rate, nperseg=WELCH_POINTS)
        rows.append(np.log(power + 1e-12))
    return np.stack(rows).astype(np.float32)


def baseline_models(seed: int) -> dict[str, object]:
    return {
        BASELINES[0]: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced")),
        BASELINES[1]: RandomForestClassifier(n_estimators=500, class_weight="balanced", random_state=seed, n_jobs=-1),
    }


def baseline_probabilities(train_paths: Sequence[str], train_targets: Sequence[int], scored_paths: Sequence[str],
                           num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Each baseline fitted on the training clips: (scored clips, num_classes) probabilities.
    Classes absent from the training clips get probability 0."""
    rate = min(native_rate(p) for p in [*train_paths, *scored_paths])
    train_x = spectrum_features(train_paths, rate)
    scored_x = spectrum_features(scored_paths, rate)
    targets = np.asarray(train_targets)
    probabilities = {}
    for name, model in baseline_models(seed).items():
        model.fit(train_x, targets)
        full = np.zeros((len(scored_paths), num_classes))
        full[:, model.classes_] = model.predict_proba(scored_x)
        probabilities[name] = full
    return probabilities
