"""`demo`: the whole workflow on generated recordings, in a few minutes on a laptop CPU.

Generated species overlap in wingbeat frequency and every recording has its own gain, noise and
frequency offset, so the random split (clips of one recording on both sides) flatters and the
independent split does not; the final table shows by how much.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import yaml

from mosquito_ast_lite.io import atomic_write_text

from .config import DemoParams, PretrainParams
from .evaluation.results import SUMMARY_SYSTEMS
from .splits import make_split
from .synth import generate_dataset

SPLITS = ("independent", "random")


def sweep_file(params: DemoParams, root: Path, pretrained: Path) -> dict:
    """The demo's sweep: `members` seeds per split, fine-tuned from the pretrained tiny encoder with the
    recipe's defaults for that start (normalization inherited from the encoder)."""
    return {
        "base": {"ssl_checkpoint": str(pretrained), "epochs": params.epochs, "precision": params.precision,
                 "cache_dir": str(_cache(params)), "progress": False},
        "grid": {"seed": [params.seed * 100 + k for k in range(1, params.members + 1)]},
        "datasets": {split: {"train": str(root / "splits" / split / "train"),
                             "validation": str(root / "splits" / split / "validation")} for split in SPLITS},
        "postfix": "seed{seed}",
    }


def _cache(params: DemoParams) -> Path:
    return (Path(params.cache_dir) if params.cache_dir else Path(params.output) / "cache").resolve()


def result_table(comparison: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """Split x (mean member, best member, hard vote, soft vote) for one metric."""
    rows = {split: [comparison.loc[system, f"{metric} ({split})"] for system in SUMMARY_SYSTEMS] for split in SPLITS}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(SUMMARY_SYSTEMS)).rename_axis("split")


def run_demo(params: DemoParams) -> pd.DataFrame:
    """Generate data, split it two ways, pretrain, sweep both splits, evaluate; return the table."""
    from .sweep import run_sweep
    from .sweep.spec import SweepSpec
    from .commands.pretrain import pretrain

    root = Path(params.output).resolve()
    started = time.perf_counter()
    step = lambda text: print(f"\n[demo {time.perf_counter() - started:5.0f} s] {text}", flush=True)  # noqa: E731

    data = root / "data"
    if not data.exists():
        step(f"generating {params.recordings_per_species} recordings x {params.clips_per_recording} clips per species")
        generate_dataset(data, recordings_per_species=params.recordings_per_species,
                         clips_per_recording=params.clips_per_recording, seed=params.seed)
    for split in SPLITS:
        if not (root / "splits" / split).exists():
            step(f"{split} split")
            make_split(data, root / "splits", split, validation_fraction=0.34, seed=params.seed,
                       progress=params.progress)

    pretrained = root / "pretrained"
    step("pretraining a tiny encoder on the independent split's training clips (denoise)")
    pretrain(PretrainParams(data=str(root / "splits" / "independent" / "train"), output=str(pretrained),
                            preset="tiny", epochs=params.pretrain_epochs, batch_sizes=[16], learning_rate=1e-3,
                            norm_stats="dataset", seed=params.seed, precision=params.precision,
                            cache_dir=str(_cache(params)), progress=params.progress, resume=True))

    spec_data = sweep_file(params, root, pretrained)
    atomic_write_text(root / "sweep.yaml", yaml.safe_dump(spec_data, sort_keys=False))
    step(f"sweeping {params.members} members per split, then evaluating both ensembles")
    outcome = run_sweep(SweepSpec.from_dict(spec_data, root, str(root / "sweep.yaml")), root / "sweep",
                        evaluate=True)
    if outcome.failed or outcome.comparison is None:
        raise RuntimeError(f"demo sweep had failed runs; see {outcome.output / 'sweep_summary.csv'}")
    table = result_table(outcome.comparison)
    atomic_write_text(root / "demo_results.csv", table.to_csv())
    step("done")
    print("\nbalanced accuracy on the validation side of each split (chance "
          f"{1 / len(list((data).iterdir())):.2f}):")
    print(table.round(3).to_string())
    for split in SPLITS:
        print(f"report ({split}): {root / 'sweep' / split / 'evaluation' / 'report.html'}")
    print("The random split puts clips of one recording on both sides; the independent split is the honest number.")
    return table
