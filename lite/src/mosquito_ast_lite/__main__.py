"""`mosquito-ast-lite MODEL_DIR FILES_OR_FOLDERS... --output predictions.csv` (or `python -m mosquito_ast_lite`):
label recordings with an exported ONNX model, without PyTorch."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .labels import DEFAULT_MIN_CONFIDENCE, DEFAULT_PRESENCE_DB


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mosquito-ast-lite",
        description="Label recordings with a model folder written by `mosquito-ast export` (model.json + ONNX), "
                    "without PyTorch. Writes the per-file CSV, <stem>_windows.csv and <stem>.json, as "
                    "`mosquito-ast predict` does.")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Folder with model.json and the ONNX file it names.")
    p.add_argument("inputs", metavar="FILES_OR_FOLDERS", nargs="+",
                   help="Audio files and/or folders (searched recursively).")
    p.add_argument("--output", default="predictions.csv", help="Per-file CSV (default: %(default)s).")
    p.add_argument("--hop-seconds", type=float, default=0.5,
                   help="Step between clip-length windows of a long recording (default: %(default)s).")
    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                   help="Files and windows whose top probability is below P are labelled 'uncertain' "
                        "(default: %(default)s; 0 = always name a species), as in `predict`.")
    p.add_argument("--presence-db", type=float, default=DEFAULT_PRESENCE_DB, metavar="DB",
                   help="Presence gate: windows whose strongest spectral peak in the wingbeat band stands less "
                        "than DB above its neighbourhood hold no flight tone, are not scored and are labelled "
                        "'no detection' (default: %(default)s; 0 = off).")
    p.add_argument("--detections-only", action="store_true",
                   help="Write only windows with a detection (a flight tone, a confident species, not "
                        "'background') to the windows table.")
    p.add_argument("--raven", metavar="DIR",
                   help="Also write one Raven Pro selection table per recording to DIR (detections, adjacent "
                        "windows of one species merged).")
    p.add_argument("--top-k", type=int, default=3, help="Labels listed per file (default: %(default)s).")
    p.add_argument("--batch-size", type=int, default=32, help="Windows per inference batch (default: %(default)s).")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for onnxruntime and numpy (default: 0, all cores).")
    p.add_argument("--fp32", action="store_true",
                   help="Run the fp32 graph of an int8 export (model.json's 'onnx_fp32') instead of the int8 one.")
    p.add_argument("--quiet", action="store_true", help="Print only warnings and errors.")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problems = []
    if args.hop_seconds <= 0:
        problems.append("--hop-seconds must be > 0")
    if not 0 <= args.min_confidence <= 1:
        problems.append("--min-confidence must be in [0, 1]")
    if args.presence_db < 0:
        problems.append("--presence-db must be >= 0 (0 = no presence gate)")
    if args.top_k < 1 or args.batch_size < 1 or args.threads < 0:
        problems.append("--top-k and --batch-size must be >= 1, --threads >= 0")
    if problems:
        print(f"error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    if args.threads and "numpy" not in sys.modules:  # numpy's BLAS reads these once, when it starts
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(variable, str(args.threads))

    from .io import OutputFolderError, check_output_files
    from .presence import gate_band, gate_line
    from .raven import review_sink, table_paths
    from .runtime import ModelError, expand_inputs, load_model, summary_header
    from .stream import RowOptions, stream_predictions
    from .tables import closing_line, output_paths, prediction_files

    missing = [item for item in args.inputs if not os.path.exists(item)]
    try:
        if missing:
            raise ModelError(f"{', '.join(missing)}: no such file or folder")
        check_output_files(*output_paths(args.output))
        files = expand_inputs(args.inputs)
        tables = table_paths(files, args.raven) if args.raven else None
        model = load_model(args.model_dir, args.threads, fp32=args.fp32)
    except (ModelError, OutputFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no audio files found in {', '.join(args.inputs)}", file=sys.stderr)
        return 2
    options = RowOptions(args.hop_seconds, args.top_k, args.min_confidence, args.presence_db, args.batch_size)
    if not args.quiet:
        print(gate_line(args.presence_db, model.sample_rates[0]))
    began = time.perf_counter()
    try:
        with prediction_files(args.output, model.labels, args.top_k, summary_header(model, options)) as rows:
            sink = review_sink(rows, args.detections_only, tables, gate_band(model.sample_rates[0]))
            windows = stream_predictions(model, files, sink, options, warn=lambda line: print(line, file=sys.stderr))
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot write {error.filename or args.output} ({error.strerror or error})", file=sys.stderr)
        return 1
    if not args.quiet:
        print(closing_line(rows.files, windows, time.perf_counter() - began,
                           [*map(str, output_paths(args.output)), *([args.raven] if args.raven else [])]))
    return 0


def run() -> None:
    """The `mosquito-ast-lite` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
