"""How much a random split overstates accuracy: the same tiny model and budget trained on a random
and on a recording-independent split of the wingbeats sample, over several seeds.

The random split's validation fraction is set to the one the independent split reached (whole
sessions rarely land on the target), so both sides see the same number of training clips. Reported:
balanced accuracy of the last epoch (no selection on the validation set) and of the best epoch (chosen
on the validation set itself, so optimistic for both), and the last epoch's validation loss.

    python benchmarks/split_gap.py [--data ../shared/data/wingbeats] [--output /tmp/split_gap] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings
from pathlib import Path

import pandas as pd

from mosquito_ast.config import TrainParams
from mosquito_ast.leakage import check_split
from mosquito_ast.splits import SplitWarning, make_split
from mosquito_ast.commands.train import train

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run(data: Path, output: Path, seeds: list[int], epochs: int, clip_seconds: float) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SplitWarning)
            independent = make_split(data, output / f"seed{seed}", "independent", seed=seed, overwrite=True,
                                     progress=False)
            make_split(data, output / f"seed{seed}", "random", seed=seed, overwrite=True, progress=False,
                       validation_fraction=independent["validation_fraction"])
        for mode in ("random", "independent"):
            split = output / f"seed{seed}" / mode
            audit = check_split(split / "train", split / "validation")
            params = TrainParams(train_dir=str(split / "train"), validation_dir=str(split / "validation"),
                                 output=str(output / "runs"), postfix=f"{mode}-seed{seed}", preset="tiny",
                                 clip_seconds=clip_seconds, norm_stats="dataset", learning_rate=1e-3,
                                 epochs=epochs, batch_sizes=[16], seed=seed, metric="balanced_accuracy",
                                 cache_dir=str(output / "feature-cache"), progress=False, overwrite=True)
            started = time.perf_counter()
            member = train(params)
            history = json.loads((member / "config.json").read_text())["history"]
            rows.append({"mode": mode, "seed": seed,
                         "train_clips": audit.train_files, "validation_clips": audit.validation_files,
                         "shared_sessions": len(audit.shared_groups),
                         "last_epoch_bal_acc": history[-1]["balanced_accuracy"],
                         "best_epoch_bal_acc": max(r["balanced_accuracy"] for r in history),
                         "last_epoch_val_loss": history[-1]["loss"],
                         "seconds": time.perf_counter() - started})
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "wingbeats")
    parser.add_argument("--output", type=Path, default=Path("/tmp/split_gap"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--clip-seconds", type=float, default=0.625)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}")
    table = run(args.data, args.output, args.seeds, args.epochs, args.clip_seconds)
    table.to_csv(args.output / "split_gap.csv", index=False)
    columns = ["last_epoch_bal_acc", "best_epoch_bal_acc", "last_epoch_val_loss", "seconds"]
    summary = table.groupby("mode")[columns].agg(["mean", "std"])
    print(table.to_string(index=False))
    print(summary.to_string())
    random, independent = (table[table["mode"] == m]["last_epoch_bal_acc"].mean() for m in ("random", "independent"))
    print(f"random / independent balanced accuracy (last epoch): {random:.3f} / {independent:.3f} "
          f"= {random / independent:.2f}x, gap {random - independent:+.3f}")


if __name__ == "__main__":
    main()
