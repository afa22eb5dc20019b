"""`predict`: label new recordings of any length with an ensemble.

Each recording is cut into clip-length windows (`--hop-seconds` apart; the last window is aligned to
the end so no tail is lost; short recordings are padded to one window). Every member scores every
window; the ensemble probability of a window is the (weighted) mean over members, and a file's is the
mean over its windows.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mosquito_ast_lite.audio import AudioError, cut_short, cut_short_warning, fit_length, load_audio
from mosquito_ast_lite.io import atomic_write_json, atomic_write_text, check_output_files
from mosquito_ast_lite.runtime import UNCERTAIN, decide, expand_inputs, output_paths, window_starts

from ..config import ConfigError, PredictParams
from ..inference.votes import parse_weights, soft_vote
from ..inference.forest import ForestMember, load_forests, vote_weights
from ..inference.members import Member, ensemble_labels, load_members, score_features
from ..features import FeatureSettings, fbank, make_extractor
from ..hardware import resolve_precision, use_physical_cores


@dataclass
class Predictions:
    files: pd.DataFrame  # one row per input file (unreadable files too, with their error)
    windows: pd.DataFrame  # one row per window
    labels: list[str]


def window_features(path: str | Path, settings: FeatureSettings, hop_seconds: float) -> tuple[np.ndarray, list[float]]:
    """Un-normalized fbank of every window of one recording, and each window's start in seconds."""
    wave = load_audio(path, settings.sample_rate)
    window = int(round(settings.clip_seconds * settings.sample_rate))
    hop = max(1, int(round(hop_seconds * settings.sample_rate)))
    extractor = make_extractor(settings)
    starts = window_starts(len(wave), window, hop)
    features = np.stack([fbank(fit_length(wave[s:s + window], window), settings, extractor) for s in starts])
    return features, [s / settings.sample_rate for s in starts]


def top_k_columns(probabilities: np.ndarray, labels: list[str], k: int) -> dict[str, list]:
    order = np.argsort(-probabilities, axis=1)[:, :k]
    columns: dict[str, list] = {}
    for rank in range(order.shape[1]):
        columns[f"top{rank + 1}_label"] = [labels[i] for i in order[:, rank]]
        columns[f"top{rank + 1}_probability"] = probabilities[np.arange(len(order)), order[:, rank]].tolist()
    return columns


def predict_files(members: Sequence[Member], files: Sequence[str | Path], params: PredictParams,
                  forests: Sequence[ForestMember] = ()) -> Predictions:
    """Window, featurize once per feature setting, score with every member and spectrum forest, and pool."""
    from tqdm.auto import tqdm

    labels = ensemble_labels(members)
    weights, _ = vote_weights(parse_weights(params.weights, [m.name for m in members]), forests)
    precision = resolve_precision(params.precision)
    if precision == "int8":
        from ..inference.int8 import attach, graph_folder

        attach(list(members), graph_folder(None, False))
    settings_of = {m.features.extraction_key(): m.features for m in [*members, *forests]}
    window_rows, file_rows, cut = [], [], []
    for path in tqdm(files, desc="predict", disable=not params.progress):
        try:
            windows = {key: window_features(path, settings, params.hop_seconds) for key, settings in settings_of.items()}
        except (AudioError, OSError) as error:
            problem = error.problem if isinstance(error, AudioError) else str(error)
            print(f"warning: {path}: skipped ({problem})")
            file_rows.append({"path": str(path), "windows": 0, "error": problem})
            continue
        if missing := cut_short(path):
            cut.append((str(path), missing))
        member_probabilities = score_features(members, {k: v[0] for k, v in windows.items()}, precision,
                                              params.batch_size)
        if forests:
            member_probabilities = np.concatenate([member_probabilities, np.stack(
                [forest.probabilities(windows[forest.features.extraction_key()][0], labels) for forest in forests])])
        ensemble = soft_vote(member_probabilities, weights)
        starts = next(iter(windows.values()))[1]
        clip = next(iter(settings_of.values())).clip_seconds
        for start, row in zip(starts, ensemble):
            window_rows.append({"path": str(path), "start_s": round(start, 4), "end_s": round(start + clip, 4),
                                "label": decide(row, labels, params.abstain_below), "confidence": float(row.max()),
                                **dict(zip(labels, row.tolist()))})
        pooled = ensemble.mean(axis=0)
        file_rows.append({"path": str(path), "windows": len(starts), "error": "", "pooled": pooled})
    if cut:
        print(cut_short_warning(cut, len(files)), file=sys.stderr)
    return Predictions(_file_table(file_rows, labels, params), pd.DataFrame(window_rows), labels)


def _file_table(rows: list[dict], labels: list[str], params: PredictParams) -> pd.DataFrame:
    table = []
    for row in rows:
        pooled = row.pop("pooled", None)
        if pooled is None:
            table.append({**row, "label": "", "confidence": np.nan, "uncertain": True})
            continue
        best = int(pooled.argmax())
        top = top_k_columns(pooled[None], labels, params.top_k)
        table.append({**row, "label": decide(pooled, labels, params.abstain_below), "confidence": float(pooled[best]),
                      "uncertain": bool(pooled[best] < params.min_confidence),
                      **{k: v[0] for k, v in top.items()}, **dict(zip(labels, pooled.tolist()))})
    return pd.DataFrame(table)


def check_one_window_length(members: Sequence[Member | ForestMember]) -> None:
    """Windows are pooled across members, so every member must see windows of the same span."""
    spans = {m.name: m.features.clip_seconds for m in members}
    if len(set(spans.values())) > 1:
        listing = ", ".join(f"{name}: {seconds:g} s" for name, seconds in spans.items())
        raise ConfigError(f"members see clips of different lengths ({listing}); predict pools windows of one "
                          f"length, so predict with each group of members separately (evaluate can mix them)")


def check_inputs_exist(inputs: Sequence[str]) -> None:
    """A path that does not exist is a typo, not an unreadable recording: it stops the command by name
    before any model is loaded."""
    missing = [item for item in inputs if not Path(item).exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)}: no such file or folder")


def predict(params: PredictParams) -> Predictions:
    """Load the ensemble in `params.models`, predict `params.inputs`, write CSV and JSON tables."""
    use_physical_cores()
    check_inputs_exist(params.inputs)
    output, windows_path, summary = output_paths(params.output)
    check_output_files(output, windows_path, summary)
    members = load_members(params.models, params.labels or None, params.progress)
    forests = load_forests(params.models, ensemble_labels(members)) if params.spectrum_forest else []
    print(f"predict: {len(members)} members, {len(forests)} spectrum forest(s), "
          f"precision {resolve_precision(params.precision)}")
    check_one_window_length([*members, *forests])
    files = expand_inputs(params.inputs)
    if not files:
        raise FileNotFoundError(f"no audio files found in {', '.join(params.inputs)}")
    result = predict_files(members, files, params, forests)
    atomic_write_text(output, result.files.to_csv(index=False))
    atomic_write_text(windows_path, result.windows.to_csv(index=False))
    atomic_write_json(summary, {
        "models": list(params.models), "members": [m.name for m in [*members, *forests]], "labels": result.labels,
        "hop_seconds": params.hop_seconds, "min_confidence": params.min_confidence,
        "abstain_below": params.abstain_below,
        "files": result.files.replace({np.nan: None}).to_dict(orient="records"),
        "windows": result.windows.to_dict(orient="records"),
    })
    failed = int((result.files["error"] != "").sum())
    uncertain = int(result.files["uncertain"].sum()) - failed
    abstained = int((result.files["label"] == UNCERTAIN).sum())
    print(f"{len(files)} files: {failed} unreadable, {uncertain} below confidence {params.min_confidence}, "
          f"{abstained} labelled {UNCERTAIN} (--abstain-below {params.abstain_below}) "
          f"-> {output}, {windows_path}, {summary}")
    return result
