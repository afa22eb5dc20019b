"""The presence gate: is there a flight tone in a window at all, before any species is named?

A trap records for days, mostly nothing; without a gate every window of noise gets a species. A flying
insect's wingbeat is a harmonic stack, so its spectrum has narrow peaks in the wingbeat band; broadband noise
(white, pink, brown) has none. The gate measures the strongest peak's prominence: the window's averaged power
spectrum (Welch: 32 ms Hann frames, half overlap) in PRESENCE_BAND_HZ, each bin over the median of the bins
within NEIGHBOURHOOD_HZ around it, in dB. The smallest score on the shared wingbeat corpus (206 real clips) is
11 dB, on the 70 one-second windows of the ten HumBugDB microphone recordings 12 dB; the largest on 600
windows of generated white, pink and brown noise is 2.9 dB: the default threshold, 6 dB, sits between. Real
field noise (wind, rain, other insects) is untested here. A steady hum with harmonics in the band passes the
gate too; a `background` class trained on the site's own recordings is what tells such sounds apart.

Windows below the threshold are not scored by the model at all (most of a day of trap audio), and their rows
say `labels.NO_DETECTION`. A threshold of 0 turns the gate off (every window's score is at least 0 dB; the
stream then skips the measurement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import DEFAULT_PRESENCE_DB

PRESENCE_BAND_HZ = (150.0, 3000.0)
NEIGHBOURHOOD_HZ = 250.0
FRAME_SECONDS = 0.032


def gate_band(sample_rate: int) -> tuple[float, float]:
    """The band searched for peaks (its top a neighbourhood below the Nyquist frequency): Raven's Low/High Freq."""
    low, high = PRESENCE_BAND_HZ
    return low, min(high, sample_rate / 2 - NEIGHBOURHOOD_HZ)


def gate_line(threshold_db: float, sample_rate: int) -> str:
    """The gate's settings as predict and the runtime print them before scoring."""
    if not threshold_db:
        return "presence gate: off (--presence-db 0)"
    low, high = gate_band(sample_rate)
    return f"presence gate: a spectral peak {threshold_db:g} dB above its neighbourhood in {low:g}-{high:g} Hz"


@dataclass(frozen=True)
class PresenceGate:
    """Scores windows at `sample_rate`; those under `threshold_db` hold no flight tone."""

    sample_rate: int
    threshold_db: float = DEFAULT_PRESENCE_DB

    def __post_init__(self) -> None:
        if self.threshold_db < 0:
            raise ValueError(f"the presence threshold must be >= 0 dB (0 = no gate), got {self.threshold_db}")
        if self.band[1] <= self.band[0]:
            raise ValueError(f"the presence gate needs a sample rate above {2 * (PRESENCE_BAND_HZ[0] + NEIGHBOURHOOD_HZ):g} "
                             f"Hz, the model's is {self.sample_rate} Hz; turn the gate off (presence threshold 0)")

    @property
    def band(self) -> tuple[float, float]:
        return gate_band(self.sample_rate)

    def scores(self, waves: np.ndarray) -> np.ndarray:
        """(windows, samples) -> each window's peak prominence in dB (0 for silence)."""
        waves = np.asarray(waves, np.float32)  # a ratio of powers: float32 is plenty, and twice as fast
        length = 1 << (int(round(FRAME_SECONDS * self.sample_rate)) - 1).bit_length()
        if waves.shape[1] < length:
            waves = np.pad(waves, ((0, 0), (0, length - waves.shape[1])))
        frames = np.lib.stride_tricks.sliding_window_view(waves, length, axis=1)[:, :: length // 2]
        frames = (frames - frames.mean(axis=2, keepdims=True)) * np.hanning(length).astype(np.float32)
        spectrum = np.fft.rfft(frames, axis=2)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).mean(axis=1, dtype=np.float64)
        frequencies = np.fft.rfftfreq(length, 1 / self.sample_rate)
        half = max(1, int(round(NEIGHBOURHOOD_HZ * length / self.sample_rate)))
        low, high = self.band
        band = np.flatnonzero((frequencies >= low) & (frequencies <= high))
        around = np.arange(band[0] - half, band[-1] + half + 1).clip(0, power.shape[1] - 1)
        floor = np.median(np.lib.stride_tricks.sliding_window_view(power[:, around], 2 * half + 1, axis=1), axis=2)
        peak = power[:, band].max(axis=1)
        ratio = (power[:, band] / np.maximum(floor, np.finfo(np.float64).tiny)).max(axis=1)
        return np.where(peak > 0, 10 * np.log10(np.maximum(ratio, 1.0)), 0.0)

    def present(self, scores: np.ndarray) -> np.ndarray:
        """Windows with a flight tone; the threshold 0 passes every window, silence too."""
        return np.asarray(scores) >= self.threshold_db
