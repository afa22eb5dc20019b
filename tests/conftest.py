"""Shared fixtures: generated data sets, tiny training parameters, and the real wingbeats sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mosquito_ast.config import TrainParams
from mosquito_ast.synth import generate_dataset

torch.set_num_threads(2)

WINGBEATS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wingbeats"
HUMBUG = WINGBEATS.parent / "humbug_mic"


@pytest.fixture(scope="session")
def synth_split(tmp_path_factory) -> tuple[Path, Path]:
    """(train, validation) folder-per-class trees of generated clips, different recordings each side."""
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root / "train", recordings_per_species=3, clips_per_recording=5, seed=1)
    generate_dataset(root / "validation", recordings_per_species=1, clips_per_recording=5, seed=2, first_recording=10)
    return root / "train", root / "validation"


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture
def tiny_params(tmp_path, synth_split, feature_cache_dir):
    """Build TrainParams for a fast tiny run; keyword arguments override."""

    def make(**overrides) -> TrainParams:
        values = dict(train_dir=str(synth_split[0]), validation_dir=str(synth_split[1]), output=str(tmp_path / "out"),
                      preset="tiny", epochs=2, batch_sizes=[8], learning_rate=1e-3, precision="32",
                      progress=False, cache_dir=str(feature_cache_dir), seed=7, checkpoint_minutes=0)
        values.update(overrides)
        return TrainParams(**values)

    return make


@pytest.fixture(scope="session")
def tiny_member(tmp_path_factory, synth_split, feature_cache_dir) -> Path:
    """One trained tiny member folder, shared by tests that only read it."""
    from mosquito_ast.commands.train import train

    out = tmp_path_factory.mktemp("member")
    params = TrainParams(train_dir=str(synth_split[0]), validation_dir=str(synth_split[1]), output=str(out),
                         postfix="tiny", preset="tiny", epochs=2, batch_sizes=[8], learning_rate=1e-3,
                         precision="32", progress=False, cache_dir=str(feature_cache_dir), seed=3)
    return train(params)


@pytest.fixture
def wingbeats() -> Path:
    if not WINGBEATS.is_dir():
        pytest.skip(f"real recordings not found at {WINGBEATS} (../shared/data/wingbeats)")
    return WINGBEATS
