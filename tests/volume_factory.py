"""Tiny synthetic NIfTI volumes for the volume tests: a skull-stripped ellipsoid brain on a zero
background, with an optional spherical lesion."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (32, 36, 20)  # (x, y, z) in RAS


def brain(seed: int, shape: tuple[int, int, int] = SHAPE, lesion: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, lesion mask uint8): a textured ellipsoid and, with ``lesion``, a bright ball."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid ** 2 / np.array([0.8, 0.85, 0.9])[:, None, None, None] ** 2).sum(axis=0) < 1
    image = (300 + 80 * rng.standard_normal(shape)) * inside
    seg = np.zeros(shape, dtype=np.uint8)
    if lesion:
        centre = np.array([0.2, -0.1, 0.0])[:, None, None, None]
        seg[((grid - centre) ** 2).sum(axis=0) < 0.3 ** 2] = 2
        image[seg > 0] += 400
    return np.clip(image, 0, None).astype(np.float32), seg


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def brats_subject(root: Path, number: int, lesion: bool = True, sequences: tuple[str, ...] = ("t2", "flair"),
                  seed: int | None = None) -> Path:
    """``BraTS2021_<n>/BraTS2021_<n>_{sequences,seg}.nii.gz``."""
    name = f"BraTS2021_{number:05d}"
    image, seg = brain(number if seed is None else seed, lesion=lesion)
    for sequence in sequences:
        save(root / name / f"{name}_{sequence}.nii.gz", image)
    save(root / name / f"{name}_seg.nii.gz", seg)
    return root / name
