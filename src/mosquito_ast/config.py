"""Typed parameters for each command, from defaults, a YAML file and CLI flags (flags win).

Each field carries its help text, so the CLI, YAML validation and the docs share one definition.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A parameter that cannot be used; the message names it and says what is allowed."""


def option(default: Any, help: str, choices: tuple[str, ...] | None = None, positional: bool = False) -> Any:
    """A parameter with its help text; `positional` makes it a command-line argument instead of a flag."""
    metadata = {"help": help, "choices": choices, "positional": positional}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> Any:
    if isinstance(annotation, str):
        annotation = eval(annotation, {"list": list, "str": str, "int": int, "float": float, "bool": bool})
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML or CLI value to the field's type, with an error that names the parameter."""
    kind = _base_type(annotation)
    if value is None:
        return None
    try:
        if typing.get_origin(kind) is list:
            item = typing.get_args(kind)[0]
            items = value.split(",") if isinstance(value, str) else value
            items = items if isinstance(items, (list, tuple)) else [items]
            return [item(str(v).strip()) if item is not str else str(v).strip() for v in items]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a valid {getattr(kind, '__name__', kind)}") from None


@dataclass
class Params:
    """Base of every command's parameters."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = coerce(spec.name, getattr(self, spec.name), spec.type)
            choices = spec.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{spec.name}: {value!r} is not one of {', '.join(choices)}")
            setattr(self, spec.name, value)
        self.resolve()
        self.validate()

    def resolve(self) -> None:
        """Fill in values that depend on others (presets) before validation."""

    def validate(self) -> None:
        """Cross-field checks of a subclass."""

    @classmethod
    def from_sources(cls, config_file: str | Path | None = None, **overrides: Any):
        values: dict[str, Any] = {}
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise ConfigError(f"{path}: config file not found")
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"{path}: a config file must be a mapping of parameter: value")
            values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        missing = [s.name for s in dataclasses.fields(cls)
                   if s.name not in values and s.default is dataclasses.MISSING
                   and s.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"missing required parameter(s): {', '.join('--' + m.replace('_', '-') for m in missing)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")


def precision_option() -> Any:
    return option("auto", "auto (bf16-mixed on GPUs and CPUs with AMX/AVX512-BF16, else 32), 32, bf16-mixed, 16-mixed.", PRECISIONS)


@dataclass
class ReadParams(Params):
    """How labeled clips are read: groups, bad files, feature cache, workers, precision."""

    group_by: str = option("auto", "Recording (group) of each clip: auto, parent, regex:PATTERN or column:NAME.")
    max_bad_fraction: float = option(0.0, "Largest share of unreadable/empty/silent files tolerated (skipped and listed).")
    cache_dir: str | None = option(None, "Feature cache folder (default: the user cache directory).")
    no_cache: bool = option(False, "Compute features without reading or writing the cache.")
    num_workers: int = option(0, "DataLoader worker processes for decoding and features (0 = in process).")
    precision: str = precision_option()

    def validate(self) -> None:
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"max_bad_fraction: {self.max_bad_fraction} is not between 0 and 1")


@dataclass
class DataParams(ReadParams):
    """Reading settings plus the feature settings of commands that build a model (train, pretrain)."""

    clip_seconds: float = option(1.0, "Clip length in seconds; shorter files are padded, longer ones trimmed.")
    sample_rate: int = option(16000, "Sample rate the audio is resampled to.")
    num_mel_bins: int = option(128, "Mel bins of the fbank features.")
    window_ms: float = option(25.0, "Fbank analysis window in milliseconds (the same at every sample rate).")
    hop_ms: float = option(10.0, "Fbank hop in milliseconds: 10 gives 100 frames per second at any sample rate.")
    max_frequency: float = option(0.0, "Top of the mel band in Hz (0 = Nyquist); e.g. 4000 for 8 kHz recordings resampled to 16 kHz.")

    def validate(self) -> None:
        super().validate()
        if self.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds: must be positive, got {self.clip_seconds}")


OPTIMIZERS = ("adamw", "rmsprop", "sgd")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")
AUGMENTATIONS = ("roll", "gain", "frequency", "mask", "mixup", "noise")
ENCODER_SIZES = ("tiny", "small", "base")
RECIPES: dict[str, dict[str, Any]] = {
    # Cross-session recipe for a few hundred clips without pretrained weights; README and
    # benchmarks/quality.py give the numbers behind each choice.
    "small-data": {"encoder": "tiny", "norm_stats": "dataset", "learning_rate": 1e-3, "epochs": 30,
                   "batch_sizes": [16], "metric": "balanced_accuracy", "class_weight": "balanced",
                   "augment": ["mask"], "select": "last"},
}
# Values of the parameters a recipe sets when neither the user nor the recipe gives one. These
# parameters default to None so that a value the user states, even this one, is never overridden.
PLAIN_DEFAULTS: dict[str, Any] = {"norm_stats": "audioset", "learning_rate": 5e-5, "epochs": 5,
                                  "batch_sizes": [8], "metric": "accuracy", "class_weight": "none", "augment": [],
                                  "select": "best"}
METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "loss")
SELECTIONS = ("best", "last")


class TrainingLoop:
    """Checks and the per-epoch batch size of the commands that run a training loop (train, pretrain)."""

    def check_loop(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be at least 1, got {self.epochs}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch_sizes: need positive batch sizes, got {self.batch_sizes}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")

    def batch_size_for(self, epoch: int) -> int:
        return self.batch_sizes[min(epoch, len(self.batch_sizes) - 1)]


@dataclass
class TrainParams(DataParams, TrainingLoop):
    """Fine-tune one classifier (one ensemble member)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV (path,label[,group]).")
    validation_dir: str | None = option(None, "Validation clips, same layouts as --train-dir (optional with --select last).")
    output: str = option("runs", "Output folder; the best member lands in <output>/best/<postfix>/.")
    postfix: str = option("member", "Name of this member's folder under <output>/best/.")
    ssl_checkpoint: str | None = option(None, "Encoder weights: a `pretrain` output, an old-notebook SSL model.safetensors folder, or a Hugging Face AST checkpoint (folder or hub id). Empty = from scratch.")
    preset: str = option("auto", "From scratch: an encoder size (tiny, small, base = the AudioSet AST architecture) or a recipe (small-data: see README) that also fills in every parameter you leave unset. auto = small-data without --ssl-checkpoint; with one, the checkpoint's architecture and plain defaults.", ("auto", *ENCODER_SIZES, *RECIPES))
    seed: int = option(42, "Random seed for initialisation, shuffling and dropout.")
    epochs: int | None = option(None, "Number of epochs (default: 5; small-data recipe: 30).")
    batch_sizes: list[int] | None = option(None, "Batch size per epoch, comma-separated; the last one repeats if shorter (default: 8; small-data recipe: 16).")
    freeze: str = option("none", "What trains: none (everything), head (the new head only), last-n (last N encoder layers + head).", ("none", "head", "last-n"))
    train_last_n_layers: int = option(0, "N for --freeze last-n.")
    optimizer: str = option("adamw", "Optimizer.", OPTIMIZERS)
    scheduler: str = option("cosine", "Learning-rate schedule (per step).", SCHEDULERS)
    learning_rate: float | None = option(None, "Peak learning rate (default: 5e-5; small-data recipe: 1e-3).")
    weight_decay: float = option(0.01, "Weight decay.")
    warmup_ratio: float = option(0.05, "Share of steps used for linear warm-up (cosine, linear, constant_with_warmup).")
    grad_accumulation: int = option(1, "Batches accumulated per optimizer step.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off).")
    dropout: float = option(0.0, "Dropout in the encoder.")
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.")
    class_weight: str | None = option(None, "Cross-entropy class weights: none, or balanced (inverse to each class's training clips, so every species counts alike, as balanced accuracy does) (default: none; small-data recipe: balanced).", ("none", "balanced"))
    norm_stats: str | None = option(None, "Feature normalization: audioset (AST's mean/std) or dataset (training-set mean/std) (default: audioset; small-data recipe: dataset).", ("audioset", "dataset"))
    augment: list[str] | None = option(None, f"Training augmentations, comma-separated, from: {', '.join(AUGMENTATIONS)}; none turns them off (default: none; small-data recipe: mask).")
    gain_db: float = option(6.0, "gain: largest gain change in dB.")
    frequency_scale: float = option(0.05, "frequency: largest relative frequency change (0.05 = +-5%).")
    mask_fraction: float = option(0.2, "mask: widest time and frequency mask, as a share of the axis.")
    mixup_alpha: float = option(0.4, "mixup: Beta(alpha, alpha) weight of the blend.")
    noise_std: float = option(0.05, "noise: std of Gaussian noise added to the normalized features.")
    select: str | None = option(None, "Which epoch becomes the member: best (by --metric on --validation-dir) or last (after --epochs; the validation set, optional then, only reports). last is honest when the validation clips also score the member, and trains on every labelled recording (default: best; small-data recipe: last).", SELECTIONS)
    patience: int = option(0, "Stop after N epochs without a better --metric on the validation set; the best epoch is kept (0 = run every epoch).")
    metric: str | None = option(None, "Validation metric that picks the best epoch (default: accuracy; small-data recipe: balanced_accuracy).", METRICS)
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.")
    overwrite: bool = option(False, "Replace an existing member at <output>/best/<postfix>/.")
    progress: bool = option(True, "Show progress bars.")

    def resolve(self) -> None:
        if self.preset == "auto" and not self.ssl_checkpoint:
            self.preset = "small-data"
        recipe = RECIPES.get(self.preset, {})
        for name, plain in PLAIN_DEFAULTS.items():
            if getattr(self, name) is None:
                value = recipe.get(name, plain)
                setattr(self, name, list(value) if isinstance(value, list) else value)
        if self.augment == ["none"]:
            self.augment = []

    @property
    def encoder_size(self) -> str:
        """The encoder preset used from scratch (a checkpoint brings its own architecture)."""
        return RECIPES[self.preset]["encoder"] if self.preset in RECIPES else self.preset if self.preset != "auto" else "base"

    def validate(self) -> None:
        super().validate()
        if not self.train_dir:
            raise ConfigError("--train-dir is required")
        if self.select == "best" and not self.validation_dir:
            raise ConfigError("--validation-dir is required to pick the best epoch (or keep the last: --select last)")
        if self.select == "last" and self.patience:
            raise ConfigError("--patience stops on the validation metric; it needs --select best")
        self.check_loop()
        if self.patience < 0:
            raise ConfigError(f"patience: must be 0 (off) or more, got {self.patience}")
        if self.freeze == "last-n" and self.train_last_n_layers < 1:
            raise ConfigError("--freeze last-n needs --train-last-n-layers N (N >= 1)")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ConfigError(f"augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")


@dataclass
class PretrainParams(DataParams, TrainingLoop):
    """Self-supervised pretraining of an AST encoder on unlabeled clips (done once, reused by `train`)."""

    data: str = option(None, "Unlabeled clips: a folder searched recursively (labels ignored) or a manifest CSV with a 'path' column.")
    output: str = option("pretrained", "Output folder: model.safetensors + config.json, loadable with `train --ssl-checkpoint`.")
    validation_dir: str | None = option(None, "Validation clips (folder or manifest); default: a seeded --validation-fraction of --data.")
    validation_fraction: float = option(0.1, "Share of --data held out for validation when no --validation-dir is given.")
    objective: str = option("denoise", "denoise (reconstruct the clean fbank from a time/frequency-masked one) or masked-patch (predict hidden patches).", ("denoise", "masked-patch"))
    mask_ratio: float = option(0.5, "masked-patch: share of patches hidden per clip.")
    time_mask_fraction: float = option(0.2, "denoise: widest time mask, as a share of the clip's frames.")
    frequency_mask_fraction: float = option(0.2, "denoise: widest frequency mask, as a share of the mel bins.")
    time_masks: int = option(2, "denoise: time masks per clip.")
    frequency_masks: int = option(2, "denoise: frequency masks per clip.")
    preset: str = option("tiny", "Encoder size when starting from scratch: tiny, small, base (ignored with --init).", ("tiny", "small", "base"))
    init: str | None = option(None, "Start from these encoder weights (Hugging Face AST folder or hub id, a `pretrain` output, an old SSL checkpoint); position embeddings are resized to the clip length.")
    seed: int = option(42, "Random seed for the validation split, initialisation, shuffling and masks.")
    epochs: int = option(150, "Most epochs (early stopping usually ends sooner).")
    batch_sizes: list[int] = option([8], "Batch size per epoch, comma-separated (the last one repeats).")
    optimizer: str = option("adamw", "Optimizer.", OPTIMIZERS)
    scheduler: str = option("linear", "Learning-rate schedule (per step).", SCHEDULERS)
    learning_rate: float = option(1e-4, "Peak learning rate.")
    weight_decay: float = option(0.01, "Weight decay.")
    warmup_ratio: float = option(0.05, "Share of steps used for linear warm-up.")
    grad_accumulation: int = option(2, "Batches accumulated per optimizer step.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off).")
    dropout: float = option(0.0, "Dropout in the encoder.")
    patience: int = option(10, "Early stopping: epochs without a validation-loss improvement of --min-delta (0 = off).")
    min_delta: float = option(1e-4, "Early stopping: smallest validation-loss decrease that counts as an improvement.")
    norm_stats: str = option("audioset", "Feature normalization: audioset (AST's mean/std) or dataset (training-set mean/std).", ("audioset", "dataset"))
    probe: str | None = option(None, "Labeled folder-per-class set: after pretraining, report a linear probe's group-cross-validated balanced accuracy, pretrained vs random encoder.")
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.")
    overwrite: bool = option(False, "Replace an existing pretrained model in --output.")
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        super().validate()
        if not self.data:
            raise ConfigError("--data is required")
        self.check_loop()
        if not self.validation_dir and not 0 < self.validation_fraction < 1:
            raise ConfigError(f"validation_fraction: must be between 0 and 1, got {self.validation_fraction}")
        if not 0 < self.mask_ratio < 1:
            raise ConfigError(f"mask_ratio: must be between 0 and 1, got {self.mask_ratio}")
        for name in ("time_mask_fraction", "frequency_mask_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name}: must be between 0 and 1, got {getattr(self, name)}")


@dataclass
class EvaluateParams(ReadParams):
    """Evaluate an ensemble: every member under --models on the labeled clips in --data.

    Members carry their own feature settings (sample rate, clip length, mel bins, frames,
    normalization), so none are set here."""

    models: str = option(None, "Folder searched recursively for members (model.safetensors + config.json), e.g. a sweep's output or a best/ folder.")
    data: str = option(None, "Evaluation clips: folder-per-class tree or manifest CSV (path,label[,group]).")
    output: str = option("evaluation", "Output folder for predictions.csv, metrics.json, plots and report.html.")
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook members (weights only).")
    weights: str | None = option(None, "Member weights: comma list in member order (sorted member names, as in members.csv) or a CSV with columns member,weight. Default: equal.")
    batch_size: int = option(32, "Clips per inference batch.")
    bootstrap: int = option(1000, "Bootstrap resamples for 95% intervals of accuracy and balanced accuracy (0 = off).")
    seed: int = option(0, "Seed of the bootstrap resampling.")
    ece_bins: int = option(15, "Equal-width confidence bins of the expected calibration error.")
    baseline: bool = option(True, "Also fit the spectrum baselines (Welch log spectrum + logistic regression / random forest) on the members' training clips and score them beside the members.")
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        super().validate()
        if not self.models or not self.data:
            raise ConfigError("--models and --data are required")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1, got {self.batch_size}")
        if self.bootstrap < 0 or self.ece_bins < 1:
            raise ConfigError("bootstrap must be >= 0 and ece_bins >= 1")


@dataclass
class PredictParams(Params):
    """Label new recordings of any length with the ensemble in --models."""

    inputs: list[str] = option([], "Audio files and/or folders (searched recursively).", positional=True)
    models: str = option(None, "Folder searched recursively for members, as for `evaluate`.")
    output: str = option("predictions.csv", "Per-file CSV; <stem>_windows.csv and <stem>.json are written beside it.")
    hop_seconds: float = option(0.5, "Step between clip-length windows of a long recording.")
    top_k: int = option(3, "Labels listed per file, most probable first.")
    min_confidence: float = option(0.5, "Files whose top probability is below this are marked uncertain.")
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.")
    weights: str | None = option(None, "Member weights, as for `evaluate`.")
    batch_size: int = option(32, "Windows per inference batch.")
    precision: str = precision_option()
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        if not self.inputs or not self.models:
            raise ConfigError("give --models and at least one audio file or folder")
        if self.hop_seconds <= 0 or self.top_k < 1 or not 0 <= self.min_confidence <= 1:
            raise ConfigError("hop_seconds must be > 0, top_k >= 1 and min_confidence in [0, 1]")


@dataclass
class DemoParams(Params):
    """The whole workflow on generated data: data, splits, pretraining, two sweeps, two evaluations."""

    output: str = option("demo-output", "Folder for everything the demo makes.")
    seed: int = option(0, "Seed of the generated data, the splits and the members.")
    recordings_per_species: int = option(6, "Generated recordings (sessions) per species.")
    clips_per_recording: int = option(8, "Generated 1 s clips per recording.")
    members: int = option(3, "Ensemble members per split.")
    epochs: int = option(8, "Fine-tuning epochs per member.")
    pretrain_epochs: int = option(4, "Pretraining epochs.")
    precision: str = precision_option()
    cache_dir: str | None = option(None, "Feature cache folder (default: <output>/cache).")
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        if self.recordings_per_species < 2 or self.members < 1 or self.epochs < 1 or self.pretrain_epochs < 1:
            raise ConfigError("the demo needs >= 2 recordings per species, >= 1 member, >= 1 epoch")
