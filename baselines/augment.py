"""Batched, seeded augmentations for axial brain MRI slices, and the classifier's normalisation.

Why these and not others: an axial slice is close to left-right symmetric, so a horizontal flip
is a plausible new image while a vertical flip (face at the back of the head) never occurs.
Head position varies by a few degrees and millimetres and head size by ~10 %, hence a small
rotation / translation / scale. MRI has no absolute intensity scale: every image is z-scored
(:func:`harness.models.standardize`), which makes the classifier exactly invariant to global brightness and
contrast; the jitter therefore targets what z-scoring cannot undo, a non-linear tissue-contrast
change (gamma) and noise.

Every random draw comes from an explicit ``torch.Generator`` (on the CPU, so the same seed gives
the same augmentation on any device); no global RNG state is touched, which is what makes a
resumed training run identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random transforms (uniform draws unless stated)."""

    flip_p: float = 0.5
    max_rotation_deg: float = 10.0
    max_translate: float = 0.05  # fraction of the image side
    scale: tuple[float, float] = (0.9, 1.1)
    max_log_gamma: float = 0.3  # gamma = exp(U(-a, a))
    noise_std: float = 0.02  # Gaussian noise in [0, 1] intensity units, std drawn from U(0, noise_std)


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def augment_batch(x: torch.Tensor, g: torch.Generator,
                  settings: AugmentSettings = AugmentSettings()) -> torch.Tensor:
    """Randomly flip (left-right), rotate, scale, shift and gamma/noise-jitter ``x`` (N, 1, H, W) in [0, 1].

    Parameters are drawn on the CPU from ``g``; the result stays on ``x``'s device and in [0, 1].
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < settings.flip_p
    angle = _uniform(n, -settings.max_rotation_deg, settings.max_rotation_deg, g) * (math.pi / 180.0)
    scale = _uniform(n, settings.scale[0], settings.scale[1], g)
    shift = _uniform(2 * n, -settings.max_translate, settings.max_translate, g).view(n, 2) * 2.0
    log_gamma = _uniform(n, -settings.max_log_gamma, settings.max_log_gamma, g)
    noise_std = _uniform(n, 0.0, settings.noise_std, g)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32)

    # affine_grid maps output to input coordinates: a flip is a sign on the x column.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * sign, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * sign, cos, shift[:, 1]], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = torch.exp(log_gamma).to(x.device, x.dtype).view(n, 1, 1, 1)
    out = out.clamp(0.0, 1.0).pow(gamma)
    out = out + noise.to(x.device, x.dtype) * noise_std.to(x.device, x.dtype).view(n, 1, 1, 1)
    return out.clamp(0.0, 1.0)
