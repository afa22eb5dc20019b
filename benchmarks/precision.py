"""Precision on CPU, issue 9: fp32 versus bf16 for training and inference of AST-base on 1 s clips.

One process, cases interleaved round by round:
- the old notebooks' way: AST-base at 1024 frames, fp32, batch 4 (training step; batched inference);
- the bare model at 100 frames (ASTClassifier on random features, no data pipeline): training in fp32
  and under bf16 autocast; inference in fp32, under bf16 autocast, and with bf16 weights. The bf16
  numbers are the ceiling of what this CPU can do;
- this tool end to end: `train()` from wav files with precision `auto` (audio, features, Lightning,
  validation, checkpoints, member export included), and `evaluate`'s inference path
  (`inference.members.predict_probabilities` on the member just trained: decoding, features, batched
  forward under inference_mode in bf16 weights), each as a share of its ceiling (target 80%): bf16
  autocast for training, bf16 weights for inference.

    python benchmarks/precision.py                         # small default run (about 8 minutes)
    python benchmarks/precision.py --clips 256 --rounds 3  # steadier numbers
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from _common import (TrainRun, ast_base, cpu_benchmark, inference_step, interleave, old_notebook_model,
                     print_table, random_batch, timed_steps, timed_train, training_step)
from mosquito_ast.checkpoints import OLD_NOTEBOOK_MAX_LENGTH
from mosquito_ast.config import DataParams, TrainParams
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.hardware import resolve_precision

FRAMES = 100
OLD_BATCH = 4
SHARE_TARGET = 0.8
EXPECTED = {"training": 25.0, "inference": 50.0}  # over the old way, on a CPU without AMX


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=48, help="training (and inference) clips on disk")
    parser.add_argument("--validation-clips", type=int, default=16, help="validation clips of the train() run")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch size of the tool and bare model")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="inference batch size")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs of the tool's train() run")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0,
                        help="train()'s --checkpoint-minutes (0: a resumable last.ckpt after every epoch but the last)")
    parser.add_argument("--steps", type=int, default=3, help="timed bare-model steps per round and case")
    parser.add_argument("--old-steps", type=int, default=1, help="timed old-way steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (each runs every case once)")
    parser.add_argument("--workdir", type=Path, default=None, help="where clips and runs go (default: a temp dir)")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    with cpu_benchmark("precision-", args.workdir, args.clips, args.validation_clips) as (root, train_dir,
                                                                                         validation_dir):
        print(f"batch {args.batch_size} (training), {args.eval_batch_size} (inference), old way batch {OLD_BATCH}; "
              f"{args.rounds} rounds\n")
        train_runs: list[TrainRun] = []
        params = TrainParams(train_dir=str(train_dir), validation_dir=str(validation_dir), output=str(root / "runs"),
                             postfix="auto", preset="base", epochs=args.epochs, batch_sizes=[args.batch_size],
                             checkpoint_minutes=args.checkpoint_minutes,
                             precision="auto", no_cache=True, progress=False, overwrite=True)
        wavs = sorted(str(p) for p in train_dir.rglob("*.wav"))
        tallies = interleave(cases(args, params, train_runs, wavs), args.rounds)
    report(args, tallies, train_runs)


def cases(args: argparse.Namespace, params: TrainParams, train_runs: list[TrainRun], wavs: list[str]) -> dict:
    old = old_notebook_model()
    bare = ast_base(FRAMES)
    bare_bf16 = ast_base(FRAMES).to(torch.bfloat16)
    train_batch = random_batch(args.batch_size, FRAMES)
    eval_features = random_batch(args.eval_batch_size, FRAMES)[0]
    eval_steps = max(1, args.steps - 1)
    member: dict = {}

    def tool_train() -> tuple[int, float, int]:
        run = timed_train(params)
        train_runs.append(run)
        member["folder"] = Path(params.output) / "best" / params.postfix
        return run.clips, run.whole, run.steps

    def tool_inference() -> tuple[int, float, int]:
        members = load_members(member["folder"])  # a fixed cost per member, not per clip: not timed
        started = time.perf_counter()
        result = predict_probabilities(members, wavs, DataParams(no_cache=True, precision="auto"),
                                       batch_size=args.eval_batch_size, progress=False)
        clips = len(result.paths)
        return clips, time.perf_counter() - started, -(-clips // args.eval_batch_size)

    return {
        "old train fp32": timed_steps(training_step(old, random_batch(OLD_BATCH, OLD_NOTEBOOK_MAX_LENGTH), fused=False),
                                      args.old_steps, OLD_BATCH, warmup=0),
        "bare train fp32": timed_steps(training_step(bare, train_batch), args.steps, args.batch_size),
        "bare train bf16 autocast": timed_steps(training_step(bare, train_batch, bf16=True), args.steps,
                                                args.batch_size),
        "tool train() auto": tool_train,
        "old inference fp32": timed_steps(inference_step(old, random_batch(OLD_BATCH, OLD_NOTEBOOK_MAX_LENGTH)[0]),
                                          args.old_steps, OLD_BATCH, warmup=0),
        "bare inference fp32": timed_steps(inference_step(bare, eval_features), eval_steps, args.eval_batch_size),
        "bare inference bf16 autocast": timed_steps(inference_step(bare, eval_features, bf16=True), eval_steps,
                                                    args.eval_batch_size),
        "bare inference bf16 weights": timed_steps(inference_step(bare_bf16, eval_features.bfloat16()), eval_steps,
                                                   args.eval_batch_size),
        "tool inference from wav": tool_inference,
    }


def report(args: argparse.Namespace, tallies: dict, train_runs: list[TrainRun]) -> None:
    """Two views of the same runs: all rounds together, and each case's fastest round (on a shared
    machine the least disturbed one; closer to what an idle machine gives)."""
    loop_rates = [r.clips / r.loop for r in train_runs]
    loop_total = sum(r.clips for r in train_runs) / sum(r.loop for r in train_runs)
    print(f"\nprecision auto -> {resolve_precision('auto')}; frames: old way {OLD_NOTEBOOK_MAX_LENGTH}, "
          f"this tool {FRAMES}")
    for view, rate_of, loop_rate in (("all rounds", lambda t: t.rate, loop_total),
                                     ("fastest round of each case", lambda t: t.best_rate, max(loop_rates))):
        old = {"training": rate_of(tallies["old train fp32"]), "inference": rate_of(tallies["old inference fp32"])}
        ceiling = {"training": rate_of(tallies["bare train bf16 autocast"]),
                   "inference": rate_of(tallies["bare inference bf16 weights"])}  # as evaluate runs
        rows = []
        for name, tally in tallies.items():
            job = "training" if "train" in name else "inference"
            rows.append(row(name, job, rate_of(tally), f"{tally.steps} x, {tally.clips} clips", old, ceiling))
            if name == "tool train() auto":
                rows.append(row("  its training loop", job, loop_rate, f"{sum(r.steps for r in train_runs)} steps",
                                old, ceiling))
        print(f"\n{view}:")
        print_table(rows, ["case", "job", "timed", "clips/s", "vs old way", "share of bf16 ceiling"])
        for job, name in (("training", "tool train() auto"), ("inference", "tool inference from wav")):
            rate = rate_of(tallies[name])
            print(f"  {job}: end to end {rate / old[job]:.1f}x the old way (expected >= {EXPECTED[job]:.0f}x without "
                  f"AMX), {rate / ceiling[job]:.0%} of the bare bf16 model (target >= {SHARE_TARGET:.0%})")
        share = work_share(train_runs, ceiling["training"], rate_of(tallies["bare inference bf16 autocast"]))
        print(f"  train() with its validation: {share:.0%} of the bare bf16 model doing the same work (its training "
              "clips at the training ceiling, its validation clips at bf16 autocast inference, as validation runs)")
    print("\nwhere train() spends its time (seconds, summed over runs):")
    print_table([{"setup (audio, features, model)": sum(r.setup for r in train_runs),
                  "training loop": sum(r.loop for r in train_runs),
                  "validation": sum(r.validation for r in train_runs),
                  "saving, other": sum(r.saving for r in train_runs),
                  "whole": sum(r.whole for r in train_runs)}],
                ["setup (audio, features, model)", "training loop", "validation", "saving, other", "whole"])


def work_share(train_runs: list[TrainRun], training_rate: float, validation_rate: float) -> float:
    """The issue's measure of train(): seconds the bare model needs for the same clips over seconds taken."""
    bare = sum(r.clips / training_rate + r.validation_clips / validation_rate for r in train_runs)
    return bare / sum(r.whole for r in train_runs)


def row(name: str, job: str, rate: float, timed: str, old: dict, ceiling: dict) -> dict:
    return {"case": name, "job": job, "timed": timed, "clips/s": rate, "vs old way": f"{rate / old[job]:.1f}x",
            "share of bf16 ceiling": "" if name.startswith("old") else f"{rate / ceiling[job]:.0%}"}


if __name__ == "__main__":
    main()
