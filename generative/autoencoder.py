"""The registered method ``autoencoder``: a convolutional autoencoder with a dense bottleneck.

After Baur et al. (Medical Image Analysis 2021), the comparative study's dense autoencoder: a
stack of stride-2 convolutions down to a small grid, a fully connected bottleneck (``latent``
numbers for the whole slice), and a mirrored decoder. Trained on healthy slices to reconstruct
them (L1 loss, optionally plus 1 - SSIM); the bottleneck is too narrow to copy a slice, so it
learns healthy anatomy, and a lesion, which it never saw, comes back as healthy tissue. The
residual between a slice and its reconstruction is the anomaly map (:mod:`harness.scoring`).

Decoder upsampling is nearest-neighbour resize then convolution (no checkerboard artifacts,
which would otherwise show up in every residual map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from harness.api import register_method
from harness.scoring import local_ssim
from generative.reconstruction import ReconstructionMethod, ReconstructionSettings


class AutoencoderSettings(ReconstructionSettings):
    """Defaults are the quick profile; ``paper`` follows Baur et al.'s dense AE at 128 px."""

    base_channels: int = Field(16, ge=4, description="channels of the first encoder level (x2 per level, max x8)")
    levels: int = Field(4, ge=2, le=6, description="stride-2 encoder levels (image_size / 2**levels = bottleneck grid)")
    latent: int = Field(128, ge=2, description="size of the dense bottleneck")
    ssim_weight: float = Field(0.0, ge=0, le=1, description="loss = L1 + ssim_weight * (1 - SSIM)")
    epochs: int = Field(30, ge=1, description="passes over the healthy train images")

    @model_validator(mode="after")
    def _grid_fits(self) -> AutoencoderSettings:
        if self.image_size % 2**self.levels:
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**levels = {2**self.levels}")
        return self


PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "base_channels": 4, "levels": 3, "latent": 16, "epochs": 2, "batch_size": 8},
    "paper": {"image_size": 128, "base_channels": 32, "levels": 4, "latent": 128, "epochs": 200,
              "batch_size": 8, "lr": 1e-4, "cpu_bf16": False},
}


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, stride=stride, padding=2),
                         nn.GroupNorm(min(8, c_out), c_out), nn.LeakyReLU(0.2))


class DenseAutoencoder(nn.Module):
    """(N, 1, S, S) -> (N, 1, S, S) through a ``latent``-dimensional dense bottleneck."""

    def __init__(self, image_size: int, base_channels: int, levels: int, latent: int) -> None:
        super().__init__()
        widths = [base_channels * min(2**i, 8) for i in range(levels)]
        self.grid = image_size // 2**levels
        self.top = widths[-1]
        self.encoder = nn.Sequential(*[_block(c_in, c_out, stride=2)
                                       for c_in, c_out in zip([1, *widths[:-1]], widths)])
        flat = self.top * self.grid**2
        self.to_latent = nn.Linear(flat, latent)
        self.from_latent = nn.Linear(latent, flat)
        ups = []
        for c_in, c_out in zip(widths[::-1], [*widths[::-1][1:], base_channels]):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), _block(c_in, c_out)]
        self.decoder = nn.Sequential(*ups, nn.Conv2d(base_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.to_latent(self.encoder(x).flatten(1))
        h = F.leaky_relu(self.from_latent(z), 0.2).view(len(x), self.top, self.grid, self.grid)
        return self.decoder(h)


@register_method("autoencoder")
class AutoencoderMethod(ReconstructionMethod):
    description = ("Convolutional autoencoder with a dense bottleneck (Baur et al. 2021), trained on healthy "
                   "slices (L1); anomaly map = residual to its reconstruction with the paper's post-processing, "
                   "image score = its mean (autoencoder+tuned: map and aggregate chosen on val lesion masks)")
    Settings = AutoencoderSettings
    profile_defaults = PROFILE_DEFAULTS

    def build(self) -> nn.Module:
        s = self.settings
        return DenseAutoencoder(s.image_size, s.base_channels, s.levels, s.latent)

    def loss(self, model: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        y = model(x).float()
        loss = (y - x).abs().mean()
        if self.settings.ssim_weight > 0:
            loss = loss + self.settings.ssim_weight * (1 - local_ssim(y, x)).mean()
        return loss

    def reconstruct_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)
