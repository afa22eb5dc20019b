"""SpecAugment-style time and frequency masks on batches of features (batch, T, mel).

Mask widths are fractions of the axis they cover, so one setting means the same for a 1 s clip
(100 frames) and a 10 s clip (1000 frames). Each clip draws its own masks. Random draws come from
the given `torch.Generator`, or the global RNG when none is given (seeded per epoch by the training
loops, so a resumed run draws the same masks).
"""

from __future__ import annotations

import torch


def axis_masks(batch: int, size: int, max_fraction: float, count: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, size) booleans: `count` spans per row, each of a width drawn from 0..max_fraction*size."""
    if not 0 <= max_fraction <= 1:
        raise ValueError(f"mask fraction must be between 0 and 1, got {max_fraction}")
    hidden = torch.zeros(batch, size, dtype=torch.bool)
    max_width = int(round(max_fraction * size))
    if count < 1 or max_width == 0:
        return hidden
    widths = torch.randint(0, max_width + 1, (batch, count), generator=generator)
    starts = (torch.rand(batch, count, generator=generator) * (size - widths + 1)).long()
    positions = torch.arange(size).view(1, 1, size)
    spans = (positions >= starts.unsqueeze(-1)) & (positions < (starts + widths).unsqueeze(-1))
    return hidden | spans.any(dim=1)


def time_mask(features: torch.Tensor, max_fraction: float, count: int = 1,
              generator: torch.Generator | None = None, value: float = 0.0) -> torch.Tensor:
    """A copy of `features` with `count` random spans of frames per clip set to `value`."""
    batch, frames, _ = features.shape
    hidden = axis_masks(batch, frames, max_fraction, count, generator).to(features.device)
    return features.masked_fill(hidden.unsqueeze(-1), value)


def frequency_mask(features: torch.Tensor, max_fraction: float, count: int = 1,
                   generator: torch.Generator | None = None, value: float = 0.0) -> torch.Tensor:
    """A copy of `features` with `count` random bands of mel bins per clip set to `value`."""
    batch, _, bins = features.shape
    hidden = axis_masks(batch, bins, max_fraction, count, generator).to(features.device)
    return features.masked_fill(hidden.unsqueeze(1), value)


def spec_augment(features: torch.Tensor, time_fraction: float, frequency_fraction: float, time_masks: int = 1,
                 frequency_masks: int = 1, generator: torch.Generator | None = None,
                 value: float = 0.0) -> torch.Tensor:
    """Time masks, then frequency masks. `value` 0 is the data mean for normalized features."""
    masked = time_mask(features, time_fraction, time_masks, generator, value)
    return frequency_mask(masked, frequency_fraction, frequency_masks, generator, value)


def roll_time(features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Circularly shift each clip in time: a flight tone means the same wherever it starts."""
    batch, frames, _ = features.shape
    shifts = torch.randint(0, frames, (batch,), generator=generator)
    index = (torch.arange(frames).view(1, frames) - shifts.view(batch, 1)) % frames
    return torch.gather(features, 1, index.unsqueeze(-1).expand_as(features).to(features.device))


def random_gain(features: torch.Tensor, max_shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add one offset per clip: a gain change in log-mel space, as between sensors and sessions."""
    offsets = (torch.rand(features.shape[0], 1, 1, generator=generator) * 2 - 1) * max_shift
    return features + offsets.to(features.device, features.dtype)


def kaldi_mel_centres(num_bins: int, high_hz: float, low_hz: float = 20.0) -> torch.Tensor:
    """Centre frequencies (Hz) of Kaldi's mel filters between `low_hz` and `high_hz` (the features' band)."""
    low, high = (1127.0 * torch.log1p(torch.tensor(f) / 700.0) for f in (low_hz, high_hz))
    mels = low + (high - low) * torch.arange(1, num_bins + 1, dtype=torch.float64) / (num_bins + 1)
    return 700.0 * torch.expm1(mels / 1127.0)


def frequency_scale(features: torch.Tensor, max_scale: float, high_hz: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale every frequency of a clip by one factor in [1-max_scale, 1+max_scale] by resampling the
    mel axis: wingbeat frequency shifts with temperature and individual, so sessions differ by it."""
    batch, _, bins = features.shape
    centres = kaldi_mel_centres(bins, high_hz)
    scales = 1 + (torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1) * max_scale
    source_mel = 1127.0 * torch.log1p(centres.view(1, bins) / scales.view(batch, 1) / 700.0)
    centre_mel = 1127.0 * torch.log1p(centres / 700.0)
    position = torch.clamp((source_mel - centre_mel[0]) / (centre_mel[1] - centre_mel[0]), 0, bins - 1)
    below = position.floor().long().clamp(max=bins - 2)
    weight = (position - below).to(features.dtype).to(features.device).unsqueeze(1)

    def take(index: torch.Tensor) -> torch.Tensor:
        return torch.gather(features, 2, index.to(features.device).unsqueeze(1).expand(-1, features.shape[1], -1))

    return take(below) * (1 - weight) + take(below + 1) * weight


def mixup(features: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend clip pairs and their one-hot targets with one Beta(alpha, alpha) weight per batch
    (global RNG, which the training loop seeds per epoch)."""
    weight = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(features.shape[0]).to(features.device)
    return weight * features + (1 - weight) * features[order], weight * targets + (1 - weight) * targets[order]


def session_partners(classes: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """For each clip, the index of a random clip of the same class from another group (recording session)
    in the batch; its own index when the batch holds none (global RNG)."""
    allowed = (classes.view(-1, 1) == classes.view(1, -1)) & (groups.view(-1, 1) != groups.view(1, -1))
    scores = torch.rand(allowed.shape).to(classes.device).masked_fill(~allowed, -1.0)
    best, partner = scores.max(dim=1)
    return torch.where(best >= 0, partner, torch.arange(len(classes), device=classes.device))


def session_mixup(features: torch.Tensor, classes: torch.Tensor, groups: torch.Tensor, alpha: float) -> torch.Tensor:
    """Blend each clip with a clip of its own class from another recording session, one Beta(alpha, alpha)
    weight per clip: a wider picture of each species, not more clips to memorise. The targets stay as they
    are (both clips are of the class); a clip whose class the batch holds in one session only is left as it is."""
    weight = torch.distributions.Beta(alpha, alpha).sample((len(features), 1, 1)).to(features.device, features.dtype)
    return weight * features + (1 - weight) * features[session_partners(classes, groups)]
