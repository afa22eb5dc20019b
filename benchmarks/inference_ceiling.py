"""Inference at the hardware ceiling, issue 16: evaluate and predict against the bare model and the old way.

On the CPU at hand (threads as the commands use them, `hardware.use_physical_cores`), with members
of --preset (random weights: they do not change the speed) and clips from ../shared/data/wingbeats when
present, else generated ones:

- this tool, evaluate: `predict_probabilities` as `evaluate` runs it on --clips wav files, decoded and
  featurized every round (no cache), batch --batch-size, precision auto;
- this tool, predict: `predict_files` on --files wav files, one file at a time as `predict` runs it
  (a clip of 1 s or less is one window);
- ceiling: the bare classifier (ASTModel, mean over tokens, linear head) with the weights `auto` gives
  (bf16 on a CPU with bf16 units, else fp32), on ready-made normalized features, at the same batch
  (--batch-size for evaluate, 1 for predict), softmax in float32: what the hardware allows;
- old way: how the old notebooks predicted: fp32, the clip padded to 1024 frames, one clip at a time
  from wav (decode, fbank, forward), on --old-clips clips per round.

With --int8, also `evaluate --precision int8` (each member as an onnxruntime graph with int8 weights,
`mosquito_ast.inference.int8`; the graphs are built before the rounds, their build time printed), against the same
bf16 ceiling, and its agreement with the bf16 path on the clips (same label, largest probability
difference). Agreement means something only for trained members: pass them with --models DIR.

All cases run interleaved in one process, round by round; the table takes each case's fastest round
(the least disturbed on a shared machine). Then the cold start: `mosquito-ast predict` on one wav in a
fresh process, seconds to its first output line and to its exit (fastest of --cold-runs). Training
against its ceiling is `precision.py`'s.

    python benchmarks/inference_ceiling.py                        # base, 32 clips, 8 files: about a minute on 2 cores
    python benchmarks/inference_ceiling.py --preset small --clips 128 --files 32 --rounds 5
    python benchmarks/inference_ceiling.py --int8 --models runs/best --clips 206 --cold-runs 0
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import Tally, ast_classifier, inference_step, interleave, machine_report, print_table, timed_steps
from mosquito_ast_lite.audio import load_clip
from mosquito_ast.checkpoints import CONFIG_NAME, OLD_NOTEBOOK_MAX_LENGTH, WEIGHTS_NAME
from mosquito_ast.checkpoints.classifier import save_member
from mosquito_ast.config import EvaluateParams, PredictParams
from mosquito_ast.inference.members import Member, load_members, predict_probabilities
from mosquito_ast.features import FeatureSettings, compute_features, fbank, make_extractor, normalize
from mosquito_ast.hardware import inference_dtype, resolve_precision, use_physical_cores
from mosquito_ast.inference.int8 import attach
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import PRESETS
from mosquito_ast.commands.predict import predict_files
from mosquito_ast.synth import DEFAULT_SPECIES, generate_dataset

WINGBEATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wingbeats"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="base", choices=sorted(PRESETS))
    parser.add_argument("--members", type=int, default=1, help="ensemble size (rates are per member)")
    parser.add_argument("--clips", type=int, default=32, help="wav files scored per round, as evaluate")
    parser.add_argument("--files", type=int, default=8, help="wav files scored per round, as predict")
    parser.add_argument("--old-clips", type=int, default=2, help="clips per round the old way")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=2, help="fresh `mosquito-ast predict` processes (0: skip)")
    parser.add_argument("--data", type=Path, default=WINGBEATS, help="folder-per-class wav tree (default: wingbeats)")
    parser.add_argument("--int8", action="store_true", help="also evaluate with --precision int8")
    parser.add_argument("--models", type=Path, default=None,
                        help="trained members to use instead of --members random ones of --preset")
    return parser.parse_args()


def wav_files(data: Path, scratch: Path, count: int) -> tuple[list[str], list[str], str]:
    """`count` wav files spread over the classes of `data` (generated clips when it is missing), the
    class names, and where they came from."""
    if data.is_dir():
        paths = sorted(str(p) for p in data.rglob("*.wav"))
        labels = sorted({Path(p).relative_to(data).parts[0] for p in paths})
        source = f"{data} ({len(paths)} files)"
    else:
        per_species = math.ceil(count / len(DEFAULT_SPECIES))
        paths = sorted(map(str, generate_dataset(scratch / "clips", recordings_per_species=1,
                                                 clips_per_recording=per_species, seed=0)))
        labels = [s.name for s in DEFAULT_SPECIES]
        source = "generated clips (mosquito_ast.synth)"
    step = max(1, len(paths) // count)
    return paths[::step][:count], labels, source


def save_members(folder: Path, preset: str, labels: list[str], count: int) -> Path:
    """`count` member folders of one randomly initialised model (its weights hard-linked)."""
    settings = FeatureSettings()
    first = save_member(ast_classifier(preset, settings.max_length, labels), folder / "m00", settings, {})
    for index in range(1, count):
        member = folder / f"m{index:02d}"
        member.mkdir()
        os.link(first / WEIGHTS_NAME, member / WEIGHTS_NAME)
        (member / CONFIG_NAME).write_text((first / CONFIG_NAME).read_text())
    return folder


def tool_evaluate(members: list[Member], paths: list[str], batch_size: int, precision: str = "auto"):
    params = EvaluateParams(models="members", data="clips", no_cache=True, precision=precision)

    def run() -> tuple[int, float, int]:
        started = time.perf_counter()
        result = predict_probabilities(members, paths, params, batch_size=batch_size, progress=False)
        return len(result.paths) * len(members), time.perf_counter() - started, -(-len(paths) // batch_size)

    return run


def tool_predict(members: list[Member], paths: list[str], models: Path):
    params = PredictParams(inputs=paths, models=str(models), precision="auto", progress=False)

    def run() -> tuple[int, float, int]:
        started = time.perf_counter()
        result = predict_files(members, paths, params)
        return int(result.files["windows"].sum()) * len(members), time.perf_counter() - started, len(paths)

    return run


def old_way(preset: str, labels: list[str], paths: list[str], clips: int):
    """The notebooks' inference: fp32, 1024 frames, decode + fbank + forward for one clip at a time."""
    settings = FeatureSettings(max_length=OLD_NOTEBOOK_MAX_LENGTH)
    extractor = make_extractor(settings)
    model = ast_classifier(preset, OLD_NOTEBOOK_MAX_LENGTH, labels).eval()
    with torch.inference_mode():  # one-time kernel selection is not a per-clip cost
        model(torch.zeros(1, OLD_NOTEBOOK_MAX_LENGTH, settings.num_mel_bins))
    position = {"next": 0}

    def run() -> tuple[int, float, int]:
        started = time.perf_counter()
        for _ in range(clips):
            path = paths[position["next"] % len(paths)]
            position["next"] += 1
            wave = load_clip(path, settings.sample_rate, settings.clip_seconds)
            features = torch.from_numpy(normalize(fbank(wave, settings, extractor), settings))
            with torch.inference_mode():
                model(features[None]).softmax(dim=-1)
        return clips, time.perf_counter() - started, clips

    return run


def cold_start(models: Path, wav: str, output: Path, runs: int) -> tuple[float, float]:
    """Fastest seconds to the first output line and to the exit of `mosquito-ast predict` on one wav."""
    command = [sys.executable, "-m", "mosquito_ast", "predict", "--models", str(models), wav,
               "--output", str(output), "--no-progress"]
    first, whole = [], []
    for _ in range(runs):
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        process.stdout.readline()
        first.append(time.perf_counter() - started)
        _, errors = process.communicate()
        whole.append(time.perf_counter() - started)
        if process.returncode:
            raise SystemExit(f"mosquito-ast predict failed: {errors.strip().splitlines()[-1:]}")
    return min(first), min(whole)


def table(tallies: dict[str, Tally]) -> list[dict]:
    old = tallies["old way"].best_rate
    rows = []
    for workload in ("evaluate", "evaluate int8", "predict"):
        if f"{workload}: this tool" not in tallies:
            continue
        ceiling = tallies[f"{workload.split()[0]}: ceiling"].best_rate
        tool = tallies[f"{workload}: this tool"].best_rate
        rows.append({"workload": workload, "this tool clips/s": tool, "ceiling clips/s": ceiling,
                     "tool/ceiling": f"{tool / ceiling:.0%}", "old way clips/s": old,
                     "vs old way": f"{tool / old:.1f}x"})
    return rows


def agreement(bf16: np.ndarray, int8: np.ndarray) -> str:
    """Same label and largest probability difference, over members and clips."""
    same = (bf16.argmax(axis=-1) == int8.argmax(axis=-1)).mean()
    return f"same label {same:.1%}, largest probability difference {np.abs(bf16 - int8).max():.3f}"


def main() -> None:
    args = arguments()
    use_physical_cores()  # as the commands do: torch on the physical cores, numpy's BLAS on one thread
    print(machine_report())
    precision = resolve_precision("auto")
    dtype = inference_dtype(precision)
    with tempfile.TemporaryDirectory(prefix="inference-ceiling-") as scratch:
        root = Path(scratch)
        paths, labels, source = wav_files(args.data, root, max(args.clips, args.files))
        models = args.models or save_members(root / "models", args.preset, labels, args.members)
        members = load_members(models)
        labels, settings = members[0].labels, members[0].features
        ready = torch.from_numpy(normalize(compute_features(paths, settings, progress=False).features, settings))
        bare = ASTClassifier.from_config(members[0].model.encoder.config, labels).to(dtype).eval()
        batch = ready[:args.batch_size]
        cases = {
            "evaluate: this tool": tool_evaluate(members, paths[:args.clips], args.batch_size),
            "evaluate: ceiling": timed_steps(inference_step(bare, batch), -(-args.clips // len(batch)), len(batch)),
            "predict: this tool": tool_predict(members, paths[:args.files], models),
            "predict: ceiling": timed_steps(inference_step(bare, ready[:1]), args.files, 1),
            "old way": old_way(args.preset, labels, paths, args.old_clips),
        }
        cases["evaluate: this tool"]()  # warm-up: casts the members to the inference dtype, selects kernels
        cases["predict: this tool"]()
        if args.int8:
            quantized = load_members(models)  # fp32 weights to trace; the others are bf16 now
            attach(quantized, None)  # graphs built once per member (kept on it), not cached on disk
            cases["evaluate int8: this tool"] = tool_evaluate(quantized, paths[:args.clips], args.batch_size, "int8")
            started = time.perf_counter()
            cases["evaluate int8: this tool"]()  # builds each member's graph once
            print(f"int8 graphs built in {time.perf_counter() - started:.1f} s for {len(quantized)} member(s)")
            if args.models:  # agreement means something for trained members only
                scored = {p: predict_probabilities(m, paths[:args.clips], EvaluateParams(
                    models="members", data="clips", no_cache=True, precision=p), args.batch_size, progress=False).probabilities
                    for p, m in (("auto", members), ("int8", quantized))}
                print(f"int8 vs {precision} on {args.clips} clips x {len(members)} member(s): "
                      f"{agreement(scored['auto'], scored['int8'])}")
        kind = f"{len(members)} member(s) from {args.models}" if args.models else f"{args.members} {args.preset} member(s)"
        print(f"{kind}, {len(labels)} classes; clips: {source}; precision auto -> "
              f"{precision} ({dtype} weights); evaluate {args.clips} clips, batch {args.batch_size}; predict "
              f"{args.files} files; old way {args.old_clips} clips per round at {OLD_NOTEBOOK_MAX_LENGTH} frames")
        tallies = interleave(cases, args.rounds)
        print(f"\nfastest of {args.rounds} rounds, clips/s per member:")
        print_table(table(tallies), ["workload", "this tool clips/s", "ceiling clips/s", "tool/ceiling",
                                     "old way clips/s", "vs old way"])
        if args.cold_runs:
            first, whole = cold_start(models, paths[0], root / "cold.csv", args.cold_runs)
            print(f"\ncold start, `mosquito-ast predict` on one wav ({kind}, fastest "
                  f"of {args.cold_runs}): first output line {first:.2f} s, exit {whole:.2f} s")


if __name__ == "__main__":
    main()
