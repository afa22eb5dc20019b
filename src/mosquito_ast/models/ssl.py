"""Self-supervised pretraining models: an AST encoder plus the head of one pretext objective.

- `denoise` (the old SSL notebook's): SpecAugment-masked fbank in, clean fbank out. Patch tokens
  are averaged over frequency into one token per time step, a linear `projector` maps them to mel
  bins, a 2-layer Conv1d `decoder` smooths over time, and the result is interpolated to the clip's
  frames. Loss: MSE over the whole clip.
- `masked-patch` (SSAST/AudioMAE style): a share of patch embeddings is replaced by a learned
  `mask_token` before the position embeddings are added; a linear `patch_head` predicts each
  hidden patch's fbank values. Patches overlap (kernel 16, stride 10), so targets are the input
  unfolded with the encoder's own kernel and strides. Loss: MSE over the hidden patches only.

Their files (`pretrain` outputs) are written and read by `mosquito_ast.checkpoints`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import ASTModel

from ..augment import spec_augment
from .encoder import patch_grid

OBJECTIVES = ("denoise", "masked-patch")


class DenoisingAST(nn.Module):
    """Reconstruct the clean fbank from a SpecAugment-masked one (the old notebook's objective)."""

    objective = "denoise"

    def __init__(self, encoder: ASTModel, time_fraction: float = 0.2, frequency_fraction: float = 0.2,
                 time_masks: int = 2, frequency_masks: int = 2) -> None:
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.projector = nn.Linear(config.hidden_size, config.num_mel_bins)
        self.decoder = nn.Sequential(
            nn.Conv1d(config.num_mel_bins, config.num_mel_bins, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(config.num_mel_bins, config.num_mel_bins, kernel_size=3, padding=1),
        )
        self.options = dict(time_fraction=time_fraction, frequency_fraction=frequency_fraction,
                            time_masks=time_masks, frequency_masks=frequency_masks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Reconstruction (batch, T, mel) of (masked) features (batch, T, mel)."""
        frequency, time = patch_grid(self.encoder.config)
        tokens = self.encoder(input_values=features).last_hidden_state[:, 2:]
        per_step = tokens.reshape(len(tokens), frequency, time, -1).mean(dim=1)  # (batch, time patches, hidden)
        decoded = self.decoder(self.projector(per_step).transpose(1, 2))  # (batch, mel, time patches)
        frames = nn.functional.interpolate(decoded, size=features.shape[1], mode="linear", align_corners=False)
        return frames.transpose(1, 2)

    def corrupt(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        o = self.options
        return spec_augment(features, o["time_fraction"], o["frequency_fraction"], o["time_masks"],
                            o["frequency_masks"], generator)

    def loss(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        reconstruction = self(self.corrupt(features, generator))
        return nn.functional.mse_loss(reconstruction.float(), features.float())


class MaskedPatchAST(nn.Module):
    """Predict the fbank values of hidden patches from the visible ones (SSAST/AudioMAE style)."""

    objective = "masked-patch"

    def __init__(self, encoder: ASTModel, mask_ratio: float = 0.5) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be between 0 and 1 (exclusive), got {mask_ratio}")
        config = encoder.config
        self.encoder = encoder
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.patch_head = nn.Linear(config.hidden_size, config.patch_size ** 2)
        self.options = dict(mask_ratio=mask_ratio)

    @property
    def num_patches(self) -> int:
        frequency, time = patch_grid(self.encoder.config)
        return frequency * time

    def patch_targets(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, patches, patch_size**2) fbank values under each patch, in the encoder's patch order."""
        config = self.encoder.config
        image = features.unsqueeze(1).transpose(2, 3)  # (batch, 1, mel, T), as ASTPatchEmbeddings sees it
        patches = nn.functional.unfold(image, kernel_size=config.patch_size,
                                       stride=(config.frequency_stride, config.time_stride))
        return patches.transpose(1, 2)

    def random_mask(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, patches) booleans, True for hidden patches; the same count per clip."""
        hidden = max(1, int(round(self.options["mask_ratio"] * self.num_patches)))
        order = torch.rand(batch, self.num_patches, generator=generator).argsort(dim=1)
        return order < hidden

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted patch values (batch, patches, patch_size**2) with `mask`ed patches hidden."""
        embeddings = self.encoder.embeddings
        patches = embeddings.patch_embeddings(features)
        patches = torch.where(mask.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
        tokens = torch.cat([embeddings.cls_token.expand(len(patches), -1, -1),
                            embeddings.distillation_token.expand(len(patches), -1, -1), patches], dim=1)
        hidden = embeddings.dropout(tokens + embeddings.position_embeddings)
        for layer in self.encoder.layers:
            hidden = layer(hidden)
        return self.patch_head(self.encoder.layernorm(hidden)[:, 2:])

    def loss(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mask = self.random_mask(len(features), generator).to(features.device)
        return masked_patch_loss(self(features, mask), self.patch_targets(features), mask)


def masked_patch_loss(predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the hidden patches only; visible patches do not count."""
    return nn.functional.mse_loss(predictions[mask].float(), targets[mask].float())


SSLModel = DenoisingAST | MaskedPatchAST


def build_ssl_model(objective: str, encoder: ASTModel, **options: Any) -> SSLModel:
    if objective == "denoise":
        return DenoisingAST(encoder, **options)
    if objective == "masked-patch":
        return MaskedPatchAST(encoder, **options)
    raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
