"""The parameters of every command, one dataclass each, registered alike by `cli.py`: every field is a
flag and a YAML key with the same name and help text (see `params.py`, the engine).

The fields several commands share are declared once in `param_groups.py` and composed here; the
recipes `train --preset` fills in live in `recipes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .param_groups import (DataParams, LoopParams, NORM_STATS, OPTIMIZERS, PRECISIONS, SCHEDULERS, ReadParams,
                           forest_option, inference_precision_option, precision_option, progress_option)
from .params import DATA, LOOP, MODEL, OUTPUT, SYSTEM, ConfigError, Params, base_type, coerce, option, restate
from .recipes import (FUNCTION_MATCHING, PRETRAINED, RECIPES, SCRATCH, SCRATCH_ENCODERS, checkpoint_config,
                      start_defaults, start_of)

__all__ = ["AUGMENTATIONS", "CheckSplitParams", "ConfigError", "DataParams", "DemoParams", "DistillParams", "ENCODER_SIZES",
           "EvaluateParams", "ExportParams", "GROUP_HELP", "LoopParams", "METRICS", "NORM_STATS", "OPTIMIZERS",
           "PRECISIONS", "Params", "PredictParams", "PretrainParams", "RECIPES", "ReadParams", "SCHEDULERS",
           "SELECTIONS", "SPLIT_MODES", "SplitParams", "SweepParams", "TAILS", "TrainParams", "base_type", "coerce",
           "option", "precision_option", "progress_option", "restate"]

AUGMENTATIONS = ("roll", "gain", "frequency", "mask", "mixup", "noise", "session-mixup")
ENCODER_SIZES = ("tiny", "small", "base")
POSITIONS = ("time-frequency", "frequency")  # models.encoder.tie_positions_over_time makes the second
SPECTRUM_TOKENS = ("none", "token", "head")  # models.classifier.SPECTRUM_TOKEN_MODES, not imported (torch)
METRICS = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "loss")
SELECTIONS = ("best", "last")
SPLIT_MODES = ("independent", "random", "kfold")  # splits.MODES, not imported: it would load numpy for --help
TAILS = ("drop", "pad")  # segment.TAILS, likewise
GROUP_HELP = "Recording (group) of each file: auto, parent, regex:PATTERN or column:NAME."


@dataclass
class TrainParams(LoopParams, DataParams):
    """Fine-tune one classifier (one ensemble member).

    `resolve` reads the --ssl-checkpoint's config.json once and keeps it as `checkpoint_config` ({} without
    one), with `start`: how the run starts (recipes.py): from scratch, a checkpoint of ours, an AudioSet AST.
    """

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV (path,label[,group]).", group=DATA, required=True)
    validation_dir: str | None = option(None, "Validation clips, same layouts as --train-dir (optional with --select last).", group=DATA)
    output: str = option("runs", "Output folder; the best member lands in <output>/best/<postfix>/.", group=OUTPUT)
    postfix: str = option("member", "Name of this member's folder under <output>/best/.", group=OUTPUT)
    ssl_checkpoint: str | None = option(None, "Encoder weights: a `pretrain` output, an old-notebook SSL model.safetensors folder, or a Hugging Face AST checkpoint (folder or hub id). Empty = from scratch.", group=MODEL)
    preset: str = option("auto", "Encoder size from scratch: tiny, small, base (the AudioSet AST architecture); auto and small-data (the recipe's old name) = tiny. A checkpoint brings its own architecture.", ("auto", *ENCODER_SIZES, "small-data"), group=MODEL)
    # The recipe-set parameters default to None: `resolve` fills in the value of the run's start.
    epochs: int | None = restate(LoopParams, "epochs", None, "Number of epochs (default by start: 30 from scratch or a pretrain output, 5 from an AudioSet AST).")
    batch_sizes: list[int] | None = restate(LoopParams, "batch_sizes", None, "Batch size per epoch, comma-separated; the last one repeats if shorter (default by start: 16 from scratch or a pretrain output, 8 from an AudioSet AST).")
    learning_rate: float | None = restate(LoopParams, "learning_rate", None, "Peak learning rate (default by start: 1e-3 from scratch or a pretrain output, 5e-5 from an AudioSet AST).")
    warmup_ratio: float = restate(LoopParams, "warmup_ratio", help="Share of steps used for linear warm-up (cosine, linear, constant_with_warmup).")
    norm_stats: str | None = option(None, "Feature normalization: audioset (AST's mean/std), dataset (training-set mean/std) or checkpoint (the mean/std the --ssl-checkpoint's encoder learned on: stored by pretrain and members, AudioSet's for other checkpoints) (default by start: dataset from scratch, checkpoint from a checkpoint of ours, audioset from an AudioSet AST).", (*NORM_STATS, "checkpoint"), group=DATA)
    positions: str = option("time-frequency", "Patch position embeddings: time-frequency (AST's, one per patch) or frequency (one per frequency row, the same at every time step: the encoder sees where in the spectrum a patch lies, not when in the clip). frequency is a candidate for recording sessions never heard (benchmarks/unseen_candidates.yaml), not a default.", POSITIONS, group=MODEL)
    spectrum_token: str = option("none", "The clip's time-averaged fbank (over its real frames), embedded by a linear layer: none, token (one more token beside the patches) or head (joined to the pooled output before the head). A spectrum model's view of the clip; a candidate for recording sessions never heard (benchmarks/unseen_candidates.yaml), not a default.", SPECTRUM_TOKENS, group=MODEL)
    layer_drop: float = option(0.0, "Skip each encoder layer with this probability per training batch (LayerDrop, Fan et al. 2019); every layer runs at inference. A regulariser against memorising a session; a candidate, not a default.", group=MODEL)
    freeze: str = option("none", "What trains: none (everything), head (the new head only), last-n (last N encoder layers + head).", ("none", "head", "last-n"), group=MODEL)
    train_last_n_layers: int = option(0, "N for --freeze last-n.", group=MODEL)
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy loss.", group=LOOP)
    class_weight: str | None = option(None, "Cross-entropy class weights: none, or balanced (inverse to each class's training clips, so every species counts alike, as balanced accuracy does) (default: balanced).", ("none", "balanced"), group=LOOP)
    augment: list[str] | None = option(None, f"Training augmentations, comma-separated, from: {', '.join(AUGMENTATIONS)}; none turns them off (default: mask).", group=LOOP)
    gain_db: float = option(6.0, "gain: largest gain change in dB.", group=LOOP)
    frequency_scale: float = option(0.05, "frequency: largest relative frequency change (0.05 = +-5%).", group=LOOP)
    mask_fraction: float = option(0.2, "mask: widest time and frequency mask, as a share of the axis.", group=LOOP)
    mixup_alpha: float = option(0.4, "mixup and session-mixup (each clip blended with one of its class from another recording session in the batch): Beta(alpha, alpha) weight of the blend.", group=LOOP)
    noise_std: float = option(0.05, "noise: std of Gaussian noise added to the normalized features.", group=LOOP)
    select: str | None = option(None, "Which epoch becomes the member: best (by --metric on --validation-dir) or last (after --epochs; the validation set, optional then, only reports). last is honest when the validation clips also score the member, and trains on every labelled recording (default: last).", SELECTIONS, group=LOOP)
    metric: str | None = option(None, "Validation metric that picks the best epoch and is reported (default: balanced_accuracy).", METRICS, group=LOOP)
    average_from_epoch: int = option(0, "Export the average of the weights after every step from this epoch (1-based) on, instead of the last weights (0 = off; needs --select last). With --scheduler constant_with_warmup this is SWAD-style averaging, a candidate for recording sessions never heard (see benchmarks/unseen_candidates.yaml); not a default.", group=LOOP)
    spectrum_forest: bool = option(True, "Also fit the spectrum-forest member (a random forest on the time-averaged log-mel fbank, ONNX) on the same training clips, once per training set, into <output>/best/spectrum-forest/: on sessions never heard it lifted the vote from 0.54 to 0.61-0.67 (issue 25).", group=OUTPUT)
    forest_share: float = option(0.25, "The spectrum forest's share of the soft vote (the AST members share the rest); in the hard vote it counts as one member. 0.25 (one more member of 3) kept the shared 2-fold within 0.02 of the AST vote, where 0.5 lost 0.07 on one fold (README, the spectrum-forest member).", group=OUTPUT)

    def resolve(self) -> None:
        self.checkpoint_config = checkpoint_config(self.ssl_checkpoint)
        self.start = start_of(self.ssl_checkpoint, self.checkpoint_config)
        for name, (value, _) in start_defaults(self.start).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.augment == ["none"]:
            self.augment = []

    @property
    def encoder_size(self) -> str:
        """The encoder preset used from scratch (a checkpoint brings its own architecture)."""
        return SCRATCH_ENCODERS.get(self.preset, self.preset)

    def validate(self) -> None:
        super().validate()
        if not self.postfix or "/" in self.postfix or "\\" in self.postfix or self.postfix in (".", ".."):
            raise ConfigError(f"postfix: {self.postfix!r} is not a folder name; the member must stay in <output>/best/")
        if self.norm_stats == "checkpoint" and not self.ssl_checkpoint:
            raise ConfigError("norm_stats: checkpoint takes the normalization of --ssl-checkpoint; give one, or use dataset or audioset")
        if self.select == "best" and not self.validation_dir:
            raise ConfigError("--validation-dir is required to pick the best epoch (or keep the last: --select last)")
        if self.select == "last" and self.patience:
            raise ConfigError("--patience stops on the validation metric; it needs --select best")
        if self.average_from_epoch and self.select != "last":
            raise ConfigError("--average-from-epoch exports averaged weights, which no epoch's validation picked; "
                              "it needs --select last")
        if not 0 <= self.average_from_epoch <= (self.epochs or self.average_from_epoch):
            raise ConfigError(f"average_from_epoch: must be 0 (off) or an epoch of the run (1-{self.epochs}), "
                              f"got {self.average_from_epoch}")
        if not 0 < self.forest_share < 1:
            raise ConfigError(f"forest_share: must lie between 0 and 1 (a share of the soft vote), got {self.forest_share}")
        self.check_loop()
        if self.patience < 0:
            raise ConfigError(f"patience: must be 0 (off) or more, got {self.patience}")
        if not 0 <= self.layer_drop < 1:
            raise ConfigError(f"layer_drop: must be at least 0 and below 1, got {self.layer_drop}")
        if self.freeze == "last-n" and self.train_last_n_layers < 1:
            raise ConfigError("--freeze last-n needs --train-last-n-layers N (N >= 1)")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ConfigError(f"augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")


@dataclass
class PretrainParams(LoopParams, DataParams):
    """Self-supervised pretraining of an AST encoder on unlabeled clips (done once, reused by `train`)."""

    data: str = option(None, "Unlabeled clips: a folder searched recursively (labels ignored) or a manifest CSV with a 'path' column.", group=DATA, required=True)
    output: str = option("pretrained", "Output folder: model.safetensors + config.json, loadable with `train --ssl-checkpoint`.", group=OUTPUT)
    validation_dir: str | None = option(None, "Validation clips (folder or manifest); default: a seeded --validation-fraction of --data.", group=DATA)
    validation_fraction: float = option(0.1, "Share of --data held out for validation when no --validation-dir is given.", group=DATA)
    objective: str = option("denoise", "denoise (reconstruct the clean fbank from a time/frequency-masked one) or masked-patch (predict hidden patches).", ("denoise", "masked-patch"), group=LOOP)
    mask_ratio: float = option(0.5, "masked-patch: share of patches hidden per clip.", group=LOOP)
    time_mask_fraction: float = option(0.2, "denoise: widest time mask, as a share of the clip's frames.", group=LOOP)
    frequency_mask_fraction: float = option(0.2, "denoise: widest frequency mask, as a share of the mel bins.", group=LOOP)
    time_masks: int = option(2, "denoise: time masks per clip.", group=LOOP)
    frequency_masks: int = option(2, "denoise: frequency masks per clip.", group=LOOP)
    preset: str = option("tiny", "Encoder size when starting from scratch: tiny, small, base (ignored with --init).", ENCODER_SIZES, group=MODEL)
    init: str | None = option(None, "Start from these encoder weights (Hugging Face AST folder or hub id, a `pretrain` output, an old SSL checkpoint); position embeddings are resized to the clip length.", group=MODEL)
    seed: int = restate(LoopParams, "seed", help="Random seed for the validation split, initialisation, shuffling and masks.")
    scheduler: str = restate(LoopParams, "scheduler", "linear")
    grad_accumulation: int = restate(LoopParams, "grad_accumulation", 2)
    patience: int = restate(LoopParams, "patience", 10, "Early stopping: epochs without a validation-loss improvement of --min-delta (0 = off).")
    min_delta: float = option(1e-4, "Early stopping: smallest validation-loss decrease that counts as an improvement.", group=LOOP)
    probe: str | None = option(None, "Labeled folder-per-class set: after pretraining, report a linear probe's group-cross-validated balanced accuracy, pretrained vs random encoder.", group=OUTPUT)
    overwrite: bool = restate(LoopParams, "overwrite", help="Replace an existing pretrained model in --output.")

    def validate(self) -> None:
        super().validate()
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

    models: list[str] | None = option(None, "Folders searched recursively for members (model.safetensors + config.json), comma-separated, e.g. a sweep's output or a best/ folder; a member reached twice counts once.", group=MODEL, required=True)
    data: str = option(None, "Evaluation clips: folder-per-class tree or manifest CSV (path,label[,group]).", group=DATA, required=True)
    output: str = option("evaluation", "Output folder for predictions.csv, metrics.json, plots and report.html.", group=OUTPUT)
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook members (weights only).", group=MODEL)
    weights: str | None = option(None, "Member weights: comma list in member order (sorted member names, as in members.csv) or a CSV with columns member,weight. Default: equal.", group=MODEL)
    batch_size: int = option(32, "Clips per inference batch.", group=SYSTEM)
    bootstrap: int = option(1000, "Bootstrap resamples for 95% intervals of accuracy and balanced accuracy (0 = off).", group=OUTPUT)
    seed: int = option(0, "Seed of the bootstrap resampling.", group=OUTPUT)
    ece_bins: int = option(15, "Equal-width confidence bins of the expected calibration error.", group=OUTPUT)
    precision: str = inference_precision_option()
    spectrum_forest: bool = forest_option()
    baseline: bool = option(True, "Also fit the spectrum baselines (Welch log spectrum or the members' time-averaged log-mel fbank, + logistic regression / random forest) on the members' training clips and score them beside the members.", group=OUTPUT)
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
    min_confidence: float = option(0.5, "Files whose top probability is below this are marked uncertain.", group=OUTPUT)
    abstain_below: float = option(0.0, "Files and windows whose top probability is below this get the label `uncertain` instead of a species (0 = always name one); evaluate's coverage.csv shows the accuracy each threshold buys.", group=OUTPUT)
    labels: list[str] | None = option(None, "Class names in the old id order; needed for old-notebook members.", group=MODEL)
    weights: str | None = option(None, "Member weights, as for `evaluate`.", group=MODEL)
    spectrum_forest: bool = forest_option()
    batch_size: int = option(32, "Windows per inference batch.", group=SYSTEM)
    precision: str = inference_precision_option()
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.hop_seconds <= 0 or self.top_k < 1 or not 0 <= self.min_confidence <= 1:
            raise ConfigError("hop_seconds must be > 0, top_k >= 1 and min_confidence in [0, 1]")
        if not 0 <= self.abstain_below <= 1:
            raise ConfigError(f"abstain_below: must be between 0 and 1, got {self.abstain_below}")


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


@dataclass
class DemoParams(Params):
    """The whole workflow on generated data: data, splits, pretraining, two sweeps, two evaluations."""

    output: str = option("demo-output", "Folder for everything the demo makes.", group=OUTPUT)
    seed: int = option(0, "Seed of the generated data, the splits and the members.", group=DATA)
    recordings_per_species: int = option(6, "Generated recordings (sessions) per species.", group=DATA)
    clips_per_recording: int = option(8, "Generated 1 s clips per recording.", group=DATA)
    members: int = option(3, "Ensemble members per split.", group=MODEL)
    epochs: int = option(RECIPES[PRETRAINED]["epochs"], "Fine-tuning epochs per member (default: the recipe's).", group=LOOP)
    pretrain_epochs: int = option(4, "Pretraining epochs.", group=LOOP)
    precision: str = precision_option()
    cache_dir: str | None = option(None, "Feature cache folder (default: <output>/cache).", group=SYSTEM)
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.recordings_per_species < 2 or self.members < 1 or self.epochs < 1 or self.pretrain_epochs < 1:
            raise ConfigError("the demo needs >= 2 recordings per species, >= 1 member, >= 1 epoch")


@dataclass
class SplitParams(Params):
    """Build train/validation(/test) folder trees (independent, random or k-fold) with a manifest and a report."""

    data: str = option(None, "Labeled audio: <class>/**/<file> folder or manifest CSV (path,label[,group]).", positional=True, group=DATA, required=True)
    output: str = option(None, "Output folder; the split lands in <output>/<mode>/.", group=OUTPUT, required=True)
    mode: str = option("independent", "independent (no recording on both sides), random (groups ignored) or kfold.", SPLIT_MODES, group=DATA)
    group_by: str = option("auto", GROUP_HELP, group=DATA)
    validation_fraction: float = option(0.2, "Target share of clips in validation (independent, random).", group=DATA)
    test_fraction: float = option(0.0, "Target share of clips held out in <output>/<mode>/test/, whole recordings in every mode, never on another side: `evaluate --data` it to score members on clips none of them chose anything on (0 = no test side).", group=DATA)
    seed: int = option(0, "Random seed; the same seed gives the same split.", group=DATA)
    folds: int = option(5, "Number of folds for --mode kfold.", group=DATA)
    copy: bool = option(False, "Copy files instead of hard-linking them.", group=OUTPUT)
    symlink: bool = option(False, "Symlink files instead of hard-linking them.", group=OUTPUT)
    overwrite: bool = option(False, "Replace an existing, non-empty split folder.", group=OUTPUT)
    clip_seconds: float | None = option(None, "Cut recordings into clips of this length first (16 kHz wav under <output>/clips/).", group=DATA)
    hop_seconds: float | None = option(None, "Step between clip starts (default: the clip length).", group=DATA)
    tail: str = option("drop", "A last clip shorter than --clip-seconds: drop or pad.", TAILS, group=DATA)
    min_rms_db: float | None = option(None, "Drop clips quieter than this RMS level in dBFS (e.g. -50).", group=DATA)
    progress: bool = progress_option()

    @property
    def link(self) -> str:
        return "copy" if self.copy else "symlink" if self.symlink else "hard"

    def validate(self) -> None:
        if self.copy and self.symlink:
            raise ConfigError("choose one of --copy and --symlink")
        if self.mode != "kfold" and not 0 < self.validation_fraction < 1:
            raise ConfigError(f"validation_fraction: must be between 0 and 1, got {self.validation_fraction}")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(f"test_fraction: must be at least 0 and below 1, got {self.test_fraction}")
        if self.mode != "kfold" and self.validation_fraction + self.test_fraction >= 1:
            raise ConfigError(f"validation_fraction {self.validation_fraction} + test_fraction {self.test_fraction} "
                              f"leave no clips to train on")
        for name in ("clip_seconds", "hop_seconds"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")


@dataclass
class CheckSplitParams(Params):
    """List recordings, identical audio and re-encoded copies found on both sides; exit 1 on leakage (2 on unusable input)."""

    train_dir: str = option(None, "Training clips: folder-per-class tree or manifest CSV.", positional=True, group=DATA, required=True)
    validation_dir: str = option(None, "Validation clips, same layouts.", positional=True, group=DATA, required=True)
    group_by: str = option("auto", GROUP_HELP, group=DATA)
    progress: bool = progress_option("Show progress bars while hashing audio.")


@dataclass
class SweepParams(Params):
    """Train many members from one sweep file; finished runs are skipped when the command is repeated."""

    sweep_file: str = option(None, "Sweep YAML: base, grid, datasets, postfix (see examples/).", positional=True, group=LOOP, required=True)
    output: str | None = option(None, "Sweep folder (default: the file's `output`, else runs/<file name>).", group=OUTPUT)
    backend: str = option("local", "local (train in process or worker processes), papermill (the training notebook per run) or ray.", group=SYSTEM)
    parallel: int = option(1, "Runs at once: worker processes with cores // N threads and one GPU each (local, papermill); Ray tasks at once on a local Ray.", group=SYSTEM)
    dry_run: bool = option(False, "Print the expanded runs and what would happen to each; train nothing.", group=LOOP)
    retry_failed: bool = option(False, "Run again the runs whose last attempt failed.", group=LOOP)
    evaluate: bool = option(False, "Afterwards evaluate each dataset's ensemble on its validation set; compare them side by side.", group=OUTPUT)
    ray_address: str | None = option(None, "Join this Ray cluster (e.g. auto or ray://host:10001) instead of starting a local Ray.", group=SYSTEM)
    notebook: str | None = option(None, "Training notebook for --backend papermill (default: notebooks/train.ipynb).", group=SYSTEM)


@dataclass
class DistillParams(LoopParams, ReadParams):
    """Distil an ensemble into one small student member, trained on the ensemble's soft votes.

    Loss: alpha * T^2 * KL(soft vote at temperature T || student at T) + (1 - alpha) * cross-entropy with
    the true labels of the clips that have them. By default function matching: the teachers score every
    augmented, mixed batch and the student learns their vote alone (alpha 1, T 1). The student takes the
    teachers' feature settings and labels and is an ordinary member folder that `evaluate` and `predict`
    load as they are."""

    models: list[str] | None = option(None, "Teacher ensemble: folders searched recursively for members, comma-separated, as for `evaluate`; all must share feature settings.", group=MODEL, required=True)
    data: str = option(None, "Clips to distil on: a folder-per-class tree or manifest CSV with labels (KL + cross-entropy), or any folder of audio or a manifest with a 'path' column only (KL alone).", group=DATA, required=True)
    output: str = option(None, "Student member folder (model.safetensors + config.json); working files (checkpoints, history) go to <output>-run/.", group=OUTPUT, required=True)
    use_labels: str = option("auto", "Labels of --data: auto (a manifest's 'label' column; a folder's class sub-folders when any is named after a teacher class, else every audio file unlabelled), yes (required) or no (ignored: KL term only).", ("auto", "yes", "no"), group=DATA)
    validation_dir: str | None = option(None, "Labelled clips scored after every epoch; they only report (the last epoch is kept).", group=DATA)
    preset: str = option("tiny", "Student encoder size, from scratch: tiny, small, base.", ENCODER_SIZES, group=MODEL)
    temperature: float = option(FUNCTION_MATCHING["temperature"], "Softmax temperature T of teachers and student in the KL term.", group=LOOP)
    alpha: float = option(FUNCTION_MATCHING["alpha"], "Weight of the KL term (times T^2); 1 - alpha weighs the cross-entropy with the true labels (the default 1 leaves them out: the teachers carry them). Unlabelled data: KL alone.", group=LOOP)
    teaching: str = option(FUNCTION_MATCHING["teaching"], "Where the soft targets come from: consistent (the teachers score every augmented batch the student sees, mixed clips included: function matching, Beyer et al. 2022; one teacher pass per batch) or fixed (the teachers' vote on each clip as it is, computed once: cheaper with large teachers on a CPU).", ("fixed", "consistent"), group=LOOP)
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook teachers (weights only).", group=MODEL)
    weights: str | None = option(None, "Teacher weights in the soft vote, as for `evaluate` (comma list in member order or a member,weight CSV). Default: equal.", group=MODEL)
    int8_teachers: bool = option(False, "Run the teachers as int8 onnxruntime graphs on the CPU, as `evaluate --precision int8` (built once, checked against fp32, cached beside the features): faster teacher passes with large teachers, which are most of a CPU run's time under consistent teaching.", group=SYSTEM)
    # the student starts from scratch: the scratch recipe's values (recipes.py)
    epochs: int = restate(LoopParams, "epochs", RECIPES[SCRATCH]["epochs"], "Number of epochs; the last one is kept.")
    batch_sizes: list[int] = restate(LoopParams, "batch_sizes", RECIPES[SCRATCH]["batch_sizes"])
    learning_rate: float = restate(LoopParams, "learning_rate", RECIPES[SCRATCH]["learning_rate"])
    norm_stats: str = option("teachers", "Feature normalization of the student: teachers (the first member's), audioset (AST's mean/std) or dataset (mean/std of --data).", ("teachers", *NORM_STATS), group=DATA)
    patience: int = restate(LoopParams, "patience", 0, "Unused: distill runs every epoch and keeps the last (must stay 0).")
    overwrite: bool = restate(LoopParams, "overwrite", help="Replace an existing student at --output.")
    class_weight: str = restate(TrainParams, "class_weight", RECIPES[SCRATCH]["class_weight"], "Class weights of the cross-entropy term: none, or balanced (inverse to each class's labelled clips).")
    augment: list[str] = restate(TrainParams, "augment", FUNCTION_MATCHING["augment"], f"Training augmentations, comma-separated, from: {', '.join(AUGMENTATIONS)}; none turns them off (with fixed teaching mixup blends the teachers' targets too).")
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
        self.check_loop()
        if self.patience:
            raise ConfigError("--patience stops on a validation metric; distill keeps the last epoch")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: must be positive, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha: must be between 0 and 1, got {self.alpha}")
        if "session-mixup" in self.augment:
            raise ConfigError("augment: session-mixup needs each clip's label and recording; distill's batches "
                              "carry soft targets")
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        if unknown:
            raise ConfigError(f"augment: unknown {', '.join(unknown)}; choose from {', '.join(AUGMENTATIONS)}")
