"""Tissue contrast of the three sequences the embedded cohort imitates: T1 (post-contrast),
T2 and FLAIR.

Intensity is a partial-volume mix of CSF, GM and WM intensities, on a 0-1 scale where 1 is the
brightest thing a sequence shows. Lesion compartments get their own intensities per sequence,
following the usual radiological look of a high-grade glioma:

* T1 post-contrast: dark necrotic core, bright enhancing rim, oedema slightly dark.
* T2: bright (fluid) core, intermediate rim, bright oedema.
* FLAIR: CSF suppressed (dark), oedema the brightest thing in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SEQUENCES = ("T1", "T2", "FLAIR")

# (csf, gm, wm) and (core, rim, oedema), before the per-subject jitter.
TISSUE = {"T1": (0.18, 0.55, 0.80), "T2": (1.00, 0.62, 0.42), "FLAIR": (0.10, 0.62, 0.45)}
LESION = {"T1": (0.12, 0.95, 0.48), "T2": (0.92, 0.60, 0.82), "FLAIR": (0.40, 0.75, 0.95)}


@dataclass(frozen=True)
class Contrast:
    sequence: str
    csf: float
    gm: float
    wm: float
    core: float
    rim: float
    oedema: float


def random_contrast(rng: np.random.Generator, sequence: str) -> Contrast:
    """The sequence's intensities, each jittered by up to +-8 % (scanner and protocol spread)."""
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; expected one of {SEQUENCES}")
    values = np.array(TISSUE[sequence] + LESION[sequence]) * rng.uniform(0.92, 1.08, size=6)
    return Contrast(sequence, *(float(v) for v in np.clip(values, 0.0, 1.0)))


def render(tissue: dict[str, np.ndarray], lesion: dict[str, np.ndarray] | None, contrast: Contrast,
           lesion_contrast: float, texture: np.ndarray) -> np.ndarray:
    """Noise-free intensity from tissue fractions and (optional) lesion memberships.

    ``texture`` (..., 2) holds a smooth field for tissue texture and one for tumour heterogeneity.
    ``lesion_contrast`` blends each compartment from the surrounding tissue's intensity (0: an
    invisible lesion, only its mass effect remains) to the sequence's lesion intensity (1).
    Oedema only infiltrates parenchyma (GM/WM), never the ventricles.
    """
    c = contrast
    image = tissue["csf"] * c.csf + tissue["gm"] * c.gm + tissue["wm"] * c.wm
    image = image * (1.0 + 0.04 * texture[..., 0])
    if lesion is None:
        return image.astype(np.float32)
    k = np.float32(lesion_contrast)
    parenchyma = np.clip(tissue["gm"] + tissue["wm"], 0.0, 1.0)
    brain = tissue["brain"]
    heterogeneity = 1.0 + 0.15 * texture[..., 1]
    for weight, target in (
        (lesion["oedema"] * parenchyma, c.oedema),
        (lesion["tumour"] * brain, c.rim * heterogeneity),
        (lesion["core"] * brain, c.core * heterogeneity),
    ):
        image = image + k * weight * (target - image)
    return image.astype(np.float32)


def lesion_mask(tissue: dict[str, np.ndarray], lesion: dict[str, np.ndarray]) -> np.ndarray:
    """Ground truth = whole tumour (core + rim + oedema), as BraTS's "whole tumour" label: it is
    what a FLAIR/T2 reader outlines and what an anomaly detector is expected to flag.

    Works on a stack (S, H, W); holes (sulcal CSF the oedema surrounds) are filled per slice, as
    a reader's outline would be.
    """
    parenchyma = tissue["gm"] + tissue["wm"]
    in_tumour = (lesion["tumour"] >= 0.5) & (tissue["brain"] >= 0.5)
    in_oedema = (lesion["oedema"] >= 0.5) & (parenchyma >= 0.5)
    mask = in_tumour | in_oedema
    return np.stack([ndimage.binary_fill_holes(m) for m in mask])
