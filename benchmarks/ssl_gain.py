"""Does self-supervised pretraining help fine-tuning on real recordings? (wingbeats, session-independent)

Split: for each species, its first recording session (sorted by folder name) trains and its other
session is scored, so no session is on both sides. Pretraining sees the training side only (its
clips, labels ignored); the scored clips are never seen before scoring.
Arms, same fine-tuning budget and seeds: from scratch, from `denoise`, from `masked-patch`.
Reported: balanced accuracy on the held-out sessions at the last epoch (no epoch picked on the
scored clips) and at the best epoch (optimistic: picked on the scored clips), mean ± std over seeds.

    python benchmarks/ssl_gain.py [--data ../shared/data/wingbeats] [--seeds 0 1 2] [--recipe small-data]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mosquito_ast_lite.audio import is_audio_file
from mosquito_ast.config import PretrainParams, TrainParams
from mosquito_ast.commands.train import train
from mosquito_ast.commands.pretrain import pretrain

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wingbeats"


def session_split(root: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(train, validation) rows (path, label, session): one session per species on each side."""
    train_rows, val_rows = [], []
    for species in sorted(p for p in root.iterdir() if p.is_dir()):
        sessions: dict[str, list[Path]] = {}
        for path in sorted(p for p in species.rglob("*") if is_audio_file(p)):
            sessions.setdefault(str(path.parent.relative_to(root)), []).append(path)
        if len(sessions) < 2:
            raise SystemExit(f"{species}: needs at least 2 sessions for a session-independent split")
        names = sorted(sessions)
        train_rows += [(str(p), species.name, names[0]) for p in sessions[names[0]]]
        val_rows += [(str(p), species.name, s) for s in names[1:] for p in sessions[s]]
    return train_rows, val_rows


def write_manifest(rows: list[tuple[str, str, str]], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        writer.writerows(rows)
    return path


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=25)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    parser.add_argument("--clip-seconds", type=float, default=0.625, help="the wingbeats clips are 0.625 s")
    parser.add_argument("--norm-stats", choices=("audioset", "dataset"), default="dataset",
                        help="dataset: these 8 kHz optical-sensor clips are far from AudioSet's statistics "
                             "(with audioset every arm stayed at chance)")
    parser.add_argument("--recipe", choices=("small-data",), default=None,
                        help="fine-tune with `train --preset` RECIPE (its epochs, batch size, learning rate) "
                             "instead of --finetune-epochs, batch 8, learning rate 5e-4")
    parser.add_argument("--work", type=Path, default=None,
                        help="working folder (default: a temporary one); finished pretraining there is reused")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: wingbeats data not found")
    torch.set_num_threads(2)
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="ssl-gain-"))
    work.mkdir(parents=True, exist_ok=True)
    train_rows, val_rows = session_split(args.data)
    train_csv = write_manifest(train_rows, work / "train.csv")
    val_csv = write_manifest(val_rows, work / "validation.csv")
    print(f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}")
    print(f"split: {len(train_rows)} training clips ({len({r[2] for r in train_rows})} sessions), "
          f"{len(val_rows)} scored clips ({len({r[2] for r in val_rows})} other sessions)")
    common = dict(clip_seconds=args.clip_seconds, norm_stats=args.norm_stats, precision="32", progress=False,
                  cache_dir=str(work / "cache"))

    checkpoints: dict[str, str | None] = {"scratch": None}
    for objective in ("denoise", "masked-patch"):
        tick = time.perf_counter()
        folder = pretrain(PretrainParams(
            data=str(train_csv), output=str(work / f"pretrained-{objective}"), objective=objective, preset="tiny",
            epochs=args.pretrain_epochs, learning_rate=1e-3, seed=0, resume=True, **common))
        config = json.loads((folder / "config.json").read_text())
        print(f"pretrained {objective}: {len(config['history'])} epochs, best val loss "
              f"{config['best_val_loss']:.4f} (epoch {config['best_epoch']}), {time.perf_counter() - tick:.0f} s")
        checkpoints[objective] = str(folder)

    budget = (dict(preset=args.recipe) if args.recipe else
              dict(preset="tiny", epochs=args.finetune_epochs, batch_sizes=[8], learning_rate=5e-4))
    results: dict[str, dict[str, list[float]]] = {}
    for arm, checkpoint in checkpoints.items():
        for seed in args.seeds:
            member = train(TrainParams(
                train_dir=str(train_csv), validation_dir=str(val_csv), output=str(work / f"members-{budget['preset']}"),
                postfix=f"{arm}-{seed}", ssl_checkpoint=checkpoint, seed=seed, metric="balanced_accuracy",
                overwrite=True, **budget, **common))
            history = json.loads((member / "config.json").read_text())["history"]
            scores = results.setdefault(arm, {"last": [], "best": []})
            scores["last"].append(history[-1]["balanced_accuracy"])
            scores["best"].append(max(row["balanced_accuracy"] for row in history))

    baseline = np.mean(results["scratch"]["last"])
    epochs = len(history)
    print(f"\nfine-tuned balanced accuracy on held-out sessions, tiny encoder, --preset {budget['preset']}, "
          f"{epochs} epochs, seeds {args.seeds}, {args.norm_stats} normalization, "
          f"chance {1 / len({r[1] for r in val_rows}):.3f}")
    print(f"{'encoder':<14}{'last epoch':>18}{'best epoch*':>18}{'last vs scratch':>18}")
    for arm, scores in results.items():
        last, best = np.array(scores["last"]), np.array(scores["best"])
        print(f"{arm:<14}{last.mean():>11.3f} ± {last.std():.3f}{best.mean():>11.3f} ± {best.std():.3f}"
              f"{last.mean() / baseline:>17.2f}x")
    print("* best epoch is chosen on the scored clips (optimistic); 'last epoch' is the honest number")
    print(f"per seed (last epoch): {json.dumps({a: [round(v, 3) for v in s['last']] for a, s in results.items()})}")
    print(f"total {time.perf_counter() - started:.0f} s, work folder {work}")


if __name__ == "__main__":
    main()
