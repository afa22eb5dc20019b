"""bf16 accuracy parity on real recordings, issue 9: does bf16 change what the members learn or predict?

On ../shared/data/wingbeats (or --data), fold 0 of the session folds (train on one session per
species, score on the other: no session on both sides), tiny preset, for each seed: one member trained
in fp32 and one in bf16-mixed, same data and settings. Each member is scored on the held-out session;
the bf16 member is scored twice, with fp32 and with bf16 inference, to show their agreement.

    python benchmarks/bf16_parity.py                       # 3 seeds, 15 epochs (about 5 minutes on 2 cores)
    python benchmarks/bf16_parity.py --seeds 0 1 2 3 4 --epochs 30

Writes bf16_parity.csv to --output and prints the table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from _common import machine_report, print_table, quiet_lightning
from mosquito_ast.config import DataParams, TrainParams
from mosquito_ast.data import discover
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.evaluation.metrics import label_metrics
from mosquito_ast.sides import session_folds
from mosquito_ast.commands.train import train

WINGBEATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wingbeats"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=WINGBEATS, help="labeled folder-per-class tree")
    parser.add_argument("--group-by", default="auto", help="how recordings (sessions) are found, as for `split`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--output", type=Path, default=Path("bf16-parity"))
    return parser.parse_args()


def manifests(args: argparse.Namespace, folder: Path) -> tuple[Path, Path, list[str]]:
    samples = discover(args.data, args.group_by)
    sides = session_folds(samples, 2, seed=0)[0]
    paths = {}
    for side in ("train", "validation"):
        chosen = [s for s, where in zip(samples, sides) if where == side]
        paths[side] = folder / f"{side}.csv"
        pd.DataFrame({"path": [s.path for s in chosen], "label": [s.label for s in chosen],
                      "group": [s.group for s in chosen]}).to_csv(paths[side], index=False)
    return paths["train"], paths["validation"], [s.path for s, where in zip(samples, sides) if where == "validation"]


def scored(member_dir: Path, scored_paths: list[str], truth: dict[str, str], precision: str) -> tuple[np.ndarray, dict]:
    members = load_members(member_dir)
    result = predict_probabilities(members, scored_paths, DataParams(no_cache=True, precision=precision),
                                   progress=False, device="cpu")
    labels = members[0].labels
    probabilities = result.probabilities[0]
    y_true = np.array([labels.index(truth[p]) for p in result.paths])
    return probabilities, label_metrics(y_true, probabilities.argmax(1), len(labels))


def main() -> None:
    args = arguments()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found (the wingbeats recordings live in ../shared/data)")
    quiet_lightning()
    print(machine_report())
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bf16-parity-") as tmp:
        root = Path(tmp)
        train_csv, validation_csv, scored_paths = manifests(args, root)
        truth = dict(pd.read_csv(validation_csv)[["path", "label"]].itertuples(index=False))
        for seed in args.seeds:
            for precision in ("32", "bf16-mixed"):
                params = TrainParams(train_dir=str(train_csv), validation_dir=str(validation_csv),
                                     output=str(root / "runs"), postfix=f"seed{seed}-{precision}",
                                     preset="small-data", epochs=args.epochs, seed=seed, precision=precision,
                                     cache_dir=str(root / "cache"), progress=False)
                member_dir = train(params)
                fp32_probabilities, fp32_metrics = scored(member_dir, scored_paths, truth, "32")
                row = {"seed": seed, "training": precision,
                       "balanced accuracy (fp32 inference)": fp32_metrics["balanced_accuracy"]}
                if precision == "bf16-mixed":
                    bf16_probabilities, bf16_metrics = scored(member_dir, scored_paths, truth, "bf16-mixed")
                    row["balanced accuracy (bf16 inference)"] = bf16_metrics["balanced_accuracy"]
                    row["same label, bf16 vs fp32 inference"] = float(np.mean(
                        bf16_probabilities.argmax(1) == fp32_probabilities.argmax(1)))
                    row["largest probability difference"] = float(np.abs(bf16_probabilities - fp32_probabilities).max())
                rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(args.output / "bf16_parity.csv", index=False)
    print_table(table.to_dict("records"), list(table.columns))
    means = table.groupby("training")["balanced accuracy (fp32 inference)"].agg(["mean", "std"])
    print(f"\nbalanced accuracy over {len(args.seeds)} seeds: fp32 training {means.loc['32', 'mean']:.3f} "
          f"+- {means.loc['32', 'std']:.3f}, bf16-mixed training {means.loc['bf16-mixed', 'mean']:.3f} "
          f"+- {means.loc['bf16-mixed', 'std']:.3f}")


if __name__ == "__main__":
    main()
