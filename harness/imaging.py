"""Small image filters shared by methods (gaussian smoothing of maps and SSIM windows; the median
filter and brain-mask erosion of the reconstruction methods' post-processing)."""

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


def median_filter(x: torch.Tensor, size: int, chunk: int = 32) -> torch.Tensor:
    """Same-size ``size`` x ``size`` median filter of (N, 1, H, W) (odd ``size``; mirrored
    borders), in chunks of images so the unfolded windows stay small."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"median filter size must be odd and positive, got {size}")
    if size == 1 or x.shape[0] == 0:
        return x.clone()
    r = size // 2
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    h, w = x.shape[-2:]
    out = []
    for part in x.split(chunk):
        windows = F.unfold(F.pad(part, (r, r, r, r), mode=mode), size)  # (n, size*size, h*w)
        out.append(windows.median(dim=1).values.view(part.shape[0], 1, h, w))
    return torch.cat(out)


def erode(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary erosion of (N, 1, H, W) masks by the 4-connected cross, ``iterations`` times;
    pixels beyond the image border count as outside (scipy's binary_erosion defaults)."""
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    out = mask.bool()
    for _ in range(max(0, iterations)):
        out = F.conv2d(out.float(), cross, padding=1) > 4.5
    return out
