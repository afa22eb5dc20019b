"""A runtime without PyTorch for models exported by `mosquito-ast export`: numpy fbank + onnxruntime.

`python -m mosquito_ast.lite MODEL_DIR FILES_OR_FOLDERS... --output predictions.csv` writes the same
per-file and per-window CSVs as `mosquito-ast predict`. Needs only numpy, soundfile, soxr and onnxruntime (on a device:
`pip install --no-deps mosquito-ast` and those four); nothing here imports torch, transformers, lightning
or pandas, and of the package only `audio`, `data` and `io`, which import none of them either.
Names are loaded on first use, so `python -m mosquito_ast.lite --threads N` can limit numpy's threads
before numpy starts.
"""

from __future__ import annotations

_EXPORTS = {
    "Fbank": "fbank", "FbankSettings": "fbank",
    "LiteModel": "runtime", "LitePredictions": "runtime", "ModelError": "runtime", "load_model": "runtime",
    "predict_files": "runtime", "write_predictions": "runtime", "expand_inputs": "runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
