"""Precision on a CUDA GPU, issue 9: what `--precision auto` picks there and what it buys.

One process on one GPU:
- the bare AST-base classifier at 100 frames (1 s clips) and the old notebooks' 1024 frames: training
  steps (AdamW) in fp32 and under bf16 autocast, inference in fp32, bf16 autocast and bf16 weights;
- this tool end to end: `train()` from wav files with precision `auto` (the choice is read back from
  the member's config.json), then `evaluate`'s inference path on the member in fp32 and in `auto`,
  with the agreement of the two (same label, largest probability difference).

    python benchmarks/gpu_precision.py                  # about 3 minutes on an H100/H200
    python benchmarks/gpu_precision.py --clips 1024     # more clips for the end-to-end run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from _common import LABELS, print_table, quiet_lightning, synthetic_split, timed_train
from mosquito_ast.checkpoints import OLD_NOTEBOOK_MAX_LENGTH
from mosquito_ast.config import DataParams, TrainParams
from mosquito_ast.inference.members import load_members, predict_probabilities
from mosquito_ast.features import FeatureSettings
from mosquito_ast.hardware import resolve_precision
from mosquito_ast.models.classifier import ASTClassifier
from mosquito_ast.models.encoder import encoder_config


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=512, help="training clips on disk for the train() run")
    parser.add_argument("--validation-clips", type=int, default=128, help="validation clips of the train() run")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (bare model and train())")
    parser.add_argument("--eval-batch-size", type=int, default=256, help="inference batch size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the train() run")
    parser.add_argument("--steps", type=int, default=20, help="timed bare-model steps per case")
    parser.add_argument("--mfu-batch-sizes", type=int, nargs="+", default=[32, 128, 512],
                        help="bf16 training batch sizes whose model FLOP utilisation is reported")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s)")
    return parser.parse_args()


def training_flops_per_clip(frames: int) -> float:
    """Matrix FLOPs of one AST-base training step per clip (forward + backward = 3 x forward),
    counted from the architecture: patch embedding, attention projections, scores, MLP, per layer."""
    config = encoder_config("base", FeatureSettings(max_length=frames))
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patches = ((config.num_mel_bins - 16) // config.frequency_stride + 1) * ((frames - 16) // config.time_stride + 1)
    tokens = patches + 2
    per_layer = 2 * tokens * (4 * h * h + 2 * h * inner) + 4 * tokens * tokens * h
    forward = 2 * patches * 256 * h + layers * per_layer
    return 3.0 * forward


def model(frames: int, device: torch.device) -> ASTClassifier:
    return ASTClassifier.from_config(encoder_config("base", FeatureSettings(max_length=frames)), LABELS).to(device)


def rate(step: Callable[[], None], steps: int, clips_per_step: int) -> float:
    """Clips per second over `steps` calls after two warm-up calls, with the GPU synchronised."""
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * clips_per_step / (time.perf_counter() - started)


def train_case(net: ASTClassifier, batch_size: int, frames: int, bf16: bool, device: torch.device) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-5, fused=True)
    features = torch.randn(batch_size, frames, 128, device=device)
    targets = torch.randint(0, len(LABELS), (batch_size,), device=device)

    def step() -> None:
        net.train()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = net(features)
        torch.nn.functional.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def inference_case(net: ASTClassifier, batch_size: int, frames: int, mode: str,
                   device: torch.device) -> Callable[[], None]:
    features = torch.randn(batch_size, frames, 128, device=device)
    if mode == "bf16 weights":
        net = net.to(torch.bfloat16)
        features = features.bfloat16()

    def step() -> None:
        net.eval()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16 autocast"):
            net(features).float().softmax(dim=1)

    return step


def bare_model_rates(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for frames, label in ((OLD_NOTEBOOK_MAX_LENGTH, "old way, 1024 frames"), (100, "this tool, 100 frames")):
        train_batch = 4 if frames == OLD_NOTEBOOK_MAX_LENGTH else args.batch_size
        eval_batch = 4 if frames == OLD_NOTEBOOK_MAX_LENGTH else args.eval_batch_size
        for bf16 in (False, True):
            net = model(frames, device)
            rows.append({"case": f"{label}, train batch {train_batch}", "precision": "bf16 autocast" if bf16 else "fp32",
                         "clips/s": rate(train_case(net, train_batch, frames, bf16, device), args.steps, train_batch)})
            del net
        for mode in ("fp32", "bf16 autocast", "bf16 weights"):
            net = model(frames, device)
            rows.append({"case": f"{label}, inference batch {eval_batch}", "precision": mode,
                         "clips/s": rate(inference_case(net, eval_batch, frames, mode, device), args.steps, eval_batch)})
            del net
        torch.cuda.empty_cache()
    return rows


def utilisation_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    flops = training_flops_per_clip(100)
    rows = []
    for batch in args.mfu_batch_sizes:
        net = model(100, device)
        clips_per_s = rate(train_case(net, batch, 100, True, device), args.steps, batch)
        rows.append({"bf16 training batch": batch, "clips/s": clips_per_s, "TFLOP/s": clips_per_s * flops / 1e12,
                     "MFU": f"{clips_per_s * flops / (args.peak_tflops * 1e12):.1%}"})
        del net
        torch.cuda.empty_cache()
    return rows


def end_to_end(args: argparse.Namespace, root: Path) -> dict:
    train_dir, validation_dir, n_train, n_validation = synthetic_split(root / "clips", args.clips, args.validation_clips)
    params = TrainParams(train_dir=str(train_dir), validation_dir=str(validation_dir), output=str(root / "runs"),
                         postfix="gpu", preset="base", epochs=args.epochs, batch_sizes=[args.batch_size],
                         precision="auto", no_cache=True, progress=False, num_workers=4)
    run = timed_train(params)
    member_dir = Path(params.output) / "best" / params.postfix
    stored = json.loads((member_dir / "config.json").read_text())
    members = load_members(member_dir)
    wavs = sorted(str(p) for p in Path(validation_dir).rglob("*.wav"))
    scored = {}
    for precision in ("32", "auto"):
        started = time.perf_counter()
        result = predict_probabilities(members, wavs, DataParams(no_cache=True, precision=precision),
                                       batch_size=args.eval_batch_size, progress=False)
        scored[precision] = (result.probabilities[0], time.perf_counter() - started)
    fp32, bf16 = scored["32"][0], scored["auto"][0]
    return {"train clips": n_train, "validation clips": n_validation,
            "precision stored in config.json": stored.get("precision"),
            "train() clips/s (whole run, per epoch)": run.clips / run.whole,
            "train() training-loop clips/s": run.clips / run.loop,
            "inference from wav, fp32 s": scored["32"][1], "inference from wav, auto s": scored["auto"][1],
            "bf16 vs fp32: same label": float(np.mean(fp32.argmax(1) == bf16.argmax(1))),
            "bf16 vs fp32: largest probability difference": float(np.abs(fp32 - bf16).max())}


def main() -> None:
    args = arguments()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures the GPU path (benchmarks/precision.py covers CPUs)")
    quiet_lightning()
    device = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"precision auto -> {resolve_precision('auto')}")
    rows = bare_model_rates(args, device)
    print_table(rows, ["case", "precision", "clips/s"])
    print(f"\nmodel FLOP utilisation, AST-base at 100 frames ({training_flops_per_clip(100) / 1e9:.1f} GFLOP per "
          f"training clip), peak {args.peak_tflops:.0f} TFLOP/s:")
    print_table(utilisation_rows(args, device), ["bf16 training batch", "clips/s", "TFLOP/s", "MFU"])
    with tempfile.TemporaryDirectory(prefix="gpu-precision-") as tmp:
        summary = end_to_end(args, Path(tmp))
    for key, value in summary.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
