"""The parameters of every command, one dataclass each, registered alike by `cli.py`: every field is a
flag and a YAML key with the same name and help text (see `params.py`, the engine).

The fields several commands share are declared once in `param_groups.py` and composed here; the
recipes `train --preset` fills in live in `training/recipes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .param_groups import (DataParams, LoopParams, NORM_STATS, OPTIMIZERS, PRECISIONS, SCHEDULERS, ReadParams,
                           precision_option, progress_option)
from .params import ConfigError, Params, base_type, coerce, option, restate
from .training.recipes import PLAIN_DEFAULTS, RECIPES, recipe_defaults

__all__ = ["AUGMENTATIONS", "CheckSplitParams", "ConfigError", "DataParams", "DemoParams", "DistillParams", "ENCODER_SIZES",
           "EvaluateParams", "ExportParams", "GROUP_HELP", "LoopParams", "METRICS", "NORM_STATS", "OPTIMIZERS", "PLAIN_DEFAULTS",
           "PRECISIONS", "Params", "PredictParams", "PretrainParams", "RECIPES", "ReadParams", "SCHEDULERS",
           "SELECTIONS", "SPLIT_MODES", "SplitParams", "SweepParams", "TAILS", "TrainParams", "base_type", "coerce",
           "option", "precision_option", "progress_option", "restate"]

AUGMENTATIONS = ("roll", "gain", "frequency", "mask", "mixup", "noise")
ENCODER_SIZES = ("tiny", "small", "base")
METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "loss")
SELECTIONS = ("best", "last")
SPLIT_MODES = ("independent", "random", "kfold")  # splits.MODES, not imported: it would load numpy for --help
TAILS = ("drop", "pad")  # segment.TAILS, likewise
GROUP_HELP = "Recording (group) of each file: auto, parent, regex:PATTERN or column:NAME."


@dataclass
class TrainParams(LoopParams, DataParams):
    """Fine-tune one classifier (one ensemble member)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV (path,label[,group]).")
    validation_dir: str | None = option(None, "Validation clips, same layouts as --train-dir (optional with --select last).")
    output: str = option("runs", "Output folder; the best member lands in <output>/best/<postfix>/.")
    postfix: str = option("member", "Name of this member's folder under <output>/best/.")
    ssl_checkpoint: str | None = option(None, "Encoder weights: a `pretrain` output, an old-notebook SSL model.safetensors folder, or a Hugging Face AST checkpoint (folder or hub id). Empty = from scratch.")
    preset: str = option("auto", "From scratch: an encoder size (tiny, small, base = the AudioSet AST architecture) or a recipe (small-data: see README) that also fills in every parameter you leave unset. auto = small-data without --ssl-checkpoint; with one, the checkpoint's architecture and plain defaults.", ("auto", *ENCODER_SIZES, *RECIPES))
    # The recipe-set parameters default to None: `resolve` fills in the preset's value or the plain one.
    epochs: int | None = restate(LoopParams, "epochs", None, "Number of epochs (default: 5; small-data recipe: 30).")
    batch_sizes: list[int] | None = restate(LoopParams, "batch_sizes", None, "Batch size per epoch, comma-separated; the last one repeats if shorter (default: 8; small-data recipe: 16).")
    learning_rate: float | None = restate(LoopParams, "learning_rate", None, "Peak learning rate (default: 5e-5; small-data recipe: 1e-3).")
    warmup_ratio: float = restate(LoopParams, "warmup_ratio", help="Share of steps used for linear warm-up (cosine, linear, constant_with_warmup).")
    norm_stats: str | None = restate(LoopParams, "norm_stats", None, "Feature normalization: audioset (AST's mean/std) or dataset (training-set mean/std) (default: audioset; small-data recipe: dataset).")
    freeze: str = option("none", "What trains: none (everything), head (the new head only), last-n (last N encoder layers + head).", ("none", "head", "last-n"))
    train_last_n_layers: int = option(0, "N for --freeze last-n.")
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.")
    class_weight: str | None = option(None, "Cross-entropy class weights: none, or balanced (inverse to each class's training clips, so every species counts alike, as balanced accuracy does) (default: none; small-data recipe: balanced).", ("none", "balanced"))
    augment: list[str] | None = option(None, f"Training augmentations, comma-separated, from: {', '.join(AUGMENTATIONS)}; none turns them off (default: none; small-data recipe: mask).")
    gain_db: float = option(6.0, "gain: largest gain change in dB.")
    frequency_scale: float = option(0.05, "frequency: largest relative frequency change (0.05 = +-5%).")
    mask_fraction: float = option(0.2, "mask: widest time and frequency mask, as a share of the axis.")
    mixup_alpha: float = option(0.4, "mixup: Beta(alpha, alpha) weight of the blend.")
    noise_std: float = option(0.05, "noise: std of Gaussian noise added to the normalized features.")
    select: str | None = option(None, "Which epoch becomes the member: best (by --metric on --validation-dir) or last (after --epochs; the validation set, optional then, only reports). last is honest when the validation clips also score the member, and trains on every labelled recording (default: best; small-data recipe: last).", SELECTIONS)
    metric: str | None = option(None, "Validation metric that picks the best epoch (default: accuracy; small-data recipe: balanced_accuracy).", METRICS)

    def resolve(self) -> None:
        if self.preset == "auto" and not self.ssl_checkpoint:
            self.preset = "small-data"
        for name, value in recipe_defaults(self.preset).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
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
class PretrainParams(LoopParams, DataParams):
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
    preset: str = option("tiny", "Encoder size when starting from scratch: tiny, small, base (ignored with --init).", ENCODER_SIZES)
    init: str | None = option(None, "Start from these encoder weights (Hugging Face AST folder or hub id, a `pretrain` output, an old SSL checkpoint); position embeddings are resized to the clip length.")
    seed: int = restate(LoopParams, "seed", help="Random seed for the validation split, initialisation, shuffling and masks.")
    scheduler: str = restate(LoopParams, "scheduler", "linear")
    grad_accumulation: int = restate(LoopParams, "grad_accumulation", 2)
    patience: int = restate(LoopParams, "patience", 10, "Early stopping: epochs without a validation-loss improvement of --min-delta (0 = off).")
    min_delta: float = option(1e-4, "Early stopping: smallest validation-loss decrease that counts as an improvement.")
    probe: str | None = option(None, "Labeled folder-per-class set: after pretraining, report a linear probe's group-cross-validated balanced accuracy, pretrained vs random encoder.")
    overwrite: bool = restate(LoopParams, "overwrite", help="Replace an existing pretrained model in --output.")

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
    progress: bool = progress_option()

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
    abstain_below: float = option(0.0, "Files and windows whose top probability is below this get the label `uncertain` instead of a species (0 = always name one); evaluate's coverage.csv shows the accuracy each threshold buys.")
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.")
    weights: str | None = option(None, "Member weights, as for `evaluate`.")
    batch_size: int = option(32, "Windows per inference batch.")
    precision: str = precision_option()
    progress: bool = progress_option()

    def validate(self) -> None:
        if not self.inputs or not self.models:
            raise ConfigError("give --models and at least one audio file or folder")
        if self.hop_seconds <= 0 or self.top_k < 1 or not 0 <= self.min_confidence <= 1:
            raise ConfigError("hop_seconds must be > 0, top_k >= 1 and min_confidence in [0, 1]")
        if not 0 <= self.abstain_below <= 1:
            raise ConfigError(f"abstain_below: must be between 0 and 1, got {self.abstain_below}")


@dataclass
class ExportParams(Params):
    """Export a member, or a whole ensemble with its soft vote, to ONNX: un-normalized fbank in, class
    probabilities out, with model.json beside it; checked against PyTorch on a few clips."""

    models: str = option(None, "Folder searched recursively for members, as for `evaluate`; all of them go into one graph (they must share feature settings and classes).")
    output: str = option(None, "Output folder for model.onnx and model.json (and model.int8.onnx with --int8).")
    int8: bool = option(False, "Also write model.int8.onnx (onnxruntime quantization of the MatMul/Gemm weights; dynamic, or static with --calibration); model.json then names it.")
    calibration: str | None = option(None, "With --int8: clips (a folder searched recursively or a manifest CSV) that calibrate static quantization; without it, quantization is dynamic.")
    calibration_clips: int = option(64, "Most clips read from --calibration, evenly spread.")
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.")
    weights: str | None = option(None, "Member weights of the soft vote, as for `evaluate`. Default: equal.")
    check_data: str | None = option(None, "Clips of the self-check (a folder searched recursively or a manifest CSV). Default: the members' training clips when they are still where they were, else generated clips.")
    check_clips: int = option(32, "Clips of the self-check (ONNX against PyTorch), evenly spread.")
    batch_size: int = option(32, "Clips per inference batch of the self-check.")
    cache_dir: str | None = restate(ReadParams, "cache_dir")
    no_cache: bool = restate(ReadParams, "no_cache")
    overwrite: bool = option(False, "Replace an existing export in --output.")
    progress: bool = progress_option()

    def validate(self) -> None:
        if not self.models or not self.output:
            raise ConfigError("--models and --output are required")
        if self.calibration and not self.int8:
            raise ConfigError("--calibration calibrates int8 quantization; add --int8")
        if self.check_clips < 1 or self.calibration_clips < 1 or self.batch_size < 1:
            raise ConfigError("check_clips, calibration_clips and batch_size must be at least 1")


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
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.recordings_per_species < 2 or self.members < 1 or self.epochs < 1 or self.pretrain_epochs < 1:
            raise ConfigError("the demo needs >= 2 recordings per species, >= 1 member, >= 1 epoch")


@dataclass
class SplitParams(Params):
    """Build train/validation folder trees (independent, random or k-fold) with a manifest and a report."""

    data: str = option(None, "Labeled audio: <class>/**/<file> folder or manifest CSV (path,label[,group]).", positional=True)
    output: str = option(None, "Output folder; the split lands in <output>/<mode>/.")
    mode: str = option("independent", "independent (no recording on both sides), random (groups ignored) or kfold.", SPLIT_MODES)
    group_by: str = option("auto", GROUP_HELP)
    validation_fraction: float = option(0.2, "Target share of clips in validation (independent, random).")
    seed: int = option(0, "Random seed; the same seed gives the same split.")
    folds: int = option(5, "Number of folds for --mode kfold.")
    copy: bool = option(False, "Copy files instead of hard-linking them.")
    symlink: bool = option(False, "Symlink files instead of hard-linking them.")
    overwrite: bool = option(False, "Replace an existing, non-empty split folder.")
    clip_seconds: float | None = option(None, "Cut recordings into clips of this length first (16 kHz wav under <output>/clips/).")
    hop_seconds: float | None = option(None, "Step between clip starts (default: the clip length).")
    tail: str = option("drop", "A last clip shorter than --clip-seconds: drop or pad.", TAILS)
    min_rms_db: float | None = option(None, "Drop clips quieter than this RMS level in dBFS (e.g. -50).")
    progress: bool = progress_option()

    @property
    def link(self) -> str:
        return "copy" if self.copy else "symlink" if self.symlink else "hard"

    def validate(self) -> None:
        if not self.data or not self.output:
            raise ConfigError("give the labeled audio (DATA) and --output")
        if self.copy and self.symlink:
            raise ConfigError("choose one of --copy and --symlink")
        if self.mode != "kfold" and not 0 < self.validation_fraction < 1:
            raise ConfigError(f"validation_fraction: must be between 0 and 1, got {self.validation_fraction}")
        for name in ("clip_seconds", "hop_seconds"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")


@dataclass
class CheckSplitParams(Params):
    """List recordings and identical audio found on both sides; exit 1 on leakage (2 on unusable input)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV.", positional=True)
    validation_dir: str = option(None, "Validation clips, same layouts.", positional=True)
    group_by: str = option("auto", GROUP_HELP)
    progress: bool = progress_option("Show progress bars while hashing audio.")

    def validate(self) -> None:
        if not self.train_dir or not self.validation_dir:
            raise ConfigError("give the training and the validation clips (TRAIN_DIR VALIDATION_DIR)")


@dataclass
class SweepParams(Params):
    """Train many members from one sweep file; finished runs are skipped when the command is repeated."""

    sweep_file: str = option(None, "Sweep YAML: base, grid, datasets, postfix (see examples/).", positional=True)
    output: str | None = option(None, "Sweep folder (default: the file's `output`, else runs/<file name>).")
    backend: str = option("local", "local (train in process or worker processes), papermill (the training notebook per run) or ray.")
    parallel: int = option(1, "Runs at once: worker processes with cores // N threads and one GPU each (local, papermill); Ray tasks at once on a local Ray.")
    dry_run: bool = option(False, "Print the expanded runs and what would happen to each; train nothing.")
    retry_failed: bool = option(False, "Run again the runs whose last attempt failed.")
    evaluate: bool = option(False, "Afterwards evaluate each dataset's ensemble on its validation set; compare them side by side.")
    ray_address: str | None = option(None, "Join this Ray cluster (e.g. auto or ray://host:10001) instead of starting a local Ray.")
    notebook: str | None = option(None, "Training notebook for --backend papermill (default: notebooks/train.ipynb).")

    def validate(self) -> None:
        if not self.sweep_file:
            raise ConfigError("give the sweep file (SWEEP_FILE)")



@dataclass
class DistillParams(LoopParams, ReadParams):
    """Distil an ensemble into one small student member, trained on the ensemble's soft votes.

    Loss: alpha * T^2 * KL(soft vote at temperature T || student at T) + (1 - alpha) * cross-entropy with
    the true labels of the clips that have them. The student takes the teachers' feature settings and
    labels and is an ordinary member folder that `evaluate` and `predict` load as they are."""

    models: str = option(None, "Teacher ensemble: folder searched recursively for members, as for `evaluate`; all must share feature settings.")
    data: str = option(None, "Clips to distil on: a folder-per-class tree or manifest CSV with labels (KL + cross-entropy), or any folder of audio or a manifest with a 'path' column only (KL alone).")
    output: str = option(None, "Student member folder (model.safetensors + config.json); working files (checkpoints, history) go to <output>-run/.")
    use_labels: str = option("auto", "Labels of --data: auto (a manifest's 'label' column; a folder's class sub-folders when any is named after a teacher class, else every audio file unlabelled), yes (required) or no (ignored: KL term only).", ("auto", "yes", "no"))
    validation_dir: str | None = option(None, "Labelled clips scored after every epoch; they only report (the last epoch is kept).")
    preset: str = option("tiny", "Student encoder size, from scratch: tiny, small, base.", ENCODER_SIZES)
    temperature: float = option(2.0, "Softmax temperature T of teachers and student in the KL term.")
    alpha: float = option(0.5, "Weight of the KL term (times T^2); 1 - alpha weighs the cross-entropy with the true labels. Unlabelled data: KL alone.")
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook teachers (weights only).")
    weights: str | None = option(None, "Teacher weights in the soft vote, as for `evaluate` (comma list in member order or a member,weight CSV). Default: equal.")
    epochs: int = restate(LoopParams, "epochs", 30, "Number of epochs; the last one is kept.")
    batch_sizes: list[int] = restate(LoopParams, "batch_sizes", [16])
    learning_rate: float = restate(LoopParams, "learning_rate", 1e-3)
    norm_stats: str | None = restate(LoopParams, "norm_stats", None, "Feature normalization of the student: the teachers' (default, the first member's), audioset (AST's mean/std) or dataset (mean/std of --data).")
    patience: int = restate(LoopParams, "patience", 0, "Unused: distill runs every epoch and keeps the last (must stay 0).")
    overwrite: bool = restate(LoopParams, "overwrite", help="Replace an existing student at --output.")
    class_weight: str = restate(TrainParams, "class_weight", "balanced", "Class weights of the cross-entropy term: none, or balanced (inverse to each class's labelled clips).")
    augment: list[str] = restate(TrainParams, "augment", ["mask"], f"Training augmentations, comma-separated, from: {', '.join(AUGMENTATIONS)}; none turns them off (mixup blends the teachers' targets too).")
    gain_db: float = restate(TrainParams, "gain_db")
    frequency_scale: float = restate(TrainParams, "frequency_scale")
    mask_fraction: float = restate(TrainParams, "mask_fraction")
    mixup_alpha: float = restate(TrainParams, "mixup_alpha")
    noise_std: float = restate(TrainParams, "noise_std")

    def resolve(self) -> None:
        if self.augment == ["none"]:
            self.augment = []

    def validate(self) -> None:
        super().validate()
        if not self.models or not self.data or not self.output:
            raise ConfigError("--models, --data and --output are required")
        self.check_loop()
        if self.patience:
            raise ConfigError("--patience stops on a validation metric; distill keeps the last epoch")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: must be positive, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha: must be between 0 and 1, got {self.alpha}")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ConfigError(f"augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
