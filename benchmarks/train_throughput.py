"""Training throughput, issue 2: this tool's `train` on 1 s clips versus the old notebooks' 1024-frame padding.

The tool: `mosquito_ast.commands.train.train` end to end (wav files on disk -> audio -> fbank features
-> Lightning Trainer with ClassifierModule + ClipDataModule -> member export), AST-base at 100 frames, in
fp32 and in precision `auto`. The old way: AST-base at 1024 frames (each 1 s clip padded to 10.24 s),
fp32, a plain forward + backward + AdamW step on ready-made features at the same batch size; it is
very slow, so a few steps are timed. Cases run interleaved, round by round, in one process.

    python benchmarks/train_throughput.py                      # small default run (a few minutes)
    python benchmarks/train_throughput.py --clips 256 --old-steps 2 --rounds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import (TrainRun, cpu_benchmark, interleave, old_notebook_model, print_table, random_batch,
                     timed_steps, timed_train, training_step)
from mosquito_ast.checkpoints import OLD_NOTEBOOK_MAX_LENGTH
from mosquito_ast.config import TrainParams
from mosquito_ast.hardware import resolve_precision

EXPECTED_SPEEDUP = 10.0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48, help="training clips per train() run (rounded up to 16s)")
    parser.add_argument("--validation-clips", type=int, default=16, help="validation clips per train() run")
    parser.add_argument("--batch-size", type=int, default=4, help="batch size of both ways")
    parser.add_argument("--old-steps", type=int, default=1, help="timed old-way steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each runs every case once)")
    parser.add_argument("--precisions", default="32,auto", help="precisions of the tool's runs, comma-separated")
    parser.add_argument("--workdir", type=Path, default=None, help="where clips and runs go (default: a temp dir)")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    with cpu_benchmark("train-throughput-", args.workdir, args.clips, args.validation_clips) as (root, train_dir,
                                                                                                validation_dir):
        print(f"batch size {args.batch_size}; {args.rounds} rounds\n")

        runs: dict[str, list[TrainRun]] = {}
        cases = {"old way": timed_steps(
            training_step(old_notebook_model(), random_batch(args.batch_size, OLD_NOTEBOOK_MAX_LENGTH), fused=False),
            steps=args.old_steps, clips_per_step=args.batch_size, warmup=0)}
        for precision in args.precisions.split(","):
            cases[f"tool {precision}"] = tool_case(precision, train_dir, validation_dir, root / "runs",
                                                   args.batch_size, runs.setdefault(precision, []))
        tallies = interleave(cases, args.rounds)

    old = tallies["old way"]
    rows = [{"way": "old notebooks: forward+backward+AdamW", "frames": OLD_NOTEBOOK_MAX_LENGTH, "precision": "32",
             "timed": f"{old.steps} steps x {args.batch_size} clips (no warm-up)", "seconds": old.seconds,
             "clips/s": old.rate, "vs old": 1.0, "fastest round": old.best_rate, "fastest vs fastest old": 1.0}]
    for precision, done in runs.items():
        resolved = resolve_precision(precision)
        clips = sum(r.clips for r in done)
        steps = sum(r.steps for r in done)
        for label, phase in (("train() end to end", "whole"), ("  its training loop", "loop")):
            seconds = sum(getattr(r, phase) for r in done)
            fastest = max(r.clips / getattr(r, phase) for r in done)
            rows.append({"way": f"tool {label}", "frames": 100, "precision": f"{precision} -> {resolved}",
                         "timed": f"{len(done)} runs, {steps} steps, {clips} clips", "seconds": seconds,
                         "clips/s": clips / seconds, "vs old": clips / seconds / old.rate,
                         "fastest round": fastest, "fastest vs fastest old": fastest / old.best_rate})
    print("\nclips/s over all rounds, and in each case's fastest round (the least disturbed by other processes):")
    print_table(rows, ["way", "frames", "precision", "timed", "seconds", "clips/s", "vs old", "fastest round",
                       "fastest vs fastest old"])
    print("\nwhere train() spends its time (seconds, summed over runs):")
    print_table([{"precision": p, "setup (audio, features, model)": sum(r.setup for r in d),
                  "training loop": sum(r.loop for r in d), "validation": sum(r.validation for r in d),
                  "saving, other": sum(r.saving for r in d), "whole": sum(r.whole for r in d)}
                 for p, d in runs.items()],
                ["precision", "setup (audio, features, model)", "training loop", "validation", "saving, other",
                 "whole"])
    worst = min(row["vs old"] for row in rows[1:] if "end to end" in row["way"])
    verdict = "met" if worst >= EXPECTED_SPEEDUP else "NOT met"
    print(f"\nexpect at least {EXPECTED_SPEEDUP:.0f}x: end-to-end train() is {worst:.1f}x the old way or more "
          f"-> {verdict}")


def tool_case(precision: str, train_dir: Path, validation_dir: Path, output: Path, batch_size: int,
              done: list[TrainRun]):
    """One full `train()` run per round: 1 epoch, AST-base from scratch, features computed from the wav
    files every time (no cache), so audio decoding and feature extraction are part of what is timed."""

    def run() -> tuple[int, float, int]:
        params = TrainParams(train_dir=str(train_dir), validation_dir=str(validation_dir), output=str(output),
                             postfix=f"p{precision}", preset="base", epochs=1, batch_sizes=[batch_size],
                             precision=precision, no_cache=True, progress=False, overwrite=True)
        result = timed_train(params)
        done.append(result)
        return result.clips, result.whole, result.steps

    return run


if __name__ == "__main__":
    main()
