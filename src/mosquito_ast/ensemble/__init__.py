"""Ensemble evaluation: members, aggregation, metrics and reports."""
