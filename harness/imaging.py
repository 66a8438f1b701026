"""Small image filters shared by methods (gaussian smoothing of maps and SSIM windows)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 2-D gaussian (1, 1, k, k); radius defaults to 3 sigma."""
    radius = max(1, int(math.ceil(3 * sigma))) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def blur(x: torch.Tensor, kernel: torch.Tensor, border: str = "reflect") -> torch.Tensor:
    """Same-size filtering of (N, 1, H, W) by ``kernel``. ``border`` is ``reflect`` (replicate
    when the image is smaller than the kernel) or ``zeros``, for normalised convolution."""
    r = kernel.shape[-1] // 2
    if border == "zeros":
        return F.conv2d(x, kernel.to(x), padding=r)
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    return F.conv2d(F.pad(x, (r, r, r, r), mode=mode), kernel.to(x))
