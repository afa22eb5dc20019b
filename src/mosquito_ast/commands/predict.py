"""`predict`: label new recordings of any length with an ensemble.

The loop is the field runtime's (`mosquito_ast_lite.stream`): each recording is decoded a block at a time and
cut into clip-length windows (`--hop-seconds` apart; the last window aligned to the end so no tail is lost;
short recordings padded to one window), `--batch-size` windows are scored at once and their rows written as
they come, so memory does not grow with a recording's length. Here the scorer is the ensemble
(`EnsembleScorer`): every member scores every window (PyTorch, or its int8 graph with `--precision int8`),
a window's probability is the (weighted) mean over members and spectrum forests, a file's the mean over its
windows with a flight tone (the presence gate, `mosquito_ast_lite.presence`, runs first; windows without one
are not scored). Rows, thresholds, Raven tables and files are the runtime's too (`mosquito_ast_lite.tables`,
`mosquito_ast_lite.raven`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mosquito_ast_lite.audio import audio_seconds
from mosquito_ast_lite.io import check_output_files
from mosquito_ast_lite.stream import RowOptions, stream_predictions
from mosquito_ast_lite.presence import gate_band, gate_line
from mosquito_ast_lite.raven import review_sink, table_paths
from mosquito_ast_lite.tables import CollectedRows, closing_line, file_columns, output_paths, prediction_files, window_columns
from mosquito_ast_lite.runtime import expand_inputs, options_header

from ..config import ConfigError, PredictParams
from ..inference.votes import parse_weights, soft_vote
from ..inference.forest import ForestMember, load_forests, vote_weights
from ..inference.members import Member, ensemble_labels, load_members, score_features
from ..features import make_extractor
from ..hardware import resolve_precision, use_physical_cores


@dataclass
class Predictions:
    files: pd.DataFrame  # one row per input file (unreadable files too, with their error)
    windows: pd.DataFrame  # one row per window (empty when `predict` streamed them to disk)
    labels: list[str]


class EnsembleScorer:
    """The members and spectrum forests as the runtime loop's `WindowScorer`: waves -> each feature
    setting's fbank (computed once per setting) -> every member's probabilities -> the soft vote."""

    def __init__(self, members: Sequence[Member], params: PredictParams, forests: Sequence[ForestMember] = ()) -> None:
        self.members, self.forests, self.batch_size = list(members), list(forests), params.batch_size
        self.labels = ensemble_labels(members)
        self.weights, _ = vote_weights(parse_weights(params.weights, [m.name for m in members]), forests)
        self.precision = resolve_precision(params.precision)
        if self.precision == "int8":
            from ..inference.int8 import attach, graph_folder

            attach(self.members, graph_folder(None, False))
        self.settings = {m.features.extraction_key(): m.features for m in [*members, *forests]}
        self.extractors = {key: make_extractor(settings) for key, settings in self.settings.items()}
        self.clip_seconds = next(iter(self.settings.values())).clip_seconds
        self.sample_rates = tuple(sorted({settings.sample_rate for settings in self.settings.values()}))

    def __call__(self, waves: dict[int, np.ndarray]) -> np.ndarray:
        features = {key: self.extractors[key](waves[settings.sample_rate]) for key, settings in self.settings.items()}
        probabilities = score_features(self.members, features, self.precision, self.batch_size)
        if self.forests:
            probabilities = np.concatenate([probabilities, np.stack(
                [forest.probabilities(features[forest.features.extraction_key()], self.labels)
                 for forest in self.forests])])
        return soft_vote(probabilities, self.weights)


def row_options(params: PredictParams, scorer: EnsembleScorer) -> RowOptions:
    """The loop's options; int8 blocks keep to one file (see `RowOptions.gather_files`)."""
    return RowOptions(params.hop_seconds, params.top_k, params.min_confidence, params.presence_db,
                      params.batch_size, gather_files=scorer.precision != "int8")


def file_table(rows: Sequence[dict], labels: Sequence[str], top_k: int) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=file_columns(labels, top_k))


def warn(line: str) -> None:
    print(line, file=sys.stderr)


def predict_files(members: Sequence[Member], files: Sequence[str | Path], params: PredictParams,
                  forests: Sequence[ForestMember] = ()) -> Predictions:
    """Every window's and every file's row in memory (the Python API: a few files, not days of audio)."""
    scorer = EnsembleScorer(members, params, forests)
    rows = CollectedRows(scorer.labels)
    stream_predictions(scorer, files, review_sink(rows, params.detections_only, None, ()), row_options(params, scorer),
                       warn)
    return Predictions(file_table(rows.files, scorer.labels, params.top_k),
                       pd.DataFrame(rows.windows, columns=window_columns(scorer.labels)), scorer.labels)


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
    """Load the ensemble in `params.models`, predict `params.inputs`, write CSV and JSON tables (rows
    streamed to disk as they come; the returned files table, not the windows) and, with `params.raven`,
    the Raven selection tables."""
    from tqdm.auto import tqdm

    use_physical_cores()
    check_inputs_exist(params.inputs)
    outputs = output_paths(params.output)
    check_output_files(*outputs)
    members = load_members(params.models, params.labels or None, params.progress)
    forests = load_forests(params.models, ensemble_labels(members)) if params.spectrum_forest else []
    check_one_window_length([*members, *forests])
    files = expand_inputs(params.inputs)
    if not files:
        raise FileNotFoundError(f"no audio files found in {', '.join(params.inputs)}")
    tables = table_paths(files, params.raven) if params.raven else None
    scorer = EnsembleScorer(members, params, forests)
    options = row_options(params, scorer)
    print(f"predict: {len(members)} members, {len(forests)} spectrum forest(s), precision {scorer.precision}")
    band = gate_band(scorer.sample_rates[0])
    print(gate_line(params.presence_db, scorer.sample_rates[0]))
    header = {"models": list(params.models), "members": [m.name for m in [*members, *forests]],
              "labels": scorer.labels, **options_header(options, scorer.sample_rates[0])}
    began = time.perf_counter()
    total = round(sum(map(audio_seconds, files)), 1) if params.progress else 0.0
    with prediction_files(params.output, scorer.labels, params.top_k, header) as rows, \
            tqdm(total=total, desc="predict", unit=" s of audio", disable=not params.progress) as bar:
        windows = stream_predictions(scorer, files, review_sink(rows, params.detections_only, tables, band), options,
                                     warn, progress=bar.update)
    print(closing_line(rows.files, windows, time.perf_counter() - began,
                       [*map(str, outputs), *([params.raven] if params.raven else [])]))
    return Predictions(file_table(rows.files, scorer.labels, params.top_k),
                       pd.DataFrame(columns=window_columns(scorer.labels)), scorer.labels)
