"""Load one split of a dataset into an in-memory :class:`harness.data.types.ImageSet`.

Each image is (1) normalised per image to [0, 1] between its robust percentiles
(:data:`LOW_PERCENTILE`, :data:`HIGH_PERCENTILE`), which removes overall brightness and
contrast as a shortcut a classifier could learn from the scanner or export instead of anatomy;
(2) letterboxed to a square with zero padding (aspect ratio kept, so shapes are not distorted
differently per source); (3) resized to ``size`` x ``size`` with antialiased bilinear
interpolation (nearest for lesion masks). Brain masks come from :func:`brain.brain_mask`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.brain import brain_mask
from harness.data.splits import SPLITS, Split
from harness.data.types import TUMOR, DatasetError, DataSource, ImageSet, Record
from harness.progress import progress as progress_bar

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
_PERCENTILE_SAMPLE = 256 * 256  # percentiles of big images from a strided sample: same result, faster
log = logging.getLogger(__name__)


def load_imageset(source: DataSource, split: Split, which: str, size: int,
                  progress: bool = True) -> ImageSet:
    """Decode the ``which`` split (train/val/test) of ``source`` in manifest order."""
    if which not in SPLITS:
        raise ValueError(f"unknown split {which!r}; expected one of {', '.join(SPLITS)}")
    if size < 8:
        raise ValueError(f"image size must be at least 8 pixels, got {size}")
    by_id = {r.id: r for r in source.records}
    ids = split.ids(which)
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DatasetError(f"split manifest names {len(missing)} image(s) the dataset does not have "
                           f"(first: {missing[0]!r}); was it made from another dataset?")
    records = [by_id[i] for i in ids]
    want_masks = _masks_usable(records)
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        items = list(progress_bar(
            pool.map(lambda r: _prepare(source, r, size, want_masks), records),
            total=len(records), desc=f"load {which}", enabled=progress, unit="img"))
    if items:
        images = torch.stack([img for img, _ in items])
        masks = torch.stack([m for _, m in items]) if want_masks else None
    else:
        images = torch.zeros((0, 1, size, size))
        masks = None
    labels = torch.tensor([1 if r.label == TUMOR else 0 for r in records], dtype=torch.long)
    return ImageSet(images=images, labels=labels, ids=ids, brain=brain_mask(images), masks=masks,
                    strata=[r.stratum for r in records])


def _masks_usable(records: list[Record]) -> bool:
    """Masks are returned when some record has one and every tumor image has one (a missing
    no_tumor mask means "no lesion"; a missing tumor mask would make pixel metrics wrong)."""
    if not any(r.has_mask for r in records):
        return False
    lacking = [r.id for r in records if r.label == TUMOR and not r.has_mask]
    if lacking:
        log.warning("%d tumor image(s) have no mask (first: %s); pixel metrics are off for this set",
                    len(lacking), lacking[0])
        return False
    return True


def _prepare(source: DataSource, record: Record, size: int,
             want_mask: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    image = normalise(source.load_image(record))
    out = resize_square(letterbox(image), size, mode="bilinear")
    mask = None
    if want_mask:
        raw = source.load_mask(record) if record.has_mask else None
        if raw is None:
            raw = np.zeros(image.shape, dtype=bool)
        elif raw.shape != image.shape:
            raise DatasetError(f"mask of {record.id!r} is {raw.shape}, its image {image.shape}")
        mask = resize_square(letterbox(raw.astype(np.float32)), size, mode="nearest") > 0.5
    return out, mask


def normalise(image: np.ndarray) -> np.ndarray:
    """Robust per-image min-max to [0, 1]; a flat image becomes all zeros."""
    image = np.asarray(image, dtype=np.float32)
    step = max(1, int(np.sqrt(image.size / _PERCENTILE_SAMPLE)))
    lo, hi = np.percentile(image[::step, ::step], [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi - lo < 1e-6:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def letterbox(image: np.ndarray) -> np.ndarray:
    """Pad with zeros to a centred square."""
    h, w = image.shape
    side = max(h, w)
    if h == w:
        return image
    out = np.zeros((side, side), dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = image
    return out


def resize_square(image: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """(side, side) array -> (1, size, size) float tensor."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if t.shape[-1] != size:
        if mode == "nearest":
            t = F.interpolate(t, size=(size, size), mode="nearest")
        else:
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True).clamp_(0.0, 1.0)
    return t[0]
