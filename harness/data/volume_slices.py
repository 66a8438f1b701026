"""From one volume to the axial slices a run uses: brain mask, intensity scaling, slice choice and
slice labels.

Decisions, kept here so they are documented once:

* **Brain.** A brain-mask file when there is one; else the non-zero voxels, which is the brain
  for skull-stripped data (BraTS ships so). A volume whose background is not zero (its outer
  faces mostly non-zero) or whose non-zero part exceeds :data:`MAX_BRAIN_ML` (a head, not a brain)
  does not look skull-stripped: it is flagged, and its brain falls back to the foreground of
  each slice (:func:`harness.data.brain.slice_mask`), which still holds skull and scalp.
* **Intensity.** Per volume, between the :data:`~harness.data.loading.LOW_PERCENTILE` and
  :data:`~harness.data.loading.HIGH_PERCENTILE` percentiles of the brain's voxels, clipped to
  [0, 1] and 0 outside the brain, as the 2D loader scales each image: scanner gain and
  sequence settings then do not set a volume's brightness. Slices are stored as 8-bit, as
  the embedded cohort and 2D files are.
* **Slices.** ``brain_area``: every axial slice whose brain area is at least
  ``min_brain_fraction`` of the volume's largest (drops the near-empty caps); ``index_range``:
  the axial indices ``slice_range`` (inclusive, after reorientation and resampling), as BMAD's
  60-99 of BraTS 2021.
* **Labels**, as the embedded cohort's: ``tumor`` when the slice's lesion covers at least
  ``min_lesion_fraction`` of its brain area, ``no_tumor`` without lesion voxels, and left out as
  ambiguous in between (counted). A lesion is every mask voxel > 0.
* **Orientation.** An axial RAS slice (x, y) is shown rotated so anterior is up
  (:func:`to_display`); :func:`from_display` is its inverse, for writing volumes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from harness.data.brain import slice_mask
from harness.data.imageio import perceptual_hash
from harness.data.loading import HIGH_PERCENTILE, LOW_PERCENTILE
from harness.data.nifti import Volume, VolumeError
from harness.data.types import NO_TUMOR, TUMOR

__all__ = ["MAX_BRAIN_ML", "SliceRule", "SliceStack", "from_display", "slice_volume", "to_display"]

MAX_BRAIN_ML = 2500.0  # adult brains are 1.0-1.8 L; a whole head is 3.5-5 L
MAX_BACKGROUND_NONZERO = 0.5  # share of the outer faces' voxels that may be non-zero in stripped data


@dataclass(frozen=True)
class SliceRule:
    """Which axial slices to keep and how to label them (see the module docstring)."""

    kind: Literal["brain_area", "index_range"]
    min_brain_fraction: float
    index_range: tuple[int, int]
    min_lesion_fraction: float


@dataclass(frozen=True)
class SliceStack:
    """The kept slices of one volume, in axial order, with per-slice facts for the records."""

    images: np.ndarray  # uint8 (S, H, W)
    masks: np.ndarray  # bool (S, H, W): lesion voxels
    z: list[int]  # axial index of each slice
    labels: list[str]
    sha256: list[str]
    phash: list[str]
    mean_brightness: list[float]
    n_ambiguous: int
    skull_stripped: bool
    nan_voxels: int  # non-finite image voxels, read as 0
    unexpected_labels: list[float]  # lesion-mask values > 0 outside the layout's documented labels


def to_display(axial: np.ndarray) -> np.ndarray:
    """An axial RAS slice (x, y) as an image (rows: anterior to posterior; columns: x)."""
    return np.ascontiguousarray(np.rot90(axial))


def from_display(image: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_display`."""
    return np.ascontiguousarray(np.rot90(image, -1))


def slice_volume(volume: Volume, rule: SliceRule, expected_labels: frozenset[int]) -> SliceStack:
    """The kept, scaled and labelled slices of ``volume``; ``expected_labels``: the lesion-mask
    values its layout documents (others still count as lesion, and are reported)."""
    image = volume.image
    stripped = volume.brain is not None or _looks_stripped(image, volume.zooms)
    brain = _brain(volume, stripped)
    area = brain.sum(axis=(0, 1))
    if not area.any():
        raise VolumeError("empty brain mask (no brain voxel)")
    keep = _chosen(area, rule, image.shape[2])
    lo, hi = _range(image, brain)
    lesion = volume.lesion > 0 if volume.lesion is not None else np.zeros(image.shape, dtype=bool)
    kept, labels, ambiguous = [], [], 0
    for k in keep:
        lesion_area = int(lesion[:, :, k].sum())
        if lesion_area == 0:
            labels.append(NO_TUMOR)
        elif lesion_area >= rule.min_lesion_fraction * max(int(area[k]), 1):
            labels.append(TUMOR)
        else:
            ambiguous += 1
            continue
        kept.append(k)
    images = (np.stack([to_display(_scaled(image[:, :, k], brain[:, :, k], lo, hi)) for k in kept]) if kept
              else np.zeros((0, 1, 1), np.uint8))
    masks = np.stack([to_display(lesion[:, :, k]) for k in kept]) if kept else np.zeros((0, 1, 1), bool)
    return SliceStack(
        images=images, masks=masks, z=[int(k) for k in kept], labels=labels,
        sha256=[hashlib.sha256(s.tobytes()).hexdigest() for s in images],
        phash=[perceptual_hash(s, Image.fromarray(s, mode="L")) for s in images],
        mean_brightness=[float(s.mean()) / 255.0 for s in images],
        n_ambiguous=ambiguous, skull_stripped=stripped, nan_voxels=volume.nan_voxels,
        unexpected_labels=_unexpected(volume.lesion, expected_labels))


def _unexpected(lesion: np.ndarray | None, expected: frozenset[int]) -> list[float]:
    if lesion is None:
        return []
    return [float(v) for v in np.unique(lesion[lesion > 0]) if float(v) not in expected]


def _looks_stripped(image: np.ndarray, zooms: tuple[float, float, float]) -> bool:
    """Zero background and a non-zero part no bigger than a brain (see the module docstring)."""
    faces = [image[0], image[-1], image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]]
    nonzero_faces = sum(int(np.count_nonzero(f)) for f in faces) / sum(f.size for f in faces)
    millilitres = np.count_nonzero(image) * float(np.prod(zooms)) / 1000.0
    return bool(nonzero_faces <= MAX_BACKGROUND_NONZERO and millilitres <= MAX_BRAIN_ML)


def _brain(volume: Volume, stripped: bool) -> np.ndarray:
    if volume.brain is not None:
        return volume.brain
    if stripped:
        return volume.image != 0
    image = volume.image
    top = float(np.percentile(image, 99.5)) or 1.0
    return np.stack([slice_mask(image[:, :, k] / top) if image[:, :, k].any()
                     else np.zeros(image.shape[:2], dtype=bool) for k in range(image.shape[2])], axis=2)


def _chosen(area: np.ndarray, rule: SliceRule, n: int) -> list[int]:
    if rule.kind == "index_range":
        lo, hi = rule.index_range
        chosen = [k for k in range(max(lo, 0), min(hi, n - 1) + 1) if area[k] > 0]
        if not chosen:
            raise VolumeError(f"no brain slice in slice_range {lo}-{hi} (the volume has {n} axial slices)")
        return chosen
    return [k for k in range(n) if area[k] > 0 and area[k] >= rule.min_brain_fraction * area.max()]


def _range(image: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    """The brain's robust intensity range, the volume's 0 and 1."""
    lo, hi = np.percentile(image[brain], [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi - lo < 1e-6:
        raise VolumeError("flat volume (one intensity inside the brain)")
    return float(lo), float(hi)


def _scaled(axial: np.ndarray, brain: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """One slice in 8 bits between the volume's ``lo`` and ``hi``; 0 outside the brain."""
    scaled = np.clip((axial - lo) * np.float32(255.0 / (hi - lo)), 0.0, 255.0) * brain
    return np.round(scaled).astype(np.uint8)
