"""``python -m harness data export --layout brats|ixi|generic DIR``: the embedded cohort's subjects
written as NIfTI volumes in a layout the ``volumes`` source reads.

Why: the whole volume path (layout recognition, reorientation, slicing, labels, several sources)
is then tested offline, end to end, and a user sees the file layout the harness expects before
pointing it at BraTS or IXI. Each subject's slices are stacked in axial order into one volume;
the image is skull-stripped as BraTS is (0 outside the brain, the slice's foreground
:func:`~harness.data.brain.slice_mask` joined with its lesion) and lesion subjects get a mask:

* ``brats``: lesion subjects, ``BraTS2021_00001/BraTS2021_00001_{t2,seg}.nii.gz`` (BraTS 2021 names);
* ``ixi``: lesion-free subjects, flat ``IXI001-Guys-0001-T2.nii.gz`` with no mask, as IXI ships;
* ``generic``: every subject, ``sub-001/T2.nii.gz`` and, with a lesion, ``sub-001/consensus_gt.nii.gz``
  (MSLUB's names).

The two first partition the cohort as the field's benchmarks do (train on healthy IXI, test on
BraTS): ``--data brats=DIR1 --data ixi=DIR2`` reads them back as one cohort of two sources.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import nibabel as nib
import numpy as np

from harness.data.brain import slice_mask
from harness.data.types import DataSource, Record
from harness.data.virtual_subject import FOV_MM
from harness.data.volume_slices import from_display

__all__ = ["LAYOUTS", "export_command", "export_volumes"]

LAYOUTS = ("brats", "ixi", "generic")


def export_volumes(source: DataSource, layout: str, out: Path) -> list[str]:
    """Write ``source``'s subjects (the embedded cohort: slices with ``meta["z"]`` and masks) in
    ``layout`` under ``out``; returns the subjects written."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    by_subject: dict[str, list[Record]] = defaultdict(list)
    for record in source.records:
        by_subject[record.subject].append(record)
    written = []
    for subject, records in sorted(by_subject.items()):
        records.sort(key=lambda r: r.meta["z"])
        images = [np.round(source.load_image(r) * 255.0).astype(np.int16) for r in records]
        lesions = [_mask(source, r, images[0].shape) for r in records]
        has_lesion = any(m.any() for m in lesions)
        if (layout == "brats" and not has_lesion) or (layout == "ixi" and has_lesion):
            continue
        brains = [slice_mask(img / 255.0) | m for img, m in zip(images, lesions)]
        volume = np.stack([from_display((img + 1) * b) for img, b in zip(images, brains)], axis=2)
        affine = _affine(images[0].shape[0], [int(r.meta["z"]) for r in records])
        sequence = records[0].stratum or "t2"
        image_path, mask_path = _paths(layout, subject, sequence, out)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(volume, affine), image_path)
        if mask_path is not None and has_lesion:
            mask = np.stack([from_display(m) for m in lesions], axis=2).astype(np.uint8)
            nib.save(nib.Nifti1Image(mask, affine), mask_path)
        written.append(subject)
    return written


def _mask(source: DataSource, record: Record, shape: tuple[int, ...]) -> np.ndarray:
    mask = source.load_mask(record) if record.has_mask else None
    return np.zeros(shape, dtype=bool) if mask is None else mask.astype(bool)


def _affine(size: int, z: list[int]) -> np.ndarray:
    """RAS voxel-to-mm matrix: the cohort's field of view in plane, the median slice gap in z."""
    pixel = FOV_MM / size
    gap = float(np.median(np.diff(z))) if len(z) > 1 else 1.0
    return np.diag([pixel, pixel, gap, 1.0]) + np.array([[0, 0, 0, -FOV_MM / 2], [0, 0, 0, -FOV_MM / 2],
                                                         [0, 0, 0, float(z[0])], [0, 0, 0, 0]])


def _paths(layout: str, subject: str, sequence: str, out: Path) -> tuple[Path, Path | None]:
    """The image file and the lesion-mask file (None: IXI ships none)."""
    number = int(re.sub(r"\D", "", subject) or 0)
    if layout == "brats":
        case = f"BraTS2021_{number:05d}"
        return out / case / f"{case}_{sequence.lower()}.nii.gz", out / case / f"{case}_seg.nii.gz"
    if layout == "ixi":
        name = f"IXI{number:03d}-Guys-{number:04d}"
        return out / f"{name}-{sequence.upper()}.nii.gz", None
    return out / subject / f"{sequence.upper()}.nii.gz", out / subject / "consensus_gt.nii.gz"


def export_command(args: argparse.Namespace) -> int:
    from harness.data.commands import resolve_profile
    from harness.data.sources import data_specs, open_dataset

    profile = resolve_profile(args)
    source = open_dataset(data_specs(None, None, profile), args.seed)
    out = Path(args.out)
    written = export_volumes(source, args.layout, out)
    print(f"wrote {len(written)} subject(s) of {source.root} as {args.layout} volumes to {out}/")
    print(f"read them with: python -m harness data eda --data {out} --set volumes.sequence=all")
    return 0
