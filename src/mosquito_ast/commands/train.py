"""Fine-tune one classifier member: the Lightning module and the `train` run function."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from .. import augment
from ..checkpoints.classifier import outputs_finite, promote_member, save_member
from ..checkpoints.encoder import encoder_from_checkpoint
from ..config import TrainParams
from ..data import DatasetError, check_validation_labels, label_names
from ..inference.forest import FOREST_FOLDER
from ..evaluation.metrics import classification_metrics
from ..features import AUDIOSET_MEAN, AUDIOSET_STD, FeatureSettings, dataset_stats, normalize
from ..hardware import resolve_precision, use_physical_cores
from ..models.classifier import ASTClassifier, apply_freezing
from ..models.encoder import build_encoder, encoder_config, tie_positions_over_time
from ..training.datasets import ClipDataModule, ClipSet, feature_settings, load_clip_set, validation_set
from ..training.callbacks import WeightAverage
from ..training.loop import EpochModule
from ..training.run import Run, claimed_run, epoch_row, finish, fit_run, member_run, run_provenance
from ..training.optim import run_steps
from ..training.spectrum_forest import ensure_forest
from ..recipes import PRETRAINED, START_NAMES, start_defaults, values_in_effect

LOWER_IS_BETTER = {"loss"}


class ClassifierModule(EpochModule):
    """What one step computes; validation metrics are gathered into a per-epoch history."""

    def __init__(self, model: ASTClassifier, params: TrainParams, total_steps: int,
                 features: FeatureSettings, class_weights: torch.Tensor | None = None) -> None:
        super().__init__(model, params, total_steps)
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.features = features
        self._outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features)

    def outputs_finite(self) -> bool:
        """Asked by `FiniteGuard`: weights can stay finite while the outputs overflow."""
        return outputs_finite(self.model)

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        features, targets, *groups = batch  # `train`'s batches carry each clip's recording (group) id too
        loss = self.batch_loss(features, targets, *groups)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(targets))
        self.largest_batch = max(self.largest_batch, len(targets))
        self._train_losses.append(float(loss.detach()))
        return loss

    def batch_loss(self, features: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch, augmentations included (`distill` replaces it)."""
        features, soft_targets = augment_batch(features, targets, len(self.model.labels), self.params, self.features,
                                               groups)
        logits = self.model(features)
        return torch.nn.functional.cross_entropy(logits.float(), soft_targets, weight=self.class_weights,
                                                 label_smoothing=self.params.label_smoothing)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._train_losses: list[float] = []

    def on_train_epoch_end(self) -> None:
        """Without a validation set (`--select last`), the history keeps the training loss per epoch."""
        if not self.trainer.num_val_batches:
            self.history.append(epoch_row(self, train_loss=sum(self._train_losses) / max(1, len(self._train_losses))))

    def validation_step(self, batch, batch_index: int) -> None:
        features, targets = batch
        self._outputs.append((self.model(features).float(), targets))

    def on_validation_epoch_end(self) -> None:
        logits = torch.cat([o[0] for o in self._outputs])
        targets = torch.cat([o[1] for o in self._outputs])
        self._outputs.clear()
        if self.trainer.sanity_checking:
            return
        row = epoch_row(self, loss=float(torch.nn.functional.cross_entropy(logits, targets)),
                        **classification_metrics(targets.cpu().numpy(), logits.argmax(1).cpu().numpy()))
        self.history.append(row)
        self.log_dict({f"val_{k}": row[k] for k in ("loss", "accuracy", "balanced_accuracy", "f1")}, prog_bar=True)


def augment_batch(features: torch.Tensor, targets: torch.Tensor, num_classes: int, params: TrainParams,
                  settings: FeatureSettings, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the chosen augmentations to normalized features; returns features and soft targets.
    session-mixup (it needs each clip's class and recording `groups`) blends the clips as they come,
    before the others."""
    if "session-mixup" in params.augment:
        if groups is None:
            raise ValueError("session-mixup needs each clip's recording (group) id")
        features = augment.session_mixup(features, targets, groups, params.mixup_alpha)
    return augment_features(features, torch.nn.functional.one_hot(targets, num_classes).float(), params, settings)


def augment_features(features: torch.Tensor, soft: torch.Tensor, params, settings: FeatureSettings
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """`augment_batch` with per-clip target rows of any width (N, ...): mixup blends them with the clips,
    the other augmentations leave them as they are. `params` needs the augmentation fields of TrainParams."""
    chosen = set(params.augment)
    if "roll" in chosen:
        features = augment.roll_time(features)
    if "gain" in chosen:
        log_power_per_db = math.log(10) / 10
        features = augment.random_gain(features, params.gain_db * log_power_per_db / (2 * settings.norm_std))
    if "frequency" in chosen:
        features = augment.frequency_scale(features, params.frequency_scale, settings.top_frequency)
    if "mask" in chosen:
        features = augment.spec_augment(features, params.mask_fraction, params.mask_fraction)
    if "noise" in chosen:
        features = features + params.noise_std * torch.randn_like(features)
    if "mixup" in chosen:
        features, soft = augment.mixup(features, soft, params.mixup_alpha)
    return features, soft


class KeepBest(Callback):
    """Export the best epoch so far to a candidate member folder (atomically), by one metric, and stop
    after `patience` epochs without a better one (0 = never)."""

    def __init__(self, metric: str, folder: Path, features: FeatureSettings, provenance: dict, patience: int = 0) -> None:
        self.metric = metric
        self.patience = patience
        self.folder = folder
        self.features = features
        self.provenance = provenance
        self.best: float | None = None
        self.best_epoch = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.metric in LOWER_IS_BETTER else value > self.best

    def on_validation_end(self, trainer: L.Trainer, module: ClassifierModule) -> None:
        if trainer.sanity_checking or not module.history:
            return
        row = module.history[-1]
        if self.improved(row[self.metric]):
            self.best, self.best_epoch = row[self.metric], row["epoch"]
            save_member(module.model, self.folder, self.features, self.provenance)
        elif self.patience and row["epoch"] - self.best_epoch >= self.patience:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


def balanced_class_weights(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """n / (k * count of the class): each class weighs as much in the loss as in balanced accuracy."""
    counts = torch.bincount(targets, minlength=num_classes).float()
    return len(targets) / (num_classes * counts)


def run_paths(params: TrainParams) -> tuple[Path, Path]:
    """(member folder, working folder with checkpoints and logs) of a run."""
    run = member_run(params.output, params.postfix)
    return run.output, run.work


def checkpoint_stats(params: TrainParams) -> tuple[float, float]:
    """The mean/std the --ssl-checkpoint's encoder learned on: stored by `pretrain` and in members, AudioSet's
    for Hugging Face AST and old-notebook checkpoints (whose feature extractor used them)."""
    if params.start != PRETRAINED:
        return AUDIOSET_MEAN, AUDIOSET_STD
    stored = FeatureSettings.from_dict(params.checkpoint_config.get("features", {}))
    return stored.norm_mean, stored.norm_std


def normalization_warning(norm_stats: str, stored: tuple[float, float] | None) -> str | None:
    """A loud line when the features are normalized with other stats than the checkpoint's encoder learned
    on, as every input it sees then shifts; None when they agree or there is no checkpoint."""
    if stored is None or norm_stats == "checkpoint" or (norm_stats == "audioset" and
                                                        stored == (AUDIOSET_MEAN, AUDIOSET_STD)):
        return None
    return (f"--norm-stats {norm_stats} replaces the normalization the checkpoint's encoder learned on (mean "
            f"{stored[0]:.4g}, std {stored[1]:.4g}), so every input it sees is shifted from what it learned; "
            f"leave --norm-stats unset (checkpoint) unless you mean it")


def start_block(params: TrainParams, stored: tuple[float, float] | None, precision: str, threads: int) -> str:
    """What a run prints first: its start, precision, threads and every recipe-set value with its source."""
    start = (f"{params.ssl_checkpoint} ({START_NAMES[params.start]})" if params.ssl_checkpoint else
             f"{START_NAMES[params.start]} ({params.encoder_size} encoder)")
    details = {"norm_stats": f"mean {stored[0]:.4g}, std {stored[1]:.4g}"} if params.norm_stats == "checkpoint" else {}
    return (f"train {params.postfix} from {start}: precision {precision}, {threads} CPU threads\n"
            + values_in_effect(params, start_defaults(params.start), details))


def training_labels(train_set: ClipSet, val_set: ClipSet, source: str) -> list[str]:
    """The label map of the training clips; one class is refused (its softmax is 1 whatever the input, so
    a run "succeeded" and learned nothing), and so are validation classes training lacks."""
    labels = label_names(train_set.samples)
    if len(labels) < 2:
        raise DatasetError(f"{source}: clips of one class only ({', '.join(labels)}); a classifier needs at least "
                           f"two class folders")
    check_validation_labels(labels, val_set.samples)
    return labels


def train(params: TrainParams, callbacks: Sequence[Callback] = ()) -> Path:
    """Fine-tune one member and export its best epoch to `<output>/best/<postfix>/`.

    Extra Lightning `callbacks` (loggers, custom hooks) run beside the built-in ones.
    """
    run = member_run(params.output, params.postfix)
    return claimed_run(run, params.overwrite, params.resume,
                       lambda last_checkpoint: fine_tune(params, callbacks, run, last_checkpoint))


def fine_tune(params: TrainParams, callbacks: Sequence[Callback], run: Run, last_checkpoint: Path) -> Path:
    """`train`'s work once the run folder is this process's own."""
    precision = resolve_precision(params.precision)
    stored = checkpoint_stats(params) if params.ssl_checkpoint else None
    print(start_block(params, stored, precision, use_physical_cores()))
    warning = normalization_warning(params.norm_stats, stored)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    L.seed_everything(params.seed, verbose=False)

    settings = feature_settings(params)
    train_set = load_clip_set(params.train_dir, params, settings, params.progress)
    val_set = validation_set(params.validation_dir, params, settings, params.progress, train_set)
    labels = training_labels(train_set, val_set, params.train_dir)
    if params.norm_stats == "dataset":
        settings = settings.with_stats(*dataset_stats(train_set.features))
    elif params.norm_stats == "checkpoint":
        settings = settings.with_stats(*stored)

    train_targets = train_set.targets(labels)
    datamodule = ClipDataModule(
        torch.from_numpy(normalize(train_set.features, settings)), train_targets,
        torch.from_numpy(normalize(val_set.features, settings)), val_set.targets(labels),
        params.batch_size_for, params.seed, train_set.group_ids())
    module = ClassifierModule(build_classifier(params, settings, labels), params,
                              run_steps(params, len(train_set.samples)), settings,
                              balanced_class_weights(train_targets, len(labels))
                              if params.class_weight == "balanced" else None)
    provenance = run_provenance("training", params, precision, {
        "train": str(params.train_dir), "validation": str(params.validation_dir or ""),
        "train_clips": len(train_set.samples), "validation_clips": len(val_set.samples),
        "train_groups": train_set.groups(), "validation_groups": val_set.groups(),
        "skipped_files": [str(e) for e in train_set.bad + val_set.bad]})
    candidate = run.work / "best-candidate"
    keep_best = KeepBest(params.metric, candidate, settings, provenance, params.patience)
    selection = [keep_best] if params.select == "best" else []
    averaging = [WeightAverage(params.average_from_epoch)] if params.average_from_epoch else []
    fit_run(module, datamodule, params, precision, run, [*callbacks, *selection, *averaging], last_checkpoint,
            validate=bool(val_set.samples))
    if params.select == "last":
        chosen, value = len(module.history), module.history[-1].get(params.metric)
        if averaging:
            averaging[0].apply_to(module.model)
            value = None  # each epoch's validation scored that epoch's own weights, not their average
        save_member(module.model, candidate, settings, provenance)
    else:
        chosen, value = keep_best.best_epoch, keep_best.best
    promote_member(candidate, run.output, {"history": module.history, "best_epoch": chosen, "selected": params.select,
                                           "best_metric": {"name": params.metric, "value": value}})
    finish(last_checkpoint)
    if params.spectrum_forest:
        ensure_forest(run.output.parent / FOREST_FOLDER, train_set.samples, train_set.features, labels, settings,
                      params.forest_share)
    shown = (f"weights averaged over epochs {params.average_from_epoch}-{chosen}, not validated" if averaging else
             f"{params.metric} {value:.4f}" if value is not None else "no validation set")
    print(f"{params.select} epoch {chosen}: {shown} -> {run.output}")
    return run.output


def build_classifier(params: TrainParams, settings: FeatureSettings, labels: list[str]) -> ASTClassifier:
    """The classifier a run starts from: --ssl-checkpoint's encoder or a fresh one, positions and freezing
    as asked."""
    if params.ssl_checkpoint:
        encoder = encoder_from_checkpoint(params.ssl_checkpoint, settings, params.dropout)
    else:
        encoder = build_encoder(encoder_config(params.encoder_size, settings, params.dropout))
    if params.positions == "frequency":
        tie_positions_over_time(encoder)
    model = ASTClassifier(encoder, labels, params.spectrum_token, params.layer_drop)
    try:
        apply_freezing(model, params.freeze, params.train_last_n_layers)
    except ValueError as error:  # the encoder's depth is known only now, so the flags are named here
        raise ValueError(f"--freeze {params.freeze} --train-last-n-layers {params.train_last_n_layers}: "
                         f"{error}") from error
    return model
