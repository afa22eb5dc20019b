"""Self-supervised pretraining: unlabelled clip loading, the Lightning module and the `pretrain` run.

The output folder (`model.safetensors` + `config.json`) is what `train --ssl-checkpoint` loads; the
working files (`run/checkpoints/`) sit beside it so `--resume` continues an interrupted run exactly
(shuffling, masks and dropout are reseeded per epoch; validation masks are fixed by the seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from safetensors.torch import load_model, save_model
from sklearn.model_selection import GroupShuffleSplit
from transformers import ASTModel

from mosquito_ast_lite.io import atomic_path, atomic_write_json

from ..checkpoints.encoder import encoder_from_checkpoint
from ..checkpoints.ssl import save_pretrained
from ..config import PretrainParams
from ..data import DatasetError, group_of
from ..features import FeatureSettings, dataset_stats, normalize
from ..hardware import resolve_precision, use_physical_cores
from ..models.encoder import build_encoder, encoder_config
from ..models.ssl import SSLModel, build_ssl_model
from ..training.datasets import ClipDataModule, feature_settings, load_unlabelled
from ..training.loop import EpochModule
from ..training.optim import run_steps
from ..training.run import Run, claimed_run, epoch_row, finish, fit_run, pretrain_run, run_provenance


def split_sets(params: PretrainParams, settings: FeatureSettings) -> dict:
    """Training and validation clips: an explicit --validation-dir or a seeded fraction of --data."""
    if params.validation_dir:
        train_paths, train_x = load_unlabelled(params.data, params, settings, params.progress)
        val_paths, val_x = load_unlabelled(params.validation_dir, params, settings, params.progress)
    else:
        paths, features = load_unlabelled(params.data, params, settings, params.progress)
        if len(paths) < 2:
            raise DatasetError(f"{params.data}: need at least 2 readable clips to hold some out for validation")
        train_index, val_index = hold_out_recordings(params.data, paths, params.group_by,
                                                     params.validation_fraction, params.seed)
        train_paths, val_paths = [paths[i] for i in train_index], [paths[i] for i in val_index]
        train_x, val_x = features[train_index], features[val_index]
    return {"train_paths": train_paths, "train": train_x, "validation_paths": val_paths, "validation": val_x}


def recording_groups(source: str | Path, paths: Sequence[str], rule: str) -> list[str]:
    """The recording of each unlabelled clip, by the same rules as labelled data (the folder holding it,
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

    def __init__(self, model: SSLModel, params: PretrainParams, total_steps: int) -> None:
        super().__init__(model, params, total_steps)
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
        self.largest_batch = max(self.largest_batch, len(features))
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
        row = epoch_row(self, train_loss=float(np.mean(self._train_losses)) if self._train_losses else float("nan"),
                        val_loss=self._val_error / max(self._val_count, 1))
        self.history.append(row)
        self.log("val_loss", row["val_loss"], prog_bar=True)


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
    """Pretrain an encoder on unlabelled clips; write the best epoch (lowest validation loss) to --output.

    Extra Lightning `callbacks` run beside the built-in ones. Returns the output folder.
    """
    run = pretrain_run(params.output)
    return claimed_run(run, params.overwrite, params.resume,
                       lambda last_checkpoint: fit_encoder(params, callbacks, run, last_checkpoint))


def fit_encoder(params: PretrainParams, callbacks: Sequence[Callback], run: Run, last_checkpoint: Path) -> Path:
    """`pretrain`'s work once the run folder is this process's own."""
    precision = resolve_precision(params.precision)
    print(f"pretrain {params.objective}: precision {precision}, {use_physical_cores()} CPU threads")
    L.seed_everything(params.seed, verbose=False)

    settings = feature_settings(params)
    sets = split_sets(params, settings)
    if params.norm_stats == "dataset":
        settings = settings.with_stats(*dataset_stats(sets["train"]))
    model = build_ssl_model(params.objective, initial_encoder(params, settings), **objective_options(params))
    train_x = torch.from_numpy(normalize(sets["train"], settings))
    val_x = torch.from_numpy(normalize(sets["validation"], settings))
    datamodule = ClipDataModule(train_x, torch.zeros(len(train_x)), val_x, torch.zeros(len(val_x)),
                                params.batch_size_for, params.seed)
    module = PretrainModule(model, params, run_steps(params, len(sets["train"])))
    best = BestWeights(last_checkpoint.parent / "best.safetensors")
    stopping = ([EarlyStopping(monitor="val_loss", mode="min", patience=params.patience, min_delta=params.min_delta)]
                if params.patience > 0 else [])
    fit_run(module, datamodule, params, precision, run, [*callbacks, best, *stopping], last_checkpoint)

    best.restore(module)
    best_row = min(module.history, key=lambda row: row["val_loss"])
    provenance = run_provenance("pretraining", params, precision, {
        "train": str(params.data), "validation": str(params.validation_dir or params.data),
        "train_clips": len(sets["train_paths"]), "validation_clips": len(sets["validation_paths"])},
        history=module.history, best_epoch=best_row["epoch"], best_val_loss=best_row["val_loss"])
    if params.probe:
        from ..training.probe import compare_probes

        provenance["probe"] = compare_probes(model.encoder, params.probe, params, settings, progress=params.progress)
        atomic_write_json(run.output / "probe.json", provenance["probe"])
        print(f"linear probe balanced accuracy: pretrained {provenance['probe']['pretrained']['balanced_accuracy']:.3f}, "
              f"random encoder {provenance['probe']['random']['balanced_accuracy']:.3f}")
    save_pretrained(model, run.output, settings, provenance)
    finish(last_checkpoint)
    print(f"best epoch {best_row['epoch']}: val_loss {best_row['val_loss']:.5f} -> {run.output}")
    return run.output
