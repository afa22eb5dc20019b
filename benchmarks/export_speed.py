"""Field-device throughput on one CPU thread: clips/s from wav files (decoding and fbank included) of an
ensemble in the tool, one member in the tool, and that member exported to ONNX (fp32 and int8), with
the size on disk of each.

Cases, interleaved round by round (`_common.interleave`), each one pass over every clip of --data:
- ensemble (tool): `inference.members.predict_probabilities` on every member, precision auto (bf16 on a
  CPU with AVX512-BF16/AMX), features computed from the files each pass (no cache);
- member (tool): the same with one member (--member, default the ensemble's first);
- member ONNX fp32 / int8: `mosquito-ast export` of that member (int8: dynamic, its self-check's choice
  of weight type), run by onnxruntime on the CPU provider with 1 intra-op thread, on the tool's fbank;
- decode + fbank only: the tool's feature pass alone, the ceiling of every case above.
Each system is also timed on ready-made fbank ("model only"): the share of the work an exported model
changes. Rates are the median round's (the best round is printed too: a shared machine slows rounds).
torch runs on 1 thread (`torch.set_num_threads(1)`), onnxruntime with intra_op_num_threads=1.

Members: --models DIR (an ensemble, e.g. a sweep's best/ folder), else --members N trained here on the
wingbeats sample (../shared/data/wingbeats) with the default recipe (`train`'s small-data: tiny encoder,
30 epochs, last epoch kept), seeds 1..N, on 2 threads or --train-threads.

    python benchmarks/export_speed.py                          # 5 members trained on wingbeats, 3 rounds
    python benchmarks/export_speed.py --train-output runs/speed      # keep them: later --models runs/speed/best
    python benchmarks/export_speed.py --models runs/best --member runs/student --rounds 5
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's fbank on 1 thread too
    os.environ.setdefault(_variable, "1")

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import Tally, cpu_model, interleave, machine_report, print_table, quiet_lightning

from mosquito_ast.config import ExportParams, ReadParams, TrainParams
from mosquito_ast.data import discover_unlabelled
from mosquito_ast.inference.members import load_members, predict_probabilities, score_features
from mosquito_ast.commands.export import export, onnx_session, run_onnx
from mosquito_ast.features import compute_features
from mosquito_ast.hardware import resolve_precision
from mosquito_ast.commands.train import train

WINGBEATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "wingbeats"
FEATURES = "decode + fbank only"


def folder_size(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def train_members(data: Path, output: Path, count: int, epochs: int | None, threads: int) -> Path:
    """`count` members of the default recipe on `data`, seeds 1..count, into output/best/seed<N>."""
    torch.set_num_threads(threads)
    quiet_lightning()
    for seed in range(1, count + 1):
        started = time.perf_counter()
        train(TrainParams(train_dir=str(data), output=str(output), postfix=f"seed{seed}", seed=seed,
                          epochs=epochs, progress=False, no_cache=True))
        print(f"trained member seed{seed} in {time.perf_counter() - started:.0f} s")
    return output / "best"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="Ensemble folder (default: train --members here).")
    parser.add_argument("--member", type=Path, help="The single member timed and exported (default: the ensemble's first), e.g. a distilled student.")
    parser.add_argument("--data", type=Path, default=WINGBEATS, help="Clips timed (and trained on without --models).")
    parser.add_argument("--members", type=int, default=5, help="Members trained without --models.")
    parser.add_argument("--epochs", type=int, default=None, help="Training epochs (default: the recipe's).")
    parser.add_argument("--train-threads", type=int, default=2, help="torch threads while training members.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="Passes over --data per case and round.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-output", type=Path, help="Keep the members trained here (reuse them with --models DIR/best).")
    parser.add_argument("--workdir", type=Path, default=None, help="Where the temporary folder goes.")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data}: no clips (the wingbeats sample lives in ../shared/data/wingbeats)")

    with tempfile.TemporaryDirectory(prefix="export-speed-", dir=args.workdir) as tmp:
        root = Path(tmp)
        models = args.models or train_members(args.data, args.train_output or root / "members", args.members,
                                              args.epochs, args.train_threads)
        members = load_members(models)
        member_folder = args.member or members[0].folder
        member = load_members(member_folder)
        onnx_dir = root / "onnx"
        export(ExportParams(models=str(member_folder), output=str(onnx_dir), int8=True, check_data=str(args.data),
                            check_clips=256, no_cache=True, progress=False))
        torch.set_num_threads(1)  # after export, which uses the physical cores: timing is on one thread
        print(machine_report())

        clips = discover_unlabelled(args.data)
        paths = clips * args.repeat
        read = ReadParams(no_cache=True, precision="auto")
        precision = resolve_precision("auto", cuda=False)
        settings = member[0].features
        ready = {m.features.extraction_key(): compute_features(paths, m.features, None, progress=False).features
                 for m in [*members, *member]}
        sessions = {name: onnx_session(onnx_dir / file, threads=1)
                    for name, file in (("fp32", "model.onnx"), ("int8", "model.int8.onnx"))}
        outputs: dict[str, np.ndarray] = {}

        def timed(name, work):
            def case():
                started = time.perf_counter()
                outputs[name] = work()
                return len(outputs[name]), time.perf_counter() - started, 1
            return case

        def tool(chosen):
            return lambda: predict_probabilities(chosen, paths, read, args.batch_size, progress=False,
                                                 device="cpu").probabilities.mean(axis=0)

        def tool_model(chosen):
            return lambda: score_features(chosen, ready, precision, args.batch_size, device="cpu").mean(axis=0)

        def onnx(key):
            return lambda: run_onnx(sessions[key], compute_features(paths, settings, None, progress=False).features,
                                    args.batch_size)

        def onnx_model(key):
            return lambda: run_onnx(sessions[key], ready[settings.extraction_key()], args.batch_size)

        systems = {f"ensemble of {len(members)} (tool, {precision})": (tool(members), tool_model(members)),
                   f"member (tool, {precision})": (tool(member), tool_model(member)),
                   "member ONNX fp32": (onnx("fp32"), onnx_model("fp32")),
                   "member ONNX int8": (onnx("int8"), onnx_model("int8"))}
        cases = {name: timed(name, whole) for name, (whole, _) in systems.items()}
        cases[FEATURES] = timed(FEATURES, lambda: compute_features(paths, settings, None, progress=False).features)
        cases.update({f"{name} [model only]": timed(f"{name} [model only]", model)
                      for name, (_, model) in systems.items()})
        print(f"timing {len(clips)} clips x {args.repeat} from {args.data}, {args.rounds} rounds, batch "
              f"{args.batch_size}, 1 thread (torch {torch.get_num_threads()}, onnxruntime intra-op 1)")
        tallies: dict[str, Tally] = interleave(cases, args.rounds)

        sizes = dict(zip(systems, (sum(folder_size(m.folder) for m in members), folder_size(member[0].folder),
                                   folder_size(onnx_dir / "model.onnx"), folder_size(onnx_dir / "model.int8.onnx"))))
        fresh = load_members(member[0].folder)  # the timed copy holds bf16 weights now
        reference = predict_probabilities(fresh, clips, ReadParams(no_cache=True, precision="32"), args.batch_size,
                                          progress=False, device="cpu").probabilities[0]
        median = {name: statistics.median(tally.rates) for name, tally in tallies.items()}
        rows = []
        for name in systems:
            model_name = f"{name} [model only]"
            same = (outputs[name][:len(clips)].argmax(axis=1) == reference.argmax(axis=1)).mean()
            rows.append({"system": name, "clips/s from wav": median[name],
                         "x ensemble": median[name] / median[next(iter(systems))],
                         "best round": tallies[name].best_rate, "model only clips/s": median[model_name],
                         "model only x ensemble": median[model_name] / median[f"{next(iter(systems))} [model only]"],
                         "size MB": sizes[name] / 1e6, "same label as member fp32": f"{same:.1%}"})
        rows.append({"system": FEATURES, "clips/s from wav": median[FEATURES], "best round": tallies[FEATURES].best_rate})
        print(f"\nCPU: {cpu_model()} | 1 thread | {len(clips)} clips of {args.data.name} x {args.repeat} | "
              f"member {member[0].name} | rates: median round | same label: against that member in PyTorch fp32")
        print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
