"""benchmarks/quality.py end to end on generated sessions: `--variants` beside `--unseen` writes its table and
figure (the team's long run once crashed in `plot_variants` after every variant had trained)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from mosquito_ast.synth import DEFAULT_SPECIES, generate_dataset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def quality(monkeypatch):
    """benchmarks/quality.py as a module (it imports its neighbour `_common`)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import quality

    return quality


def test_variants_with_unseen_sessions_write_their_table_and_figure(tmp_path, quality, monkeypatch,
                                                                     feature_cache_dir):
    species = DEFAULT_SPECIES[:3]
    generate_dataset(tmp_path / "shared", species, recordings_per_species=2, clips_per_recording=3, seed=4)
    generate_dataset(tmp_path / "unseen", species, recordings_per_species=1, clips_per_recording=3, seed=5,
                     first_recording=20)
    (tmp_path / "variants.yaml").write_text("layer drop:\n  layer_drop: 0.5\n")
    output = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [
        "quality.py", "--data", str(tmp_path / "shared"), "--unseen", str(tmp_path / "unseen"),
        "--variants", str(tmp_path / "variants.yaml"), "--members", "1", "--preset", "tiny", "--precision", "32",
        "--output", str(output), "--cache-dir", str(feature_cache_dir), "--set", "epochs=1"])
    quality.main()

    table = pd.read_csv(output / "variants.csv")
    assert set(table["variant"]) == {"recipe", "layer drop"}
    expected_folds = {"fold0", "fold1", "both folds", "unseen sessions", "unseen sessions, fold0 only",
                      "unseen sessions, fold1 only"}
    assert set(table["fold"]) == expected_folds
    assert set(table.loc[table["variant"] == "layer drop", "parameters"]) == {"layer_drop=0.5"}
    assert (output / "variants.png").stat().st_size > 0
    page = (output / "variants.md").read_text()
    assert "| layer drop | soft vote |" in page and "unseen sessions, fold1 only" in page
