"""What the machine can do: bf16 matrix units, physical cores, the precision `auto` resolves to."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits  # installed with scikit-learn

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
INFERENCE_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


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
    """`auto` is bf16-mixed on a GPU with bf16 units (Ampere or later), or on a CPU with AMX/AVX512-BF16
    when no GPU; else 32. Emulated bf16 (pre-Ampere GPUs) is slower than fp32, so it does not count.
    The hardware arguments override detection (for tests and for reporting what would be chosen)."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available() if cuda is None else cuda:
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False) if cuda_bf16 is None else cuda_bf16
    else:
        bf16 = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
    return "bf16-mixed" if bf16 else "32"


def inference_dtype(precision: str) -> torch.dtype:
    """The weight dtype of inference at a resolved precision. Mixed precision keeps fp32 weights for the
    optimizer; inference has none, and bf16/fp16 weights run the same matrix products as autocast
    without casting every weight again on every batch, in half the memory."""
    return INFERENCE_DTYPES.get(precision, torch.float32)


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
    available to this process (a sweep worker pinned to one core gets one thread). numpy's BLAS gets
    one thread: the fbank's small products gain nothing from more, and its idle threads spin on the
    cores after each call, which halved the speed of the model call that follows in `predict`."""
    threadpool_limits(1, user_api="blas")
    requested = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(requested) if requested.isdigit() and int(requested) > 0 else physical_cores()
    torch.set_num_threads(threads)
    return threads
