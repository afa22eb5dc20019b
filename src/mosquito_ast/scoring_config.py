"""The parameters of the commands that use trained members: evaluate, predict and export."""

from __future__ import annotations

from dataclasses import dataclass

from mosquito_ast_lite.labels import DEFAULT_MIN_CONFIDENCE, DEFAULT_PRESENCE_DB

from .param_groups import ReadParams, forest_option, inference_precision_option, progress_option
from .params import DATA, MODEL, OUTPUT, SYSTEM, ConfigError, Params, option, restate


@dataclass
class EvaluateParams(ReadParams):
    """Evaluate an ensemble: every member under --models on the labeled clips in --data.

    Members carry their own feature settings (sample rate, clip length, mel bins, frames,
    normalization), so none are set here."""

    models: list[str] | None = option(None, "Folders searched recursively for members (model.safetensors + config.json), comma-separated, e.g. a sweep's output or a best/ folder; a member reached twice counts once.", group=MODEL, required=True)
    data: str = option(None, "Evaluation clips: folder-per-class tree or manifest CSV (path,label[,group]).", group=DATA, required=True)
    output: str = option("evaluation", "Output folder for predictions.csv, metrics.json, plots and report.html.", group=OUTPUT)
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook members (weights only).", group=MODEL)
    weights: str | None = option(None, "Member weights: comma list in member order (sorted member names, as in members.csv) or a CSV with columns member,weight. Default: equal.", group=MODEL)
    batch_size: int = option(32, "Clips per inference batch.", group=SYSTEM)
    bootstrap: int = option(1000, "Bootstrap resamples (of recordings) for 95% intervals of accuracy and balanced accuracy, and of the soft vote's difference to the best spectrum baseline (paired: the same resamples); 0 = no intervals.", group=OUTPUT)
    seed: int = option(0, "Seed of the bootstrap resampling.", group=OUTPUT)
    ece_bins: int = option(15, "Equal-width confidence bins of the expected calibration error.", group=OUTPUT)
    precision: str = inference_precision_option()
    spectrum_forest: bool = forest_option()
    baseline: bool = option(True, "Also fit the spectrum baselines (Welch or time-averaged log-mel spectrum + logistic regression / random forest) on the members' training clips and score them beside the members.", group=OUTPUT)
    progress: bool = progress_option()

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.bootstrap < 0 or self.ece_bins < 1:
            raise ConfigError("bootstrap must be >= 0 and ece_bins >= 1")


@dataclass
class PredictParams(Params):
    """Label new recordings of any length with the ensemble in --models."""

    inputs: list[str] = option([], "Audio files and/or folders (searched recursively).", positional=True, group=DATA, required=True)
    models: list[str] | None = option(None, "Folders searched recursively for members, comma-separated, as for `evaluate`.", group=MODEL, required=True)
    output: str = option("predictions.csv", "Per-file CSV; <stem>_windows.csv and <stem>.json are written beside it.", group=OUTPUT)
    hop_seconds: float = option(0.5, "Step between clip-length windows of a long recording.", group=DATA)
    top_k: int = option(3, "Labels listed per file, most probable first.", group=OUTPUT)
    min_confidence: float = option(DEFAULT_MIN_CONFIDENCE, "Files and windows whose top probability is below this are labelled `uncertain` instead of a species (0 = always name one); evaluate's coverage.csv shows the accuracy each threshold buys on labelled clips.", group=OUTPUT)
    presence_db: float = option(DEFAULT_PRESENCE_DB, "Presence gate: windows whose strongest spectral peak in the wingbeat band (150-3000 Hz) stands less than this many dB above its neighbourhood hold no flight tone; they are not scored and are labelled `no detection` (0 = off).", group=DATA)
    detections_only: bool = option(False, "Write only windows with a detection (a flight tone, a species at --min-confidence or above, not a `background` class) to the windows table.", group=OUTPUT)
    raven: str | None = option(None, "Also write one Raven Pro selection table per recording to this folder (detections; adjacent windows of one species merged).", group=OUTPUT)
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.", group=MODEL)
    weights: str | None = option(None, "Member weights, as for `evaluate`.", group=MODEL)
    spectrum_forest: bool = forest_option()
    batch_size: int = option(32, "Windows per inference batch.", group=SYSTEM)
    precision: str = inference_precision_option()
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.hop_seconds <= 0 or self.top_k < 1:
            raise ConfigError("hop_seconds must be > 0 and top_k >= 1")
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError(f"min_confidence: must be between 0 and 1, got {self.min_confidence}")
        if self.presence_db < 0:
            raise ConfigError(f"presence_db: must be >= 0 (0 = no presence gate), got {self.presence_db}")


@dataclass
class ExportParams(Params):
    """Export a member, or a whole ensemble with its soft vote, to ONNX: un-normalized fbank in, class
    probabilities out, with model.json beside it; checked against PyTorch on a few clips."""

    models: list[str] | None = option(None, "Folders searched recursively for members, comma-separated, as for `evaluate`; all of them go into one graph (they must share feature settings and classes).", group=MODEL, required=True)
    output: str = option(None, "Output folder for model.onnx and model.json (and model.int8.onnx with --int8).", group=OUTPUT, required=True)
    int8: bool = option(False, "Also write model.int8.onnx (onnxruntime quantization of the MatMul/Gemm weights; dynamic, or static with --calibration); model.json then names it.", group=OUTPUT)
    calibration: str | None = option(None, "With --int8: clips (a folder searched recursively or a manifest CSV) that calibrate static quantization; without it, quantization is dynamic.", group=DATA)
    calibration_clips: int = option(64, "Most clips read from --calibration, evenly spread.", group=DATA)
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.", group=MODEL)
    weights: str | None = option(None, "Member weights of the soft vote, as for `evaluate`. Default: equal.", group=MODEL)
    spectrum_forest: bool = forest_option()
    check_data: str | None = option(None, "Clips of the self-check (a folder searched recursively or a manifest CSV). Default: the members' training clips when they are still where they were, else generated clips.", group=DATA)
    check_clips: int = option(32, "Clips of the self-check (ONNX against PyTorch), evenly spread.", group=DATA)
    batch_size: int = option(32, "Clips per inference batch of the self-check.", group=SYSTEM)
    cache_dir: str | None = restate(ReadParams, "cache_dir")
    no_cache: bool = restate(ReadParams, "no_cache")
    overwrite: bool = option(False, "Replace an existing export in --output.", group=OUTPUT)
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.calibration and not self.int8:
            raise ConfigError("--calibration calibrates int8 quantization; add --int8")
        if self.check_clips < 1 or self.calibration_clips < 1 or self.batch_size < 1:
            raise ConfigError("check_clips, calibration_clips and batch_size must be at least 1")
