"""The Kaldi-style log-mel fbank in plain numpy (no torch, no transformers): the one fbank of the runtime and
the tool (`mosquito_ast.features.fbank` is this), equal to transformers' `ASTFeatureExtractor` at 16 kHz and
to its audio utilities at every setting to 1e-5 (`tests/test_fbank.py`).

Steps: frames of `window_ms` every `hop_ms` without centering, per frame DC-offset removal, pre-emphasis
0.97, a symmetric Hann window, an FFT of the next power of two, the power spectrum, Kaldi mel filters
triangular in mel space from 20 Hz to `max_frequency` (0 = Nyquist), a floor of 2**-23 and the natural
log; padded with zeros or cut to `max_length` frames. A batch of windows is computed a few windows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KALDI_MEL_FLOOR = 1.192092955078125e-07
LOWEST_MEL_HZ = 20.0
PREEMPHASIS = 0.97


@dataclass(frozen=True)
class FbankSettings:
    """The feature settings of model.json's "features" (normalization stays inside the ONNX graph)."""

    sample_rate: int
    clip_seconds: float
    num_mel_bins: int
    max_length: int
    window_ms: float = 25.0
    hop_ms: float = 10.0
    max_frequency: float = 0.0  # 0 = Nyquist

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.clip_seconds <= 0 or self.num_mel_bins <= 0 or self.max_length <= 0:
            raise ValueError("sample_rate, clip_seconds, num_mel_bins and max_length must be positive")
        if self.hop_ms <= 0 or self.window_ms < self.hop_ms:
            raise ValueError(f"need 0 < hop_ms <= window_ms, got hop {self.hop_ms} ms, window {self.window_ms} ms")
        if not 0 <= self.max_frequency <= self.sample_rate / 2 or 0 < self.max_frequency <= LOWEST_MEL_HZ:
            raise ValueError(f"max_frequency must be 0 (Nyquist) or between {LOWEST_MEL_HZ:g} Hz and "
                             f"{self.sample_rate / 2:g} Hz, got {self.max_frequency}")

    @classmethod
    def from_dict(cls, values: dict) -> "FbankSettings":
        known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
        return cls(**known)

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def top_frequency(self) -> float:
        return self.max_frequency or self.sample_rate / 2


def kaldi_mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filters(num_bins: int, fft_length: int, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """(fft_length // 2 + 1, num_bins) triangles with edges equally spaced on the Kaldi mel scale, evaluated
    at each FFT bin's mel value (Kaldi's and torchaudio's construction); no area normalization."""
    edges = np.linspace(kaldi_mel(low_hz), kaldi_mel(high_hz), num_bins + 2)
    bin_mels = kaldi_mel(sample_rate / fft_length * np.arange(fft_length // 2 + 1))[:, None]
    left, center, right = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bin_mels - left) / (center - left)
    falling = (right - bin_mels) / (right - center)
    return np.maximum(0.0, np.minimum(rising, falling))


class Fbank:
    """Callable: waves (samples,) or (windows, samples) -> float32 fbank (frames, mel) or (windows, frames, mel)."""

    CHUNK = 4  # windows per pass: larger passes fall out of the CPU cache and run slower per window

    def __init__(self, settings: FbankSettings) -> None:
        self.settings = settings
        self.frame_length = int(round(settings.sample_rate * settings.window_ms / 1000))
        self.hop_length = max(1, int(round(settings.sample_rate * settings.hop_ms / 1000)))
        self.fft_length = 1 << (self.frame_length - 1).bit_length()
        self.window = np.hanning(self.frame_length)  # symmetric (periodic=False), float64
        self.filters = mel_filters(settings.num_mel_bins, self.fft_length, settings.sample_rate, LOWEST_MEL_HZ,
                                   settings.top_frequency)
        self.filters32 = self.filters.astype(np.float32)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        waves = np.asarray(waves)
        single = waves.ndim == 1
        if single:
            waves = waves[None]
        if waves.ndim != 2:
            raise ValueError(f"expected (samples,) or (windows, samples), got shape {waves.shape}")
        if waves.shape[1] < self.frame_length:
            waves = np.pad(waves, ((0, 0), (0, self.frame_length - waves.shape[1])))
        out = np.zeros((len(waves), self.settings.max_length, self.settings.num_mel_bins), np.float32)
        for start in range(0, len(waves), self.CHUNK):
            self._log_mel(waves[start:start + self.CHUNK], out[start:start + self.CHUNK])
        return out[0] if single else out

    def _log_mel(self, waves: np.ndarray, out: np.ndarray) -> None:
        length, hop = self.frame_length, self.hop_length
        waves = waves.astype(np.float64)
        kept = min(1 + (waves.shape[1] - length) // hop, self.settings.max_length)
        frames = np.lib.stride_tricks.sliding_window_view(waves, length, axis=1)[:, : kept * hop : hop]
        mean = frames.mean(axis=2, keepdims=True)
        # into a zero-padded FFT buffer: (frame - mean), pre-emphasized, times the window
        buffer = np.zeros((len(waves), kept, self.fft_length))
        body = buffer[..., :length]
        np.multiply(frames[..., :-1], -PREEMPHASIS, out=body[..., 1:])
        body[..., 1:] += frames[..., 1:]
        body[..., 1:] -= (1.0 - PREEMPHASIS) * mean
        body[..., 0] = (1.0 - PREEMPHASIS) * (frames[..., 0] - mean[..., 0])
        body *= self.window
        spectrum = np.fft.rfft(buffer, axis=2)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        # a sum of positive terms: float32 keeps its relative precision (the log differs by ~1e-7)
        mel = power @ self.filters32
        out[:, :kept] = np.log(np.maximum(np.float32(KALDI_MEL_FLOOR), mel))
