"""What the machine can do: bf16 matrix units, physical cores, the precision `auto` resolves to."""

from __future__ import annotations

import os
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_bf16(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(requested: str, cuda: bool | None = None, cuda_bf16: bool | None = None,
                      cpu_bf16: bool | None = None) -> str:
    """`auto` is bf16-mixed on a bf16-capable GPU, or on a CPU with AMX/AVX512-BF16 when no GPU; else 32.
    The hardware arguments override detection (for tests and for reporting what would be chosen)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() if cuda is None else cuda:
        bf16 = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
    else:
        bf16 = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
    return "bf16-mixed" if bf16 else "32"


def physical_cores() -> int:
    """Physical cores (hyper-threads share matrix units, so more threads than cores only contend)."""
    try:
        cores = {
            (block.get("physical id"), block.get("core id"))
            for block in (
                {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in chunk.splitlines() if ":" in line)}
                for chunk in Path("/proc/cpuinfo").read_text().split("\n\n")
            )
            if "core id" in block
        }
        available = len(os.sched_getaffinity(0))
        return max(1, min(len(cores), available)) if cores else available
    except (OSError, AttributeError):
        return os.cpu_count() or 1


def use_physical_cores() -> int:
    """Set torch's thread count to OMP_NUM_THREADS when the user set it, else the physical cores
    available to this process (a sweep worker pinned to one core gets one thread)."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(requested) if requested.isdigit() and int(requested) > 0 else physical_cores()
    torch.set_num_threads(threads)
    return threads
