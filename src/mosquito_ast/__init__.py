"""Classify mosquito species from flight-tone clips with ensembles of Audio Spectrogram Transformers."""

__version__ = "0.1.0"

API = ("Ensemble", "EnsembleMember", "save_for_transformers")


def __getattr__(name: str):
    """The Python API (`api.py`), imported on first use: it loads torch and transformers, which the light
    field runtime (`mosquito_ast_lite`) and `--help` must not."""
    if name not in API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import api

    return getattr(api, name)
