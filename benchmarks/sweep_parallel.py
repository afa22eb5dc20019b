"""Wall time of one sweep of tiny members with --parallel 1 (in process) and --parallel N (worker
processes, cores // N threads each), on generated data with a warm feature cache.

    python benchmarks/sweep_parallel.py [--members 4] [--epochs 3] [--parallel 2] [--work DIR]

Prints the CPU model, each command with its wall time, and the speed-up over --parallel 1.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mosquito_ast.synth import generate_dataset


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="Working folder (default: a temporary one).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    data = work / "data"
    if not data.exists():
        generate_dataset(data / "train", recordings_per_species=4, clips_per_recording=8, seed=1)
        generate_dataset(data / "validation", recordings_per_species=4, clips_per_recording=8, seed=2)
    sweep = work / "bench.yaml"
    sweep.write_text(yaml.safe_dump({
        "base": {"preset": "tiny", "epochs": args.epochs, "batch_sizes": [8], "precision": "32",
                 "cache_dir": str(work / "cache")},
        "grid": {"seed": list(range(1, args.members + 1))},
        "datasets": {"synth": {"train": str(data / "train"), "validation": str(data / "validation")}}}))
    command = [str(Path(sys.executable).with_name("mosquito-ast")), "sweep", str(sweep)]
    print(f"CPU: {cpu_model()}; {args.members} tiny members x {args.epochs} epochs, "
          f"4 species x 4 recordings x 8 clips per side")
    warm = yaml.safe_load(sweep.read_text())
    warm["grid"]["seed"] = [0]
    warm["base"]["epochs"] = 1
    (work / "warm.yaml").write_text(yaml.safe_dump(warm))
    subprocess.run([command[0], "sweep", str(work / "warm.yaml"), "--output", str(work / "warm")], check=True,
                   capture_output=True)  # fills the feature cache, so both timings measure training only
    times = {}
    for parallel in (1, args.parallel):
        output = work / f"parallel{parallel}"
        shutil.rmtree(output, ignore_errors=True)
        run = [*command, "--output", str(output), "--parallel", str(parallel)]
        start = time.perf_counter()
        subprocess.run(run, check=True, capture_output=True)
        times[parallel] = time.perf_counter() - start
        print(f"{' '.join(run)}\n  wall {times[parallel]:.1f} s")
    print(f"speed-up --parallel {args.parallel} over --parallel 1: {times[1] / times[args.parallel]:.2f}x")


if __name__ == "__main__":
    main()
