"""The parameter groups several commands share, each field declared once: how labeled clips are read
(`ReadParams`), their features (`DataParams`) and the training loop (`LoopParams`); commands compose
them in `config.py` and restate (`params.restate`) only a default or help text of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .params import DATA, LOOP, MODEL, OUTPUT, SYSTEM, ConfigError, Params, option

PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")
OPTIMIZERS = ("adamw", "rmsprop", "sgd")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")
NORM_STATS = ("audioset", "dataset")


def precision_option() -> Any:
    return option("auto", "auto (bf16-mixed on GPUs and CPUs with AMX/AVX512-BF16, else 32), 32, bf16-mixed, 16-mixed.", PRECISIONS, group=SYSTEM)


def inference_precision_option() -> Any:
    return option("auto", "auto (bf16 where the hardware has it, else 32), 32, bf16-mixed, 16-mixed, or int8 (CPU: each member as a cached onnxruntime graph with int8 weights; README, Precision and speed).", INFERENCE_PRECISIONS, group=SYSTEM)


def forest_option() -> Any:
    return option(True, "Vote with the spectrum-forest member(s) under --models (fitted by train; their vote share is in their config.json); --no-spectrum-forest uses the AST members alone.", group=MODEL)


def patience_option(default: int = 0, help: str = "Stop after N epochs without a better --metric on the validation set; the best epoch is kept (0 = run every epoch).") -> Any:
    """Early stopping, for train and pretrain only: distill keeps its last epoch, so it has no --patience."""
    return option(default, help, group=LOOP)


def progress_option(help: str = "Show progress bars.") -> Any:
    return option(True, help, group=SYSTEM)


@dataclass
class ReadParams(Params):
    """How labeled clips are read: groups, bad files, feature cache, workers, precision."""

    group_by: str = option("auto", "Recording (group) of each clip: auto, parent, regex:PATTERN or column:NAME.", group=DATA)
    max_bad_fraction: float = option(0.0, "Largest share of unreadable/empty/silent files tolerated (skipped and listed).", group=DATA)
    cache_dir: str | None = option(None, "Feature cache folder (default: the user cache directory).", group=SYSTEM)
    no_cache: bool = option(False, "Compute features without reading or writing the cache.", group=SYSTEM)
    num_workers: int = option(0, "DataLoader worker processes for decoding and features (0 = in process).", group=SYSTEM)
    precision: str = precision_option()

    def validate(self) -> None:
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"max_bad_fraction: {self.max_bad_fraction} is not between 0 and 1")


@dataclass
class DataParams(ReadParams):
    """Reading settings plus the feature settings of commands that build a model (train, pretrain)."""

    clip_seconds: float = option(1.0, "Clip length in seconds; shorter files are padded, longer ones trimmed.", group=DATA)
    sample_rate: int = option(16000, "Sample rate the audio is resampled to.", group=DATA)
    num_mel_bins: int = option(128, "Mel bins of the fbank features.", group=DATA)
    window_ms: float = option(25.0, "Fbank analysis window in milliseconds (the same at every sample rate).", group=DATA)
    hop_ms: float = option(10.0, "Fbank hop in milliseconds: 10 gives 100 frames per second at any sample rate.", group=DATA)
    max_frequency: float = option(0.0, "Top of the mel band in Hz (0 = Nyquist); e.g. 4000 for 8 kHz recordings resampled to 16 kHz.", group=DATA)

    def validate(self) -> None:
        super().validate()
        if self.clip_seconds <= 0:
            raise ConfigError(f"clip_seconds: must be positive, got {self.clip_seconds}")


@dataclass
class LoopParams(Params):
    """The training loop of `train` and `pretrain`: seed, epochs, batches, optimizer, schedule (early stopping is each command's own)."""

    seed: int = option(42, "Random seed for initialisation, shuffling and dropout.", group=LOOP)
    epochs: int = option(150, "Most epochs (early stopping usually ends sooner).", group=LOOP)
    batch_sizes: list[int] = option([8], "Batch size per epoch, comma-separated (the last one repeats).", group=LOOP)
    optimizer: str = option("adamw", "Optimizer.", OPTIMIZERS, group=LOOP)
    scheduler: str = option("cosine", "Learning-rate schedule (per step).", SCHEDULERS, group=LOOP)
    learning_rate: float = option(1e-4, "Peak learning rate.", group=LOOP)
    weight_decay: float = option(0.01, "Weight decay.", group=LOOP)
    warmup_ratio: float = option(0.05, "Share of steps used for linear warm-up.", group=LOOP)
    grad_accumulation: int = option(1, "Batches accumulated per optimizer step.", group=LOOP)
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off).", group=LOOP)
    dropout: float = option(0.0, "Dropout in the encoder.", group=MODEL)
    norm_stats: str = option("audioset", "Feature normalization: audioset (AST's mean/std) or dataset (training-set mean/std).", NORM_STATS, group=DATA)
    resume: bool = option(False, "Continue an interrupted run from its last checkpoint.", group=OUTPUT)
    checkpoint_minutes: float = option(5.0, "Write the resumable last.ckpt after an epoch once this many minutes have passed since the last one: an interruption loses at most that much work (0 = every epoch; AST-base writes about 1 GB).", group=OUTPUT)
    overwrite: bool = option(False, "Replace an existing member at <output>/best/<postfix>/.", group=OUTPUT)
    progress: bool = progress_option()

    def check_loop(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs: must be at least 1, got {self.epochs}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch_sizes: need positive batch sizes, got {self.batch_sizes}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")

    def batch_size_for(self, epoch: int) -> int:
        return self.batch_sizes[min(epoch, len(self.batch_sizes) - 1)]
