"""Classify mosquito species from flight-tone clips with ensembles of Audio Spectrogram Transformers."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Ensemble", "EnsembleMember", "save_for_transformers"]


def __getattr__(name: str) -> Any:
    """The Python API, imported on first use: the light field runtime (`mosquito_ast_lite`) and `--help`
    import this package too. `Ensemble` itself imports no torch, transformers or pandas until it loads
    members, so a notebook cell that only imports it is instant; the other two load torch."""
    if name == "Ensemble":
        from .api import Ensemble

        return Ensemble
    if name == "EnsembleMember":
        from .api_member import EnsembleMember

        return EnsembleMember
    if name == "save_for_transformers":
        from .checkpoints.transformers_format import save_for_transformers

        return save_for_transformers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
