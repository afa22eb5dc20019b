"""Sweeps: many `train` runs from one YAML file (grid × datasets), with a ledger, resumption and
local, papermill or Ray backends. See `examples/` for sweep files."""

from .ledger import LEDGER_NAME, SUMMARY_NAME, Ledger
from .runner import COMPARISON_NAME, SweepOutcome, compare_ensembles, report, run_sweep
from .spec import Run, SweepSpec, expand, load_sweep

__all__ = ["COMPARISON_NAME", "LEDGER_NAME", "SUMMARY_NAME", "Ledger", "Run", "SweepOutcome", "SweepSpec",
           "compare_ensembles", "expand", "load_sweep", "report", "run_sweep"]
