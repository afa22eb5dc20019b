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


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    metadata = {"help": help, "choices": choices}
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
        self.validate()

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


@dataclass
class DataParams(Params):
    """Audio, feature and data-loading settings shared by every command that reads clips."""

    clip_seconds: float = option(1.0, "Clip length in seconds; shorter files are padded, longer ones trimmed.")
    sample_rate: int = option(16000, "Sample rate the audio is resampled to.")
    num_mel_bins: int = option(128, "Mel bins of the fbank features.")
    group_by: str = option("auto", "Recording (group) of each clip: auto, parent, regex:PATTERN or column:NAME.")
    max_bad_fraction: float = option(0.0, "Largest share of unreadable/empty/silent files tolerated (skipped and listed).")
    cache_dir: str | None = option(None, "Feature cache folder (default: the user cache directory).")
    no_cache: bool = option(False, "Compute features without reading or writing the cache.")
    num_workers: int = option(0, "DataLoader worker processes for decoding and features (0 = in process).")
    precision: str = option("auto", "auto (bf16-mixed on GPUs and CPUs with AMX/AVX512-BF16, else 32), 32, bf16-mixed, 16-mixed.", PRECISIONS)

    def validate(self) -> None:
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"max_bad_fraction: {self.max_bad_fraction} is not between 0 and 1")
        if self.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds: must be positive, got {self.clip_seconds}")


OPTIMIZERS = ("adamw", "rmsprop", "sgd")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")
METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "loss")


@dataclass
class TrainParams(DataParams):
    """Fine-tune one classifier (one ensemble member)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV (path,label[,group]).")
    validation_dir: str = option(None, "Validation clips, same layouts as --train-dir.")
    output: str = option("runs", "Output folder; the best member lands in <output>/best/<postfix>/.")
    postfix: str = option("member", "Name of this member's folder under <output>/best/.")
    ssl_checkpoint: str | None = option(None, "Encoder weights: a `pretrain` output, an old-notebook SSL model.safetensors folder, or a Hugging Face AST checkpoint (folder or hub id). Empty = from scratch.")
    preset: str = option("tiny", "Encoder size: tiny (tests, demo), small, base (AudioSet AST architecture).", ("tiny", "small", "base"))
    seed: int = option(42, "Random seed for initialisation, shuffling and dropout.")
    epochs: int = option(5, "Number of epochs.")
    batch_sizes: list[int] = option([8], "Batch size per epoch, comma-separated (a single value repeats; the last one repeats if shorter).")
    freeze: str = option("none", "What trains: none (everything), head (the new head only), last-n (last N encoder layers + head).", ("none", "head", "last-n"))
    train_last_n_layers: int = option(0, "N for --freeze last-n.")
    optimizer: str = option("adamw", "Optimizer.", OPTIMIZERS)
    scheduler: str = option("cosine", "Learning-rate schedule (per step).", SCHEDULERS)
    learning_rate: float = option(5e-5, "Peak learning rate.")
    weight_decay: float = option(0.01, "Weight decay.")
    warmup_ratio: float = option(0.05, "Share of steps used for linear warm-up (cosine, linear, constant_with_warmup).")
    grad_accumulation: int = option(1, "Batches accumulated per optimizer step.")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off).")
    dropout: float = option(0.0, "Dropout in the encoder.")
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.")
    norm_stats: str = option("audioset", "Feature normalization: audioset (AST's mean/std) or dataset (training-set mean/std).", ("audioset", "dataset"))
    metric: str = option("accuracy", "Validation metric that picks the best epoch.", METRICS)
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.")
    overwrite: bool = option(False, "Replace an existing member at <output>/best/<postfix>/.")
    progress: bool = option(True, "Show progress bars.")

    def validate(self) -> None:
        super().validate()
        if not self.train_dir or not self.validation_dir:
            raise ConfigError("--train-dir and --validation-dir are required")
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be at least 1, got {self.epochs}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch_sizes: need positive batch sizes, got {self.batch_sizes}")
        if self.freeze == "last-n" and self.train_last_n_layers < 1:
            raise ConfigError("--freeze last-n needs --train-last-n-layers N (N >= 1)")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")

    def batch_size_for(self, epoch: int) -> int:
        return self.batch_sizes[min(epoch, len(self.batch_sizes) - 1)]
