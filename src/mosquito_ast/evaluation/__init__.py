"""Judging predictions: metrics, coverage, spectrum baselines, the report and its figures; no training imports."""
