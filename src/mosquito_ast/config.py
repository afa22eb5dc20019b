"""The parameters of every command, one dataclass each, registered alike by `cli.py`: every field is a
flag and a YAML key with the same name and help text (see `params.py`, the engine).

This module holds the commands that train (train, pretrain, distill, sweep, demo) and is where every
command's parameters are imported from; `scoring_config.py` holds evaluate, predict and export,
`split_config.py` split and check-split. The fields several commands share are declared once in
`param_groups.py`; the recipes `train --preset` fills in live in `recipes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .param_groups import (DataParams, LoopParams, NORM_STATS, OPTIMIZERS, PRECISIONS, SCHEDULERS, ReadParams,
                           patience_option, precision_option, progress_option)
from .params import DATA, LOOP, MODEL, OUTPUT, SYSTEM, ConfigError, Params, base_type, coerce, option, restate
from .recipes import (FUNCTION_MATCHING, PRETRAINED, RECIPES, SCRATCH, SCRATCH_ENCODERS, checkpoint_config,
                      start_defaults, start_of)
from .scoring_config import EvaluateParams, ExportParams, PredictParams
from .split_config import GROUP_HELP, SPLIT_MODES, TAILS, CheckSplitParams, SplitParams

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
    norm_stats: str | None = option(None, "Feature normalization: audioset (AST's mean/std), dataset (training-set mean/std) or checkpoint (what the --ssl-checkpoint's encoder learned on); the default depends on the start (README).", (*NORM_STATS, "checkpoint"), group=DATA)
    positions: str = option("time-frequency", "Patch position embeddings: time-frequency (AST's, one per patch) or frequency (one per frequency row, the same at every time step); frequency is a candidate for unheard sessions, not a default.", POSITIONS, group=MODEL)
    spectrum_token: str = option("none", "The clip's time-averaged fbank, embedded by a linear layer: none, token (one more token beside the patches) or head (joined to the pooled output); a candidate for unheard sessions, not a default.", SPECTRUM_TOKENS, group=MODEL)
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
    select: str | None = option(None, "Which epoch becomes the member: best (by --metric on --validation-dir) or last (the validation set, optional then, only reports; honest when it also scores the member) (default: last).", SELECTIONS, group=LOOP)
    metric: str | None = option(None, "Validation metric that picks the best epoch and is reported (default: balanced_accuracy).", METRICS, group=LOOP)
    patience: int = patience_option()
    average_from_epoch: int = option(0, "Export the average of the weights after every step from this epoch (1-based) on, instead of the last weights (0 = off; needs --select last): SWAD-style averaging, a candidate, not a default.", group=LOOP)
    spectrum_forest: bool = option(True, "Also fit the spectrum-forest member (a random forest on the time-averaged log-mel fbank, ONNX) on the same training clips, once per training set, into <output>/best/spectrum-forest/.", group=OUTPUT)
    forest_share: float = option(0.25, "The spectrum forest's share of the soft vote (the AST members share the rest); in the hard vote it counts as one member. 0.25 kept the shared 2-fold within 0.02 of the AST vote (README).", group=OUTPUT)

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
    """Self-supervised pretraining of an AST encoder on unlabelled clips (done once, reused by `train`)."""

    data: str = option(None, "Unlabelled clips: a folder searched recursively (labels ignored) or a manifest CSV with a 'path' column.", group=DATA, required=True)
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
    patience: int = patience_option(10, "Early stopping: epochs without a validation-loss improvement of --min-delta (0 = off).")
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
class DemoParams(Params):
    """The whole workflow on generated data: data, splits, pretraining, two sweeps, two evaluations."""

    output: str = option("demo-output", "Folder for everything the demo makes.", group=OUTPUT)
    seed: int = option(0, "Seed of the generated data, the splits and the members.", group=DATA)
    recordings_per_species: int = option(6, "Generated recordings (sessions) per species.", group=DATA)
    clips_per_recording: int = option(8, "Generated 1 s clips per recording.", group=DATA)
    members: int = option(3, "Ensemble members per split.", group=MODEL)
    epochs: int = option(RECIPES[PRETRAINED]["epochs"], "Fine-tuning epochs per member; the default is train's from a pretrain output.", group=LOOP)
    pretrain_epochs: int = option(4, "Pretraining epochs.", group=LOOP)
    precision: str = precision_option()
    cache_dir: str | None = option(None, "Feature cache folder (default: <output>/cache).", group=SYSTEM)
    progress: bool = progress_option()

    def validate(self) -> None:
        if self.recordings_per_species < 2 or self.members < 1 or self.epochs < 1 or self.pretrain_epochs < 1:
            raise ConfigError("the demo needs >= 2 recordings per species, >= 1 member, >= 1 epoch")


@dataclass
class SweepParams(Params):
    """Train many members from one sweep file; finished runs are skipped when the command is repeated."""

    sweep_file: str = option(None, "Sweep YAML: base, grid, datasets (train, optional validation and test), postfix (see examples/).", positional=True, group=LOOP, required=True)
    output: str | None = option(None, "Sweep folder (default: the file's `output`, else runs/<file name>).", group=OUTPUT)
    backend: str = option("local", "local (train in process or worker processes), papermill (the training notebook per run) or ray.", ("local", "papermill", "ray"), group=SYSTEM)
    parallel: int = option(1, "Runs at once: worker processes with cores // N threads and one GPU each (local, papermill); Ray tasks at once on a local Ray.", group=SYSTEM)
    dry_run: bool = option(False, "Print the expanded runs and what would happen to each (fail: an input folder is missing; exit 1 then); train and write nothing.", group=SYSTEM)
    retry_failed: bool = option(False, "Run again the runs whose last attempt failed.", group=SYSTEM)
    evaluate: bool = option(False, "Afterwards evaluate each dataset's ensemble on its test side (`test:`), else on its validation side; compare them side by side.", group=OUTPUT)
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
    use_labels: str = option("auto", "Labels of --data: auto (a manifest's 'label' column, or class sub-folders named after teacher classes; else unlabelled), yes (required) or no (ignored: KL term only).", ("auto", "yes", "no"), group=DATA)
    validation_dir: str | None = option(None, "Labelled clips scored after every epoch; they only report (the last epoch is kept).", group=DATA)
    preset: str = option("tiny", "Student encoder size, from scratch: tiny, small, base.", ENCODER_SIZES, group=MODEL)
    temperature: float = option(FUNCTION_MATCHING["temperature"], "Softmax temperature T of teachers and student in the KL term.", group=LOOP)
    alpha: float = option(FUNCTION_MATCHING["alpha"], "Weight of the KL term (times T^2); 1 - alpha weighs the cross-entropy with the true labels (the default 1 leaves them out: the teachers carry them). Unlabelled data: KL alone.", group=LOOP)
    teaching: str = option(FUNCTION_MATCHING["teaching"], "Soft targets: consistent (the teachers score every augmented batch the student sees: function matching) or fixed (their vote on each un-augmented clip, computed once: cheaper on a CPU).", ("fixed", "consistent"), group=LOOP)
    labels: list[str] | None = option(None, "Class names in the old id order, comma-separated; needed for old-notebook teachers (weights only).", group=MODEL)
    weights: str | None = option(None, "Teacher weights in the soft vote, as for `evaluate` (comma list in member order or a member,weight CSV). Default: equal.", group=MODEL)
    spectrum_forest: bool = option(False, "Let the spectrum forest(s) under --models vote in the targets at their share, as in predict. Off by default: it cost the student 0.066 on the 2-fold (benchmarks/README.md).", group=MODEL)
    int8_teachers: bool = option(False, "Run the teachers as int8 onnxruntime graphs on the CPU, as `evaluate --precision int8` (built once, checked against fp32, cached): faster teacher passes with large teachers.", group=SYSTEM)
    # the student starts from scratch: the scratch recipe's values (recipes.py)
    epochs: int = restate(LoopParams, "epochs", RECIPES[SCRATCH]["epochs"], "Number of epochs; the last one is kept.")
    batch_sizes: list[int] = restate(LoopParams, "batch_sizes", RECIPES[SCRATCH]["batch_sizes"])
    learning_rate: float = restate(LoopParams, "learning_rate", RECIPES[SCRATCH]["learning_rate"])
    norm_stats: str = option("teachers", "Feature normalization of the student: teachers (the first member's), audioset (AST's mean/std) or dataset (mean/std of --data).", ("teachers", *NORM_STATS), group=DATA)
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
