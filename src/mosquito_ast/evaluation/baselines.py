"""The spectrum baselines: a time-averaged spectrum of each clip and a scikit-learn classifier.

Flight tones are nearly stationary, so their time-averaged spectrum carries most of what separates
species; a random forest or a logistic regression on it is the cheapest honest competitor of the
transformer. Two spectra are used: Welch's at each file's own rate, and the members' own log-mel fbank
averaged over time (the transformer's input, so "is the transformer worth it?" compares models, not
features; on unseen recording sessions it was the strongest baseline found, issue 13). Every evaluation
fits them on the members' training clips and shows them beside them, and `benchmarks/quality.py` uses
the same functions.
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

from mosquito_ast_lite.audio import AudioError, load_audio

from ..features import FeatureCache, FeatureSettings, compute_features
from ..inference.forest import real_frame_mean

WELCH_POINTS = 256
TREES = 500
CLASSIFIERS = ("logistic regression", "random forest")
WELCH_BASELINES = tuple(f"Welch spectrum + {c}" for c in CLASSIFIERS)
MEL_BASELINES = tuple(f"mel spectrum + {c}" for c in CLASSIFIERS)
BASELINES = (*WELCH_BASELINES, *MEL_BASELINES)


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


def mel_spectrum_features(paths: Sequence[str], settings: FeatureSettings, cache: FeatureCache | None = None,
                          progress: bool = False) -> np.ndarray:
    """(files, mel bins): the un-normalized log-mel fbank the members see, averaged over its real frames
    (`real_frame_mean`): averaged over padding too, a clip's mean depended on its length (a 0.625 s clip
    padded to 1 s mixed 37 % log floor into every bin), so sessions of other clip lengths than the
    training ones shifted every feature. A file that cannot be featurized raises its AudioError: a
    baseline fitted on fewer clips than the members would not be comparable."""
    table = compute_features(paths, settings, cache, description="baseline features", progress=progress)
    if table.bad:
        raise table.bad[0]
    return real_frame_mean(table.features)


def random_forest(seed: int) -> RandomForestClassifier:
    """The forest of the baselines and of the spectrum-forest member: every species counts alike, as in
    balanced accuracy (on the shared 2-fold, balanced class weights gave 0.287 against 0.212 without)."""
    return RandomForestClassifier(n_estimators=TREES, class_weight="balanced", random_state=seed, n_jobs=-1)


def classifiers(seed: int) -> dict[str, object]:
    return {
        CLASSIFIERS[0]: make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced")),
        CLASSIFIERS[1]: random_forest(seed),
    }


def fit_and_score(train_x: np.ndarray, targets: np.ndarray, scored_x: np.ndarray, num_classes: int,
                  seed: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each classifier (named by `names`, in CLASSIFIERS order) fitted on `train_x`: (scored, num_classes)
    probabilities; classes absent from the training clips get probability 0."""
    probabilities = {}
    for name, model in zip(names, classifiers(seed).values()):
        model.fit(train_x, targets)
        full = np.zeros((len(scored_x), num_classes))
        full[:, model.classes_] = model.predict_proba(scored_x)
        probabilities[name] = full
    return probabilities


def baseline_probabilities(train_paths: Sequence[str], train_targets: Sequence[int], scored_paths: Sequence[str],
                           num_classes: int, seed: int = 0, settings: FeatureSettings | None = None,
                           cache: FeatureCache | None = None) -> dict[str, np.ndarray]:
    """Every baseline fitted on the training clips: name -> (scored clips, num_classes) probabilities.
    The mel-spectrum baselines need the members' feature `settings`; without them only Welch's run."""
    targets = np.asarray(train_targets)
    rate = min(native_rate(p) for p in [*train_paths, *scored_paths])
    probabilities = fit_and_score(spectrum_features(train_paths, rate), targets, spectrum_features(scored_paths, rate),
                                  num_classes, seed, WELCH_BASELINES)
    if settings is not None:
        probabilities.update(fit_and_score(mel_spectrum_features(train_paths, settings, cache), targets,
                                           mel_spectrum_features(scored_paths, settings, cache), num_classes,
                                           seed, MEL_BASELINES))
    return probabilities
