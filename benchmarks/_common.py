"""Shared benchmark pieces: the machine report, interleaved timing, clips on disk, the old notebooks' model.

Every benchmark measures its baseline and its candidates in the same process, interleaved round by round,
so load from other processes on a shared machine hits all of them alike; ratios are what to compare.
"""

from __future__ import annotations

import math
import platform
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from lightning.pytorch.callbacks import Callback

from mosquito_ast.checkpoints import OLD_NOTEBOOK_MAX_LENGTH
from mosquito_ast.config import TrainParams
from mosquito_ast.features import FeatureSettings
from mosquito_ast.hardware import BF16_CPU_FLAGS, cpu_flags, physical_cores, resolve_precision
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import encoder_config
from mosquito_ast.synth import DEFAULT_SPECIES, generate_dataset
from mosquito_ast.commands.train import train

LABELS = [species.name for species in DEFAULT_SPECIES]


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in text.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_report() -> str:
    """CPU model, its bf16 matrix flags, threads, library versions and what precision `auto` picks."""
    flags = cpu_flags()
    bf16 = [f for f in (*BF16_CPU_FLAGS, "amx_tile") if f in flags] or ["none"]
    load = " ".join(f"{x:.1f}" for x in _load_average())
    return (f"CPU: {cpu_model()} | bf16 flags: {', '.join(bf16)} | {physical_cores()} physical cores, "
            f"torch threads {torch.get_num_threads()} | load average {load}\n"
            f"torch {torch.__version__} | precision auto -> {resolve_precision('auto')}")


def _load_average() -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ()


@dataclass
class Tally:
    """Clips processed and seconds spent by one benchmark case, summed over rounds."""

    name: str
    clips: int = 0
    seconds: float = 0.0
    steps: int = 0
    rates: list[float] = field(default_factory=list)  # one per round

    @property
    def rate(self) -> float:
        return self.clips / self.seconds if self.seconds else math.nan

    @property
    def best_rate(self) -> float:
        """The fastest round: the one least slowed by other processes on a shared machine."""
        return max(self.rates, default=math.nan)

    def add(self, clips: int, seconds: float, steps: int = 1) -> None:
        self.clips += clips
        self.seconds += seconds
        self.steps += steps
        self.rates.append(clips / seconds if seconds else math.nan)


Case = Callable[[], tuple[int, float, int]]  # runs once; returns (clips, seconds, steps) it timed


def interleave(cases: dict[str, Case], rounds: int, log: Callable[[str], None] = print) -> dict[str, Tally]:
    """Run every case once per round, in turn, so slow phases of a shared machine spread over all cases."""
    tallies = {name: Tally(name) for name in cases}
    for round_index in range(rounds):
        for name, case in cases.items():
            clips, seconds, steps = case()
            tallies[name].add(clips, seconds, steps)
            log(f"  round {round_index + 1}/{rounds} {name}: {clips} clips in {seconds:.1f} s "
                f"({clips / seconds:.2f} clips/s)")
    return tallies


def timed_steps(step: Callable[[], None], steps: int, clips_per_step: int, warmup: int = 1) -> Case:
    """A case timing `steps` calls of `step` after `warmup` untimed ones (the first call of a shape
    pays for oneDNN kernel selection and allocator growth). Warm-up runs only in the first round."""
    state = {"warm": warmup == 0}

    def run() -> tuple[int, float, int]:
        if not state["warm"]:
            for _ in range(warmup):
                step()
            state["warm"] = True
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * clips_per_step, time.perf_counter() - started, steps

    return run


def synthetic_split(root: Path, train_clips: int, validation_clips: int, clip_seconds: float = 1.0,
                    sample_rate: int = 16000) -> tuple[Path, Path, int, int]:
    """Generated wav clips on disk: (train dir, validation dir, train count, validation count), counts
    rounded up to whole recordings of 4 clips for each of the 4 species."""
    dirs = []
    counts = []
    for name, clips, seed in (("train", train_clips, 1), ("validation", validation_clips, 2)):
        per_recording = 4
        recordings = max(1, math.ceil(clips / (len(DEFAULT_SPECIES) * per_recording)))
        written = generate_dataset(root / name, recordings_per_species=recordings, clips_per_recording=per_recording,
                                   clip_seconds=clip_seconds, sample_rate=sample_rate, seed=seed)
        dirs.append(root / name)
        counts.append(len(written))
    return dirs[0], dirs[1], counts[0], counts[1]


@contextmanager
def cpu_benchmark(prefix: str, workdir: Path | None, train_clips: int,
                  validation_clips: int) -> Iterator[tuple[Path, Path, Path]]:
    """Start a CPU benchmark: quiet Lightning, torch threads on the physical cores, the machine report,
    and generated clips in a temporary folder. Yields (root, train dir, validation dir)."""
    quiet_lightning()
    torch.set_num_threads(physical_cores())
    print(machine_report())
    with tempfile.TemporaryDirectory(prefix=prefix, dir=workdir) as tmp:
        root = Path(tmp)
        train_dir, validation_dir, n_train, n_validation = synthetic_split(root / "clips", train_clips,
                                                                           validation_clips)
        print(f"clips on disk: {n_train} training, {n_validation} validation (1 s, 16 kHz wav)")
        yield root, train_dir, validation_dir


def ast_classifier(preset: str, frames: int, labels: list[str] = LABELS) -> ASTClassifier:
    """A randomly initialised classifier of `preset` at `frames` input frames (100 = 1 s; 1024 = old
    notebooks); weights do not change the speed."""
    return ASTClassifier.from_config(encoder_config(preset, FeatureSettings(max_length=frames)), labels)


def ast_base(frames: int) -> ASTClassifier:
    """AST-base with the classifier head, at `frames` input frames."""
    return ast_classifier("base", frames)


def old_notebook_model() -> ASTClassifier:
    return ast_base(OLD_NOTEBOOK_MAX_LENGTH)


def random_batch(batch_size: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch_size, frames, 128, generator=generator),
            torch.randint(0, len(LABELS), (batch_size,), generator=generator))


def training_step(model: ASTClassifier, batch: tuple[torch.Tensor, torch.Tensor], bf16: bool = False,
                  learning_rate: float = 1e-5, fused: bool = True) -> Callable[[], None]:
    """Plain forward + backward + AdamW step, fp32 or under bf16 autocast; AdamW fused as the tool's, or
    per tensor as the old notebooks' (`fused=False`)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, fused=fused)
    features, targets = batch

    def step() -> None:
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(features)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def inference_step(model: ASTClassifier, features: torch.Tensor, bf16: bool = False) -> Callable[[], None]:
    """One batched forward pass under inference_mode, softmax in float32 (bf16 autocast optional). The
    features are cast to the model's weight dtype, as `evaluate` does, so a bf16-weight model
    (`model.bfloat16()`) runs without autocast."""
    features = features.to(next(model.parameters()).dtype)

    def step() -> None:
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(features).float().softmax(dim=1)

    return step


class PhaseClock(Callback):
    """Where one `train()` call spends its time, from Lightning hooks: setup before fitting (audio,
    features, model), the training batches, validation, and the saving after each validation."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.loop = self.validation = 0.0
        self.clips = self.steps = self.validation_clips = 0
        self._epoch_start = self._last_batch = self._validation_start = 0.0

    def on_fit_start(self, trainer, module) -> None:
        self.marks["fit_start"] = time.perf_counter()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._epoch_start = self._last_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        self._last_batch = time.perf_counter()
        self.clips += len(batch[1])
        self.steps += 1

    def on_validation_start(self, trainer, module) -> None:
        self.loop += self._last_batch - self._epoch_start
        self._validation_start = time.perf_counter()

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_index, dataloader_index=0) -> None:
        self.validation_clips += len(batch[1])

    def on_validation_end(self, trainer, module) -> None:
        self.validation += time.perf_counter() - self._validation_start

    def on_fit_end(self, trainer, module) -> None:
        self.marks["fit_end"] = time.perf_counter()


@dataclass
class TrainRun:
    """One timed `train()` call and its phases, in seconds."""

    clips: int
    steps: int
    whole: float
    setup: float  # data discovery, audio decoding, features, model construction
    loop: float  # training batches (data loading, forward, backward, optimizer)
    validation: float
    saving: float  # everything else: checkpoint and member writes after validation, final export, teardown
    validation_clips: int = 0


def timed_train(params: TrainParams) -> TrainRun:
    """Run the tool's `train()` end to end with a `PhaseClock`."""
    clock = PhaseClock()
    started = time.perf_counter()
    train(params, callbacks=[clock])
    whole = time.perf_counter() - started
    setup = clock.marks["fit_start"] - started
    return TrainRun(clips=clock.clips, steps=clock.steps, whole=whole, setup=setup, loop=clock.loop,
                    validation=clock.validation, saving=whole - setup - clock.loop - clock.validation,
                    validation_clips=clock.validation_clips)


def quiet_lightning() -> None:
    """Keep Lightning's per-run banners (GPU available, ...) out of benchmark output."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)
