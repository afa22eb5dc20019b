"""Classify mosquito species from flight-tone clips with ensembles of Audio Spectrogram Transformers."""

__version__ = "0.1.0"
