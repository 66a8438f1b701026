"""Brain (foreground) masks of slices, so scores and maps ignore the black background.

Per image: threshold at :data:`RELATIVE_THRESHOLD` of the robust maximum (99th percentile), so
dark and bright images behave alike; when that keeps most of the frame (a grey, noisy
background) Otsu's threshold is used instead. Then the largest connected component is kept and
its holes (dark ventricles, CSF, a dark lesion core) are filled. An image with no foreground
(blank) gets an all-true mask: "the whole image" is the only safe region to score.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

RELATIVE_THRESHOLD = 0.1
MAX_FOREGROUND_FRACTION = 0.9


def brain_mask(images: torch.Tensor) -> torch.Tensor:
    """Bool (N, 1, H, W) foreground masks of float images (N, 1, H, W)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"brain_mask expects (N, 1, H, W) images, got shape {tuple(images.shape)}")
    arr = images.detach().to("cpu", torch.float32).numpy()[:, 0]
    masks = np.stack([slice_mask(a) for a in arr]) if len(arr) else np.zeros(arr.shape, dtype=bool)
    return torch.from_numpy(masks[:, None])


def slice_mask(image: np.ndarray) -> np.ndarray:
    """Bool (H, W) foreground of one slice."""
    robust_max = float(np.percentile(image, 99))
    if not np.isfinite(robust_max) or robust_max <= float(image.min()):
        return np.ones(image.shape, dtype=bool)
    fg = image > RELATIVE_THRESHOLD * robust_max
    if fg.mean() > MAX_FOREGROUND_FRACTION:
        fg = image > otsu_threshold(image)
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.ones(image.shape, dtype=bool)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        fg = labels == int(sizes.argmax())
    return ndimage.binary_fill_holes(fg)


def otsu_threshold(image: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut that maximises between-class variance of the histogram."""
    hist, edges = np.histogram(image, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centers[int(between.argmax())])
