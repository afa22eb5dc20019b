"""A runtime without PyTorch for models exported by `mosquito-ast export`: numpy fbank + onnxruntime.

`mosquito-ast-lite MODEL_DIR FILES_OR_FOLDERS... --output predictions.csv` (or `python -m mosquito_ast_lite`)
writes the same per-file and per-window CSVs as `mosquito-ast predict`. Its own distribution, needing only
numpy, soundfile, soxr and onnxruntime; `mosquito-ast` depends on it for audio decoding (`audio`), folder
walking (`files`) and atomic writes (`io`), so the tool and a device read recordings the same way.
Names are loaded on first use, so `--threads N` can limit numpy's threads before numpy starts.
"""

from __future__ import annotations

_EXPORTS = {
    "Fbank": "fbank", "FbankSettings": "fbank",
    "LiteModel": "runtime", "ModelError": "runtime", "load_model": "runtime", "predict_files": "runtime",
    "expand_inputs": "runtime", "RowOptions": "stream", "stream_predictions": "stream",
    "CollectedRows": "tables", "prediction_files": "tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
