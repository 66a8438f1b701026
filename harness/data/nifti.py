"""Read NIfTI files (``.nii``, ``.nii.gz``) as 3D arrays in one orientation, with every way a file
can be unusable turned into a :class:`VolumeError` whose message is the skip reason.

Why canonical RAS (``nibabel.as_closest_canonical``): the voxel axes of a file follow its scanner
or its converter, so "axial" is the third array axis only after reorientation; BraTS, IXI and a
hospital export then slice the same way. Optional resampling to a voxel spacing uses
``nibabel.processing`` (linear for images, nearest for masks), so masks stay binary and aligned.

A mask (lesion or brain) is checked against its image in the files' own voxel grid before any
reorientation: a mask with another shape or affine belongs to another image, and reading it
anyway would mark the wrong voxels.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.processing import resample_from_to, resample_to_output

__all__ = ["AFFINE_TOLERANCE_MM", "Volume", "VolumeError", "read_pair", "stem"]

AFFINE_TOLERANCE_MM = 1e-3  # headers written by different tools round the same affine differently
_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError, zlib.error)


class VolumeError(Exception):
    """A volume or mask that cannot be used; the message is the one-line skip reason."""


@dataclass(frozen=True)
class Volume:
    """An image in canonical RAS orientation (axis 2 = inferior -> superior) with its masks on the
    same voxel grid. ``nan_voxels``: non-finite image voxels, set to 0."""

    image: np.ndarray  # float32 (X, Y, Z)
    lesion: np.ndarray | None  # float32 labels, or None without a lesion file
    brain: np.ndarray | None  # bool, or None without a brain-mask file
    zooms: tuple[float, float, float]  # voxel size (mm)
    nan_voxels: int


def stem(name: str) -> str:
    """The file name without ``.nii`` or ``.nii.gz`` (case kept)."""
    low = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_pair(image: Path, lesion: Path | None, brain: Path | None,
              spacing: tuple[float, float, float] | None) -> Volume:
    """The image and its optional masks, checked against each other, reoriented to RAS and, with
    ``spacing``, resampled; a :class:`VolumeError` names the first problem."""
    img = _open(image)
    data = _array(img, image)
    finite = np.isfinite(data)
    nan_voxels = int(data.size - finite.sum())
    if nan_voxels:
        data = np.where(finite, data, np.float32(0))
    if not np.any(data):
        raise VolumeError("all-zero volume (no signal)")
    masks = {}
    for role, path in (("lesion mask", lesion), ("brain mask", brain)):
        if path is not None:
            mask = _open(path)
            _check_grid(role, path, mask, img)
            masks[role] = np.nan_to_num(_array(mask, path), nan=0.0)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    target = canonical
    if spacing is not None:
        target = resample_to_output(canonical, voxel_sizes=spacing, order=1)
    out = {}
    for role, values in masks.items():
        moved = nib.as_closest_canonical(nib.Nifti1Image(values, img.affine))
        if spacing is not None:
            moved = resample_from_to(moved, target, order=0)
        out[role] = np.asarray(moved.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in target.header.get_zooms()[:3])
    brain_mask = out.get("brain mask")
    return Volume(image=np.asarray(target.dataobj, dtype=np.float32), lesion=out.get("lesion mask"),
                  brain=None if brain_mask is None else brain_mask > 0, zooms=zooms,  # type: ignore[arg-type]
                  nan_voxels=nan_voxels)


def _open(path: Path) -> nib.Nifti1Image:
    """The file's header (nibabel reads voxels lazily), as a 3D image."""
    try:
        img = nib.load(str(path))
    except _READ_ERRORS as exc:
        raise VolumeError(f"not a readable NIfTI file: {path.name} ({type(exc).__name__}: {exc})") from None
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        return img.slicer[..., 0]
    if len(shape) != 3:
        raise VolumeError(f"{len(shape)}D file {path.name} (shape {tuple(shape)}): one 3D volume per file expected")
    return img


def _array(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """The voxels as float32 (scaled by the header's slope and intercept); a truncated or corrupt
    file fails here, where nibabel decompresses it."""
    try:
        return np.asarray(img.get_fdata(dtype=np.float32))
    except _READ_ERRORS as exc:
        raise VolumeError(f"truncated or corrupt file: {path.name} ({type(exc).__name__}: {exc})") from None


def _check_grid(role: str, path: Path, mask: nib.Nifti1Image, image: nib.Nifti1Image) -> None:
    if mask.shape != image.shape:
        raise VolumeError(f"{role} {path.name} has shape {tuple(mask.shape)}, its image {tuple(image.shape)}")
    gap = float(np.abs(mask.affine - image.affine).max())
    if gap > AFFINE_TOLERANCE_MM:
        raise VolumeError(f"{role} {path.name} lies on another voxel grid than its image (affines differ by up "
                          f"to {gap:.3g} mm)")
