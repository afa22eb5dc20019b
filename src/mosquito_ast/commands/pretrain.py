"""Self-supervised pretraining: unlabeled clip loading, the Lightning module and the `pretrain` run.

The output folder (`model.safetensors` + `config.json`) is what `train --ssl-checkpoint` loads; the
working files (`run/checkpoints/`) sit beside it so `--resume` continues an interrupted run exactly
(shuffling, masks and dropout are reseeded per epoch; validation masks are fixed by the seed).
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from safetensors.torch import load_model, save_model
from sklearn.model_selection import GroupShuffleSplit
from transformers import ASTModel

from mosquito_ast_lite.audio import is_audio_file
from mosquito_ast_lite.files import files_under
from mosquito_ast_lite.io import atomic_path, atomic_write_json, atomic_write_text, check_replaceable, check_writable

from .. import __version__
from ..checkpoints import CONFIG_NAME, PRETRAINED_FOLDER, WEIGHTS_NAME
from ..checkpoints.encoder import encoder_from_checkpoint
from ..checkpoints.ssl import save_pretrained
from ..config import PretrainParams
from ..data import DatasetError, group_of
from ..features import FeatureSettings, check_bad_files, compute_features, dataset_stats, normalize, open_cache
from ..hardware import resolve_precision, use_physical_cores
from ..models.encoder import build_encoder, encoder_config
from ..models.ssl import SSLModel, build_ssl_model
from ..training.datasets import ClipDataModule, feature_settings
from ..training.loop import (EpochModule, FiniteGuard, LastCheckpoint, drop_checkpoint, fit_interruptibly, make_trainer,
                   resume_checkpoint)
from ..training.optim import optimizer_steps


def discover_unlabeled(source: str | Path) -> list[str]:
    """Audio files under a folder (any depth, any layout) or listed in a manifest CSV's 'path' column."""
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such file or directory")
    if source.is_file():
        with open(source, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or "path" not in rows[0]:
            raise DatasetError(f"{source}: a manifest needs a header with a 'path' column")
        paths = [Path(row["path"]) for row in rows]
        return [str(p if p.is_absolute() else source.parent / p) for p in paths]
    paths = sorted(str(p) for p in files_under(source) if is_audio_file(p))
    if not paths:
        raise DatasetError(f"{source}: no audio files found (searched all sub-folders)")
    return paths


def load_unlabeled(source: str | Path, params: PretrainParams, settings: FeatureSettings,
                   paths: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(readable paths, un-normalized features) of `paths` (default: all of `source`); bad files as in `train`."""
    paths = list(paths) if paths is not None else discover_unlabeled(source)
    table = compute_features(paths, settings, open_cache(params.cache_dir, params.no_cache), num_workers=params.num_workers,
                             description=f"features {Path(source).name}", progress=params.progress)
    check_bad_files(source, table.bad, len(paths), params.max_bad_fraction)
    return table.paths, table.features


def split_sets(params: PretrainParams, settings: FeatureSettings) -> dict:
    """Training and validation clips: an explicit --validation-dir or a seeded fraction of --data."""
    if params.validation_dir:
        train_paths, train_x = load_unlabeled(params.data, params, settings)
        val_paths, val_x = load_unlabeled(params.validation_dir, params, settings)
    else:
        paths, features = load_unlabeled(params.data, params, settings)
        if len(paths) < 2:
            raise DatasetError(f"{params.data}: need at least 2 readable clips to hold some out for validation")
        train_index, val_index = hold_out_recordings(params.data, paths, params.group_by,
                                                     params.validation_fraction, params.seed)
        train_paths, val_paths = [paths[i] for i in train_index], [paths[i] for i in val_index]
        train_x, val_x = features[train_index], features[val_index]
    return {"train_paths": train_paths, "train": train_x, "validation_paths": val_paths, "validation": val_x}


def recording_groups(source: str | Path, paths: Sequence[str], rule: str) -> list[str]:
    """The recording of each unlabeled clip, by the same rules as labelled data (the folder holding it,
    else the file name's first tokens), so clips of one recording stay on one side of the hold-out."""
    top = Path(source) if Path(source).is_dir() else None
    return [group_of(Path(path), top, rule) for path in paths]


def hold_out_recordings(source: str | Path, paths: Sequence[str], rule: str, fraction: float,
                        seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices with whole recordings held out: clips of one recording on
    both sides would make the validation loss measure memorised recordings, not reconstruction."""
    groups = recording_groups(source, paths, rule)
    if len(set(groups)) < 2:
        print(f"warning: {source}: all {len(paths)} clips are one recording ({groups[0]}) under --group-by {rule}; "
              "holding out clips at random, so the validation loss is optimistic (pass --validation-dir or a "
              "--group-by rule that tells recordings apart)")
        groups = list(range(len(paths)))
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train_index, val_index = next(splitter.split(paths, groups=groups))
    return np.sort(train_index), np.sort(val_index)


def initial_encoder(params: PretrainParams, settings: FeatureSettings) -> ASTModel:
    """A fresh encoder of --preset, or --init's weights with position embeddings resized to the clip."""
    if params.init:
        return encoder_from_checkpoint(params.init, settings, params.dropout)
    return build_encoder(encoder_config(params.preset, settings, params.dropout))


def objective_options(params: PretrainParams) -> dict:
    if params.objective == "masked-patch":
        return {"mask_ratio": params.mask_ratio}
    return {"time_fraction": params.time_mask_fraction, "frequency_fraction": params.frequency_mask_fraction,
            "time_masks": params.time_masks, "frequency_masks": params.frequency_masks}


class PretrainModule(EpochModule):
    """One SSL step is the model's own loss; validation uses masks fixed by the seed, so epochs compare."""

    def __init__(self, model: SSLModel, params: PretrainParams, total_steps: int,
                 history_file: Path | None = None) -> None:
        super().__init__(model, params, total_steps)
        self.history_file = history_file
        self._train_losses: list[float] = []
        self._val_error = 0.0
        self._val_count = 0
        self._val_generator = torch.Generator()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._train_losses.clear()

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        features = batch[0]
        loss = self.model.loss(features)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(features))
        self._train_losses.append(float(loss.detach()))
        self._largest_batch = max(self._largest_batch, len(features))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_generator.manual_seed(self.params.seed)
        self._val_error, self._val_count = 0.0, 0

    def validation_step(self, batch, batch_index: int) -> None:
        features = batch[0]
        self._val_error += float(self.model.loss(features, self._val_generator)) * len(features)
        self._val_count += len(features)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        row = {"epoch": self.current_epoch + 1,
               "batch_size": self._largest_batch,
               "learning_rate": self.trainer.optimizers[0].param_groups[0]["lr"],
               "train_loss": float(np.mean(self._train_losses)) if self._train_losses else float("nan"),
               "val_loss": self._val_error / max(self._val_count, 1),
               "seconds": time.perf_counter() - self._epoch_started}
        self.history.append(row)
        self.log("val_loss", row["val_loss"], prog_bar=True)
        if self.history_file is not None:
            atomic_write_text(self.history_file, pd.DataFrame(self.history).to_csv(index=False))


class BestWeights(Callback):
    """Keep the epoch with the lowest validation loss in `path` (safetensors, atomically). Its state holds
    numbers only: Lightning's ModelCheckpoint restores file paths from a checkpoint and later loads or
    deletes them, so a crafted `last.ckpt` could name any file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.best: float | None = None
        self.best_epoch = 0

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not module.history:
            return
        row = module.history[-1]
        if self.best is None or row["val_loss"] < self.best:
            self.best, self.best_epoch = float(row["val_loss"]), int(row["epoch"])
            with atomic_path(self.path, suffix=".safetensors") as temporary:
                save_model(module, str(temporary))

    def restore(self, module: L.LightningModule) -> None:
        """Load the best epoch's weights into `module`."""
        load_model(module, str(self.path), device="cpu")

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


def pretrain(params: PretrainParams, callbacks: Sequence[Callback] = ()) -> Path:
    """Pretrain an encoder on unlabeled clips; write the best epoch (lowest validation loss) to --output.

    Extra Lightning `callbacks` run beside the built-in ones. Returns the output folder.
    """
    output = Path(params.output)
    run_dir = output / "run"
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    finished = (output / CONFIG_NAME).exists() and (output / WEIGHTS_NAME).exists()
    if finished and params.resume:
        print(f"{output}: pretraining already finished, nothing to resume")
        return output
    if finished and not params.overwrite:
        raise FileExistsError(f"{output}: a pretrained model already exists (use --overwrite to replace it)")
    check_writable(check_replaceable(output, PRETRAINED_FOLDER))
    if last_checkpoint.exists() and not (params.resume or params.overwrite):
        raise FileExistsError(f"{output}: holds an interrupted pretraining; continue it with --resume, "
                              f"or start again with --overwrite")
    resuming = params.resume and resume_checkpoint(last_checkpoint) is not None
    if not resuming:
        shutil.rmtree(run_dir, ignore_errors=True)
    precision = resolve_precision(params.precision)
    print(f"pretrain {params.objective}: precision {precision}, {use_physical_cores()} CPU threads")
    L.seed_everything(params.seed, verbose=False)

    settings = feature_settings(params)
    sets = split_sets(params, settings)
    if params.norm_stats == "dataset":
        settings = settings.with_stats(*dataset_stats(sets["train"]))
    model = build_ssl_model(params.objective, initial_encoder(params, settings), **objective_options(params))

    schedule = [params.batch_size_for(e) for e in range(params.epochs)]
    total_steps = optimizer_steps(len(sets["train"]), schedule, params.grad_accumulation)
    train_x = torch.from_numpy(normalize(sets["train"], settings))
    val_x = torch.from_numpy(normalize(sets["validation"], settings))
    datamodule = ClipDataModule(train_x, torch.zeros(len(train_x)), val_x, torch.zeros(len(val_x)),
                                params.batch_size_for, params.seed)
    module = PretrainModule(model, params, total_steps, output / "history.csv")
    best = BestWeights(run_dir / "checkpoints" / "best.safetensors")
    internal: list[Callback] = [FiniteGuard("pretrain"), best, LastCheckpoint(last_checkpoint, 60 * params.checkpoint_minutes)]
    if params.patience > 0:
        internal.append(EarlyStopping(monitor="val_loss", mode="min", patience=params.patience,
                                      min_delta=params.min_delta))
    trainer = make_trainer(params, precision, run_dir, [*callbacks, *internal])
    fit_interruptibly(trainer, f"pretraining interrupted; continue it with --resume --output {output}", model=module,
                      datamodule=datamodule, ckpt_path=last_checkpoint if resuming else None, weights_only=True)

    best.restore(module)
    best_row = min(module.history, key=lambda row: row["val_loss"])
    extra = {
        "pretraining": params.to_dict(),
        "precision": precision,
        "data": {"train": str(params.data), "validation": str(params.validation_dir or params.data),
                 "train_clips": len(sets["train_paths"]), "validation_clips": len(sets["validation_paths"])},
        "history": module.history,
        "best_epoch": best_row["epoch"],
        "best_val_loss": best_row["val_loss"],
        "mosquito_ast_version": __version__,
    }
    if params.probe:
        from ..training.probe import compare_probes

        extra["probe"] = compare_probes(model.encoder, params.probe, params, settings, progress=params.progress)
        atomic_write_json(output / "probe.json", extra["probe"])
        print(f"linear probe balanced accuracy: pretrained {extra['probe']['pretrained']['balanced_accuracy']:.3f}, "
              f"random encoder {extra['probe']['random']['balanced_accuracy']:.3f}")
    save_pretrained(model, output, settings, extra)
    drop_checkpoint(last_checkpoint)
    print(f"best epoch {best_row['epoch']}: val_loss {best_row['val_loss']:.5f} -> {output}")
    return output
