"""The registered method ``dae``: a denoising UNet that removes coarse noise (Kascenas et al. 2022).

Training corrupts a healthy slice with *coarse* Gaussian noise: drawn on a ``noise_res`` x
``noise_res`` grid, upsampled bilinearly to the image size, shifted by a random roll (so the
grid has no fixed phase) and added inside the foreground only; the UNet learns to return the
clean slice (squared error over the foreground). Noise at that scale looks like blob-sized
intensity changes, so the network learns to replace blob-sized departures from healthy
anatomy with healthy tissue. At test time the *clean* slice goes in; a lesion is such a
departure and is "denoised" away, and the residual marks it (:mod:`harness.scoring`).

Kascenas et al.: 128 px slices, noise on a 16 x 16 grid with std 0.2, a 4-level UNet with 64
base channels and group norm, Adam (1e-4, AMSGrad, weight decay 1e-5) with cosine decay.
``noise_res`` is given at the working size, so at 64 px the quick profile's 8 keeps the
published noise blob size (8 px at 128 px) relative to the anatomy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from harness.api import register_method
from generative.reconstruction import ReconstructionMethod, ReconstructionSettings

FOREGROUND = 0.01  # a pixel above this intensity is foreground (the background is exactly 0)


class DAESettings(ReconstructionSettings):
    """Defaults are the quick profile; ``paper`` is Kascenas et al.'s setting."""

    base_channels: int = Field(16, ge=4, description="channels of the first UNet level (x2 per level)")
    depth: int = Field(4, ge=2, le=6, description="UNet levels (depth - 1 poolings)")
    noise_res: int = Field(8, ge=2, description="side of the coarse noise grid, at image_size")
    noise_std: float = Field(0.2, gt=0, le=1, description="std of the coarse noise")
    lr: float = Field(1e-3, gt=0, description="Adam (AMSGrad) learning rate, cosine decay to zero")
    weight_decay: float = Field(1e-5, ge=0)

    @model_validator(mode="after")
    def _pools_fit(self) -> DAESettings:
        if self.image_size % 2 ** (self.depth - 1):
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**(depth-1) = "
                             f"{2 ** (self.depth - 1)}")
        return self


PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "base_channels": 4, "depth": 3, "noise_res": 4, "epochs": 2, "batch_size": 8},
    "paper": {"image_size": 128, "base_channels": 64, "depth": 4, "noise_res": 16, "epochs": 2800,
              "batch_size": 16, "lr": 1e-4, "cpu_bf16": False},
}


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


class UNet(nn.Module):
    """A plain UNet: double 3x3 convolutions, max-pool down, transposed-convolution up, skips."""

    def __init__(self, base_channels: int, depth: int) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList(_double_conv(c_in, c_out) for c_in, c_out in zip([1, *widths[:-1]], widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 2, stride=2) for c in widths[:0:-1])
        self.merge = nn.ModuleList(_double_conv(c, c // 2) for c in widths[:0:-1])
        self.out = nn.Conv2d(base_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.out(x)


def coarse_noise(x: torch.Tensor, res: int, std: float, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise drawn at ``res`` x ``res``, upsampled bilinearly to x's size, rolled by a
    random shift, and zero outside x's foreground."""
    n, _, h, w = x.shape
    grid = torch.randn((n, 1, res, res), generator=g) * std
    noise = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
    dy, dx = (int(v) for v in torch.randint(0, max(h, w), (2,), generator=g))
    noise = torch.roll(noise, shifts=(dy % h, dx % w), dims=(-2, -1)).to(x.device)
    return noise * (x > FOREGROUND)


@register_method("dae")
class DAEMethod(ReconstructionMethod):
    description = ("Denoising UNet trained on healthy slices to remove coarse noise (Kascenas et al. 2022); "
                   "anomaly map = residual to its output on the clean slice, Baur et al.'s post-processing, "
                   "image score = its mean (dae+tuned: map and aggregate chosen on val lesion masks)")
    Settings = DAESettings
    profile_defaults = PROFILE_DEFAULTS

    def build(self) -> nn.Module:
        return UNet(self.settings.base_channels, self.settings.depth)

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        s = self.settings
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, amsgrad=True)

    def loss(self, model: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = self.settings
        y = model(x + coarse_noise(x, s.noise_res, s.noise_std, g)).float()
        return ((y - x) ** 2 * (x > FOREGROUND)).mean()

    def reconstruct_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def extra_selection(self) -> dict[str, object]:
        return {"noise_res": self.settings.noise_res, "noise_std": self.settings.noise_std}
