"""Wall time of `mosquito-ast demo` from nothing (fresh output folder and feature cache) against the
5-minute budget on a 2-core CPU.

    python benchmarks/demo_time.py [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import cpu_model

BUDGET_S = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="Leave the demo output here instead of a temporary folder.")
    args = parser.parse_args()
    output = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="demo-time-"))
    shutil.rmtree(output, ignore_errors=True)
    command = [sys.executable, "-m", "mosquito_ast", "demo", "--output", str(output), "--seed", str(args.seed),
               "--no-progress"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(result.stdout[-2500:])
    if result.returncode != 0:
        print(result.stderr[-3000:])
        raise SystemExit(f"demo failed with exit code {result.returncode}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"demo wall time {seconds:.0f} s = {seconds / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget")
    if not args.keep:
        shutil.rmtree(output, ignore_errors=True)


if __name__ == "__main__":
    main()
