"""MRI acquisition artefacts for the embedded cohort: bias field, limited resolution, motion,
ghosting, Rician or Gaussian noise, and display brightness.

Own numpy versions rather than torchio's transforms: these draw from the subject's
``numpy.random.Generator`` (torchio draws from torch's global RNG), act on the whole stack of a
subject's slices in one vectorised FFT, and apply the same draw to every slice of a subject, as
one acquisition would. Resolution, motion and ghosting are all k-space effects, so they are done
in k-space (which also gives the Gibbs ringing of a truncated acquisition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Acquisition:
    """One subject's artefact draw; every field is independent of the subject's label."""

    bias_coeffs: np.ndarray  # (10,) cubic polynomial in normalised x, y, z (log domain)
    kspace_fraction: float  # fraction of k-space acquired per axis (1: full resolution)
    motion: tuple[float, float, float] | None  # (fraction of lines before the move, dy px, dx px)
    ghosting: tuple[int, float] | None  # (period in lines, attenuation of those lines)
    noise_sigma: float
    rician: bool  # magnitude of complex noise (Rician) or additive Gaussian on the magnitude
    brightness: float  # display scale of the stored image
    gamma: float


def random_acquisition(rng: np.random.Generator, brightness_quantile: float) -> Acquisition:
    """Draw the artefacts; display brightness (0.65-1.0) sits at ``brightness_quantile``, given by
    the caller so that both label groups cover the same brightness range."""
    strength = rng.uniform(0.05, 0.35)
    bias = rng.uniform(-1.0, 1.0, size=10) * strength
    bias[0] = 0.0  # the constant term is the brightness, drawn separately
    motion = None
    if rng.random() < 0.3:
        motion = (float(rng.uniform(0.6, 0.95)), float(rng.uniform(-3, 3)), float(rng.uniform(-3, 3)))
    ghosting = None
    if rng.random() < 0.25:
        ghosting = (int(rng.integers(2, 5)), float(rng.uniform(0.15, 0.5)))
    return Acquisition(
        bias_coeffs=bias.astype(np.float32),
        kspace_fraction=float(rng.uniform(0.45, 1.0)),
        motion=motion,
        ghosting=ghosting,
        noise_sigma=float(rng.uniform(0.01, 0.05)),
        rician=bool(rng.random() < 0.5),
        brightness=0.65 + 0.35 * float(brightness_quantile),
        gamma=float(rng.uniform(0.85, 1.15)),
    )


def bias_field(points_unit: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """exp(cubic polynomial) of points scaled to about [-1, 1]: a smooth 3D coil-sensitivity map."""
    x, y, z = points_unit[..., 0], points_unit[..., 1], points_unit[..., 2]
    terms = (1, x, y, z, x * y, x * z, y * z, x * x, y * y, z * z)
    log_field = sum(c * t for c, t in zip(coeffs, terms))
    return np.exp(log_field).astype(np.float32)


def acquire(stack: np.ndarray, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """k-space effects and noise on a stack (S, H, W) of slices; returns the magnitude image.

    Rows are the phase-encode direction, acquired from the most negative to the most positive
    frequency; a move part-way through shifts the later lines (motion), and attenuating every
    n-th line (but the centre) makes n-fold ghosts.
    """
    s, h, w = stack.shape
    kspace = np.fft.fft2(stack)
    ky = np.fft.fftfreq(h).astype(np.float32)
    kx = np.fft.fftfreq(w).astype(np.float32)
    kspace *= (_taper(ky, acq.kspace_fraction)[:, None] * _taper(kx, acq.kspace_fraction)[None, :])
    order = np.argsort(np.argsort(ky))  # acquisition rank of each row
    if acq.motion is not None:
        start, dy, dx = acq.motion
        late = order >= int(start * h)
        ramp = np.exp(-2j * np.pi * (ky[late, None] * dy + kx[None, :] * dx))
        kspace[:, late, :] *= ramp
    if acq.ghosting is not None:
        period, attenuation = acq.ghosting
        lines = (order % period == 0) & (ky != 0)
        kspace[:, lines, :] *= 1.0 - attenuation
    image = np.fft.ifft2(kspace)
    sigma = acq.noise_sigma
    if acq.rician:
        noisy = np.abs(image + sigma * (rng.standard_normal(image.shape) + 1j * rng.standard_normal(image.shape)))
    else:
        noisy = np.abs(image) + sigma * rng.standard_normal(image.shape)
    return noisy.astype(np.float32)


def _taper(freq: np.ndarray, fraction: float) -> np.ndarray:
    """Keep |k| <= fraction * Nyquist, with a short cosine roll-off so ringing stays mild."""
    cutoff = 0.5 * fraction
    inner = 0.85 * cutoff
    k = np.abs(freq)
    roll = np.clip((k - inner) / max(cutoff - inner, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * roll))).astype(np.float32)


def display(image: np.ndarray, acq: Acquisition) -> np.ndarray:
    """Brightness and gamma of the stored picture, quantised to 8 bits like a PNG export."""
    scaled = np.clip(image * acq.brightness, 0.0, 1.0) ** acq.gamma
    return np.round(scaled * 255.0).astype(np.uint8)
