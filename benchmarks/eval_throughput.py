"""Ensemble evaluation throughput on CPU: this tool versus the old evaluation notebook.

Members: randomly initialised AST-base classifiers saved with `save_member` (weights do not change the
speed; one weights file is hard-linked into every member folder to save disk).

- This tool: `predict_probabilities` as `evaluate` runs it: each file decoded and featurized once for
  all members (1 s clip = 100 frames), batches, `torch.inference_mode`, --precision (auto: bf16-mixed
  on CPUs with AMX/AVX512-BF16). Feature cache off, so decoding is counted.
- The old way: per file and per model, every 1 s clip padded to 1024 frames, batch 1, fp32. It is slow,
  so it is measured on --old-clip-models (file, model) pairs and extrapolated per clip-model.

    python benchmarks/eval_throughput.py [--members 10] [--clips 32] [--old-clip-models 3] [--also-fp32]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from transformers import ASTConfig

from mosquito_ast.audio import load_clip
from mosquito_ast.checkpoints import CONFIG_NAME, OLD_NOTEBOOK_MAX_LENGTH, WEIGHTS_NAME
from mosquito_ast.checkpoints.classifier import save_member
from mosquito_ast.config import DataParams
from mosquito_ast.ensemble.members import load_members, predict_probabilities
from mosquito_ast.features import FeatureSettings, fbank, make_extractor, normalize
from mosquito_ast.hardware import BF16_CPU_FLAGS, cpu_flags, physical_cores, resolve_precision
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import PRESETS, encoder_config
from mosquito_ast.synth import DEFAULT_SPECIES, generate_dataset


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def make_members(root: Path, count: int, labels: list[str]) -> Path:
    first = save_member(ASTClassifier.from_config(encoder_config("base", FeatureSettings()), labels),
                        root / "m00", FeatureSettings(), {})
    for index in range(1, count):
        folder = root / f"m{index:02d}"
        folder.mkdir()
        os.link(first / WEIGHTS_NAME, folder / WEIGHTS_NAME)
        shutil.copy(first / CONFIG_NAME, folder / CONFIG_NAME)
    return root


def old_way_seconds(paths: list[str], labels: list[str], pairs: int) -> float:
    """Seconds per (clip, model) the old notebook spent: one file at a time at 1024 frames, fp32."""
    model = ASTClassifier.from_config(ASTConfig(**PRESETS["base"], max_length=OLD_NOTEBOOK_MAX_LENGTH), labels).eval()
    settings = FeatureSettings(max_length=OLD_NOTEBOOK_MAX_LENGTH)
    extractor = make_extractor(settings)
    with torch.no_grad():  # warm-up: one-time kernel selection is not per-clip cost
        model(torch.zeros(1, OLD_NOTEBOOK_MAX_LENGTH, settings.num_mel_bins))
    started = time.perf_counter()
    for index in range(pairs):
        wave = load_clip(paths[index % len(paths)], settings.sample_rate, settings.clip_seconds)
        features = torch.from_numpy(normalize(fbank(wave, settings, extractor), settings))
        with torch.no_grad():
            model(features[None]).softmax(-1)
    return (time.perf_counter() - started) / pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--old-clip-models", type=int, default=3, help="(clip, model) pairs timed the old way")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--also-fp32", action="store_true", help="also time this tool at precision 32")
    args = parser.parse_args()

    threads = physical_cores()
    torch.set_num_threads(threads)
    precision = resolve_precision(args.precision)
    labels = [s.name for s in DEFAULT_SPECIES]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        per_species = math.ceil(args.clips / len(labels))
        paths = sorted(map(str, generate_dataset(root / "clips", recordings_per_species=1,
                                                 clips_per_recording=per_species, seed=0)))[:args.clips]
        make_members(root / "models", args.members, labels)
        started = time.perf_counter()
        members = load_members(root / "models")
        load_seconds = time.perf_counter() - started
        results = {}
        for name in [precision] + (["32"] if args.also_fp32 and precision != "32" else []):
            params = DataParams(no_cache=True, precision=name)
            predict_probabilities(members[:1], paths[:1], params, progress=False)  # warm-up, not timed
            started = time.perf_counter()
            predict_probabilities(members, paths, params, batch_size=args.batch_size, progress=False)
            results[name] = time.perf_counter() - started
        del members
        old = old_way_seconds(paths, labels, args.old_clip_models)

    pairs = args.clips * args.members
    flags = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    print(f"CPU: {cpu_model()}; bf16 flags: {', '.join(flags) or 'none'}; torch threads: {threads}; "
          f"torch {torch.__version__}")
    print(f"{args.members} AST-base members x {args.clips} clips of 1 s = {pairs} clip-models "
          f"(members loaded in {load_seconds:.1f} s, not counted)")
    print(f"old way: {old:.2f} s per clip-model (measured on {args.old_clip_models} clip-models, 1024 frames, "
          f"batch 1, fp32) -> extrapolated {old * pairs:.0f} s for all, {1 / old:.2f} clips/s per model")
    for name, seconds in results.items():
        print(f"this tool, precision {name}: {seconds:.1f} s for all ({pairs / seconds:.2f} clip-models/s, "
              f"features included) -> {old * pairs / seconds:.1f}x faster than the old way")


if __name__ == "__main__":
    main()
