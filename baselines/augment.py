"""Batched, seeded augmentations for axial brain MRI slices, and the classifier's normalisation.

Why these and not others: an axial slice is close to left-right symmetric, so a horizontal flip
is a plausible new image while a vertical flip (face at the back of the head) never occurs.
Head position varies by a few degrees and millimetres and head size by ~10 %, hence a small
rotation / translation / scale. MRI has no absolute intensity scale: every image is z-scored
(:func:`baselines.resnet18_net.standardize`), which makes the classifier exactly invariant to global brightness and
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
    # acquisition artefacts (what differs between scanners and sessions, not between tissues);
    # 0 turns each off
    max_bias_field: float = 0.4  # largest |coefficient| of the quadratic log bias field
    max_blur_sigma: float = 1.0  # pixels; Gaussian k-space taper (lower resolution)
    ghosting_p: float = 0.2  # probability of N/2-style ghosts along the phase-encode axis


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def augment_batch(x: torch.Tensor, g: torch.Generator,
                  settings: AugmentSettings = AugmentSettings()) -> torch.Tensor:
    """Randomly flip (left-right), rotate, scale and shift ``x`` (N, 1, H, W) in [0, 1], add an
    acquisition (bias field, resolution, ghosting) and jitter gamma and noise.

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
    bias_coeffs = _uniform(5 * n, -1.0, 1.0, g).view(n, 5) * _uniform(n, 0.0, settings.max_bias_field, g).view(n, 1)
    blur_sigma = _uniform(n, 0.0, settings.max_blur_sigma, g)
    ghosted = torch.rand(n, generator=g) < settings.ghosting_p
    ghost_period = torch.randint(2, 5, (n,), generator=g)
    ghost_attenuation = _uniform(n, 0.15, 0.5, g)

    # affine_grid maps output to input coordinates: a flip is a sign on the x column.
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([
        torch.stack([cos * sign, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * sign, cos, shift[:, 1]], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    out = out.clamp(0.0, 1.0) * _bias_field(bias_coeffs, x.shape[-2], x.shape[-1]).to(x.device, x.dtype)
    out = _acquire(out, blur_sigma, _ghost_rows(x.shape[-2], ghosted, ghost_period, ghost_attenuation))

    gamma = torch.exp(log_gamma).to(x.device, x.dtype).view(n, 1, 1, 1)
    out = out.clamp(0.0, 1.0).pow(gamma)
    out = out + noise.to(x.device, x.dtype) * noise_std.to(x.device, x.dtype).view(n, 1, 1, 1)
    return out.clamp(0.0, 1.0)


def _bias_field(coeffs: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """exp(quadratic in x, y) per image, scaled so its maximum is 1: (N, 1, H, W).

    A smooth multiplicative field is what receive-coil sensitivity does to an MRI; z-scoring
    removes its mean but not its shape, so without this the classifier can tell scanners apart.
    """
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    terms = torch.stack([xx, yy, xx * yy, xx * xx, yy * yy])
    log_field = torch.einsum("nk,khw->nhw", coeffs, terms)
    return torch.exp(log_field - log_field.amax(dim=(1, 2), keepdim=True)).unsqueeze(1)


def _ghost_rows(h: int, ghosted: torch.Tensor, period: torch.Tensor, attenuation: torch.Tensor) -> torch.Tensor:
    """(N, H) k-space row weights: every ``period``-th phase-encode line (the centre line kept)
    scaled by ``attenuation`` where ``ghosted``, 1 elsewhere. Uneven lines give ghosts at H/period."""
    ky = torch.fft.fftfreq(h)
    rank = torch.argsort(torch.argsort(ky))
    hit = (rank.view(1, h) % period.view(-1, 1) == 0) & (ky != 0).view(1, h) & ghosted.view(-1, 1)
    return torch.where(hit, attenuation.view(-1, 1), torch.ones(()))


def _acquire(x: torch.Tensor, blur_sigma: torch.Tensor, row_factor: torch.Tensor) -> torch.Tensor:
    """Lower the resolution (Gaussian k-space taper of ``blur_sigma`` pixels) and apply the row
    weights, then take the magnitude image, as a scanner reconstructs it."""
    h, w = x.shape[-2:]
    ky, kx = torch.fft.fftfreq(h), torch.fft.fftfreq(w)
    k2 = ky.view(h, 1) ** 2 + kx.view(1, w) ** 2
    weight = torch.exp(-2.0 * math.pi ** 2 * blur_sigma.view(-1, 1, 1) ** 2 * k2) * row_factor.view(-1, h, 1)
    if bool((weight == 1).all()):
        return x
    spectrum = torch.fft.fft2(x.float()) * weight.unsqueeze(1).to(x.device)
    return torch.fft.ifft2(spectrum).abs().to(x.dtype)
