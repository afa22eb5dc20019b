"""Distil an ensemble into one student member: the teachers' soft vote as targets, `train`'s loop.

Soft targets. By default (`--teaching consistent`, function matching) the teachers score every augmented
batch the student sees (`inference.teachers.TeacherVote`), so the targets match the clips as augmented, mixed
ones included. With `--teaching fixed` they are scored once, before training, on the un-augmented clips
(`inference.teachers.Teachers.vote`, on the features the student trains on), and mixup blends those targets
with their clips: one teacher pass in all instead of one per batch. Members give probabilities, not logits,
so the target at temperature T is softmax(log p / T) of the (weighted) soft vote p, the vote `evaluate`
scores, of the AST members (with `--spectrum-forest`, the forests under --models vote in it at their share,
as in `predict` and `export`). For one teacher this is exactly its tempered softmax:
log softmax(z) = z - logsumexp(z) differs from the logits z by a constant per clip, which the softmax
removes, so softmax(log p / T) = softmax(z / T). For several teachers it tempers their average, not the
average of their tempered outputs; the two differ only through the members' own averaging.

Loss per batch: alpha * T^2 * KL(targets || softmax(student logits / T)) (mean over clips) +
(1 - alpha) * the cross-entropy of the student (at T = 1) with the true labels, averaged over the clips
that have one (class-weighted with --class-weight balanced). The default alpha = 1 trains on the KL term
alone, as does data without labels. T^2 keeps the KL gradients' scale independent of T.

The student is an ordinary member folder: the teachers' labels (by name, in the first member's order) and
feature settings, a fresh encoder of --preset, the last epoch kept; its config records the teachers.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from ..checkpoints import model_folders
from ..checkpoints.classifier import save_member
from ..config import ConfigError, DistillParams
from ..data import UNLABELLED, DatasetError, Sample, discover
from ..inference.forest import load_forests
from ..inference.votes import parse_weights
from ..inference.members import ensemble_labels, load_members
from ..inference.teachers import SMALLEST_PROBABILITY, Teachers, TeacherVote, forest_record
from ..features import AUDIOSET_MEAN, AUDIOSET_STD, FeatureSettings, dataset_stats, normalize
from ..hardware import resolve_precision, use_physical_cores
from ..inference.int8 import attach, graph_folder
from ..models.classifier import ASTClassifier
from ..models.encoder import build_encoder, encoder_config
from ..training.datasets import ClipDataModule, ClipSet, load_clip_set, load_unlabelled, validation_set
from ..training.optim import run_steps
from ..training.run import Run, claimed_run, finish, fit_run, run_provenance, student_run
from ..recipes import distill_defaults, values_in_effect
from .train import ClassifierModule, augment_features, balanced_class_weights

class DistillLoss(NamedTuple):
    total: torch.Tensor
    kl: torch.Tensor
    cross_entropy: torch.Tensor


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) per row: the tempered softmax of the logits behind p (see the module notes)."""
    logits = np.log(np.maximum(np.asarray(probabilities, np.float64), SMALLEST_PROBABILITY)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=-1, keepdims=True)


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, hard: torch.Tensor, labelled: torch.Tensor,
                      temperature: float, alpha: float, class_weights: torch.Tensor | None = None) -> DistillLoss:
    """alpha * T^2 * KL(teacher || softmax(logits / T)) + (1 - alpha) * cross-entropy with `hard`.

    `teacher`: (N, C) targets already at temperature T; `hard`: (N, C) one-hot true labels (rows of
    zeros for unlabelled clips; mixup blends them); `labelled`: (N,) 1 for clips with a label (blended
    alike). The KL is averaged over all clips, the cross-entropy over the labelled ones (0 without any)."""
    logits = logits.float()
    log_student = torch.log_softmax(logits / temperature, dim=-1)
    kl = (torch.xlogy(teacher, teacher) - teacher * log_student).sum(-1).mean()
    weights = class_weights if class_weights is not None else torch.ones(logits.shape[-1], device=logits.device)
    # mixup keeps the batch's labelled mass (a permutation of it is blended in), so it counts the labelled
    # clips; without any, `hard` is all zeros and so is the sum
    cross_entropy = -(hard * weights * torch.log_softmax(logits, dim=-1)).sum() / labelled.sum().clamp_min(1.0)
    total = alpha * temperature ** 2 * kl + (1 - alpha) * cross_entropy
    return DistillLoss(total, kl, cross_entropy)


def packed_targets(teacher: np.ndarray, targets: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """One float row per clip: [teacher targets at T (C), one-hot true label or zeros (C), labelled flag],
    so the datamodule batches them and mixup blends them together with the clips. `targets`: class ids,
    -1 for an unlabelled clip; None when no clip has a label."""
    if targets is None:
        targets = torch.full((len(teacher),), -1, dtype=torch.long)
    labelled = targets >= 0
    hard = torch.nn.functional.one_hot(targets.clamp(min=0), num_classes).float() * labelled.unsqueeze(1)
    return torch.cat([torch.from_numpy(teacher.astype(np.float32)), hard, labelled.float().unsqueeze(1)], dim=1)


class DistillModule(ClassifierModule):
    """`train`'s module (optimizer, schedule, validation metrics, history) with the distillation loss."""

    def __init__(self, model: ASTClassifier, params: DistillParams, total_steps: int, features: FeatureSettings,
                 alpha: float, class_weights: torch.Tensor | None = None, teachers: TeacherVote | None = None) -> None:
        super().__init__(model, params, total_steps, features, class_weights)
        self.alpha = alpha
        self.teachers = teachers

    def batch_loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        features, targets = augment_features(features, targets, self.params, self.features)
        k = len(self.model.labels)
        if self.teachers is not None:
            targets = torch.cat([self.teachers(features), targets[:, k:]], dim=1)
        loss = distillation_loss(self.model(features), targets[:, :k], targets[:, k:2 * k], targets[:, 2 * k],
                                 self.params.temperature, self.alpha, self.class_weights)
        self.log_dict({"train_kl": loss.kl, "train_ce": loss.cross_entropy}, on_step=True, on_epoch=False,
                      batch_size=len(features))
        return loss.total


def load_teachers(params: DistillParams) -> Teachers:
    """The members with their soft-vote weights, and the forests beside them; all share one feature extraction."""
    members = load_members(params.models, params.labels or None, params.progress)
    forests = load_forests(params.models, ensemble_labels(members)) if params.spectrum_forest else []
    keys = {m.features.extraction_key() for m in [*members, *forests]}
    if len(keys) > 1:
        listing = "; ".join(f"{m.name}: {m.features.extraction_key()}" for m in [*members, *forests])
        raise ConfigError(f"{', '.join(params.models)}: the teachers differ in feature settings ({listing}); distil from "
                          f"members of one feature setting")
    return Teachers(members, parse_weights(params.weights, [m.name for m in members]), forests)


def labelled_samples(source: str | Path, use_labels: str, labels: Sequence[str], group_by: str) -> list[Sample] | None:
    """The clips of `source` with their labels (a manifest's rows with an empty label are unlabelled clips
    among them), or None when its clips are used unlabelled (see --use-labels). A labelled clip of a class
    the teachers do not know is an error naming the class."""
    source = Path(source)
    if use_labels == "no":
        return None
    if not source.exists():
        raise DatasetError(f"{source}: no such file or directory")
    if source.is_file():
        with open(source, newline="") as handle:
            header = next(csv.reader(handle), [])
        if "label" not in header:
            if use_labels == "yes":
                raise DatasetError(f"{source}: --use-labels yes needs a manifest with a 'label' column")
            return None
    elif use_labels == "auto":
        folders = {p.name for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if not folders & set(labels):
            print(f"distill: no sub-folder of {source} is named after a teacher class; its audio is used unlabelled")
            return None
    samples = discover(source, group_by, unlabelled=True)
    unknown = sorted({s.label for s in samples} - set(labels) - {UNLABELLED})
    if unknown:
        raise DatasetError(f"{source}: classes the teachers do not know: {', '.join(unknown)} "
                           f"(teachers know {', '.join(labels)})")
    return samples


def student_settings(params: DistillParams, teacher: FeatureSettings, features: np.ndarray) -> FeatureSettings:
    if params.norm_stats == "audioset":
        return teacher.with_stats(AUDIOSET_MEAN, AUDIOSET_STD)
    if params.norm_stats == "dataset":
        return teacher.with_stats(*dataset_stats(features))
    return teacher


def training_groups(teachers: Teachers, samples: list[Sample] | None) -> list[str] | None:
    """Recordings the student learned from, directly or through its teachers; None when unknown."""
    teacher_groups = [m.train_groups for m in teachers.members]
    teacher_groups += [f.config.get("data", {}).get("train_groups") for f in teachers.forests]
    if samples is None or any(g is None for g in teacher_groups):
        return None
    return sorted({s.group for s in samples}.union(*teacher_groups))


def distill(params: DistillParams, callbacks: Sequence[Callback] = ()) -> Path:
    """Train one student on the soft votes of the members under `params.models`; returns its folder."""
    run = student_run(params.output)
    inside = [root for root in model_folders(params.models) if run.output.resolve().is_relative_to(root.resolve())]
    if inside:
        raise ConfigError(f"--output {run.output} lies inside --models {inside[0]}: the student would be "
                          f"taken for a teacher; put it elsewhere")
    return claimed_run(run, params.overwrite, params.resume,
                       lambda last_checkpoint: fit_student(params, callbacks, run, last_checkpoint))


def fit_student(params: DistillParams, callbacks: Sequence[Callback], run: Run, last_checkpoint: Path) -> Path:
    """`distill`'s work once the run folder is this process's own."""
    precision = resolve_precision(params.precision)
    teachers = load_teachers(params)
    members, labels = teachers.members, teachers.labels
    teacher_settings = members[0].features
    samples = labelled_samples(params.data, params.use_labels, labels, params.group_by)
    print(f"distill: {len(members)} teachers{' (int8)' if params.int8_teachers else ''}, "
          f"{len(teachers.forests)} spectrum forest(s) -> {params.preset} student, "
          f"T {params.temperature:g}, alpha {params.alpha:g}, precision {precision}, "
          f"{use_physical_cores()} CPU threads")
    stats = f"mean {teacher_settings.norm_mean:.4g}, std {teacher_settings.norm_std:.4g}"
    print(values_in_effect(params, distill_defaults(), {"norm_stats": stats} if params.norm_stats == "teachers" else {}))
    L.seed_everything(params.seed, verbose=False)

    train_set, train_targets, val_set = student_sets(params, samples, labels, teacher_settings)
    alpha = params.alpha if train_targets is not None else 1.0
    if alpha != params.alpha:
        print(f"distill: {params.data} has no labels; training on the KL term alone (alpha 1)")
    if params.int8_teachers:
        attach(members, graph_folder(params.cache_dir, params.no_cache))
    teacher = teacher_targets(params, teachers, train_set, train_targets, alpha, precision)

    settings = student_settings(params, teacher_settings, train_set.features)
    model = ASTClassifier(build_encoder(encoder_config(params.preset, settings, params.dropout)), labels)
    class_weights = None
    if params.class_weight == "balanced" and train_targets is not None:
        class_weights = balanced_class_weights(train_targets[train_targets >= 0], len(labels))
        class_weights[~torch.isfinite(class_weights)] = 0.0  # a class without labelled clips
    datamodule = ClipDataModule(
        torch.from_numpy(normalize(train_set.features, settings)), packed_targets(teacher, train_targets, len(labels)),
        torch.from_numpy(normalize(val_set.features, settings)), val_set.targets(labels),
        params.batch_size_for, params.seed)
    vote = TeacherVote(teachers, settings, params.temperature, params.int8_teachers) \
        if params.teaching == "consistent" else None
    module = DistillModule(model, params, run_steps(params, len(train_set.features)), settings, alpha, class_weights,
                           vote)
    fit_run(module, datamodule, params, precision, run, list(callbacks), last_checkpoint,
            validate=bool(val_set.samples))
    value = module.history[-1].get("balanced_accuracy") if module.history else None
    data = {"train": str(params.data) if samples is not None else "",
            "validation": str(params.validation_dir or ""),
            "train_clips": len(train_set.features),
            "labelled_clips": 0 if train_targets is None else int((train_targets >= 0).sum()),
            "validation_clips": len(val_set.samples),
            "validation_groups": val_set.groups(),
            "skipped_files": [str(e) for e in train_set.bad + val_set.bad]}
    groups = training_groups(teachers, None if samples is None else train_set.samples)
    if groups is not None:
        data["train_groups"] = groups  # with the teachers': the student learned from them too
    provenance = run_provenance("training", params, precision, data, distilled_from=[m.name for m in members],
                       distillation=distillation_record(params, teachers, alpha, train_targets is not None),
                       history=module.history, best_epoch=len(module.history), selected="last",
                       best_metric={"name": "balanced_accuracy", "value": value})
    save_member(module.model, run.output, settings, provenance)
    finish(last_checkpoint)
    shown = f"validation balanced accuracy {value:.4f}" if value is not None else "no validation set"
    print(f"last epoch {len(module.history)}: {shown} -> {run.output}")
    return run.output


def student_sets(params: DistillParams, samples: list[Sample] | None, labels: list[str],
                 settings: FeatureSettings) -> tuple[ClipSet, torch.Tensor | None, ClipSet]:
    """(training clips, their class ids or None without any label, validation clips) in the teachers'
    feature settings."""
    if samples is not None:
        train_set = load_clip_set(params.data, params, settings, params.progress, unlabelled=True)
        train_targets = train_set.targets(labels)
        train_targets = train_targets if bool((train_targets >= 0).any()) else None
    else:
        paths, features = load_unlabelled(params.data, params, settings, params.progress)
        train_set, train_targets = ClipSet([Sample(p, "", "") for p in paths], features), None
    if not len(train_set.features):
        raise DatasetError(f"{params.data}: no readable clips to distil on")
    val_set = validation_set(params.validation_dir, params, settings, params.progress, train_set)
    unknown = sorted({s.label for s in val_set.samples} - set(labels))
    if unknown:
        raise DatasetError(f"{params.validation_dir}: classes the teachers do not know: {', '.join(unknown)}")
    return train_set, train_targets, val_set


def teacher_targets(params: DistillParams, teachers: Teachers, train_set: ClipSet,
                    train_targets: torch.Tensor | None, alpha: float, precision: str) -> np.ndarray:
    """The teachers' tempered soft vote on the un-augmented clips (the targets of `--teaching fixed`),
    and how often it agrees with the labels there are."""
    vote = teachers.vote(train_set.features, "int8" if params.int8_teachers else precision, progress=params.progress)
    if train_targets is not None:
        known = train_targets.numpy() >= 0
        agreement = float((vote.argmax(1)[known] == train_targets.numpy()[known]).mean())
        print(f"  soft vote agrees with {agreement:.1%} of the {int(known.sum())} labels of {params.data}"
              + (f" ({int((~known).sum())} clips unlabelled)" if not known.all() else "")
              + ("; with alpha 1 the student learns the vote alone" if alpha == 1 else ""))
    return tempered(vote, params.temperature)


def distillation_record(params: DistillParams, teachers: Teachers, alpha: float, labelled: bool) -> dict:
    """What the student's config records of its teachers and targets."""
    when = ("on every augmented batch as the student sees it" if params.teaching == "consistent"
            else "once on the un-augmented clips")
    forests = f" and {len(teachers.forests)} spectrum forest(s) at share {teachers.forests[0].share:g}" \
        if teachers.forests else ""
    return {"teachers": [{"name": m.name, "folder": str(m.folder), "weight": float(w)}
                         for m, w in zip(teachers.members, teachers.weights)],
            "spectrum_forests": forest_record(teachers.forests),
            "models": params.models, "data": str(params.data), "temperature": params.temperature,
            "alpha": alpha, "alpha_requested": params.alpha, "labelled": labelled,
            "soft_targets": f"softmax(log(weighted mean of member probabilities{forests}) / T), computed {when}"}
