"""A seeded, bounded sample of decoded images per label: the EDA's intensity summary and the
image grids are drawn from it, so the EDA's cost does not grow with the dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.types import DataSource, Record
from harness.progress import progress as progress_bar

__all__ = ["GRID_SIZE", "INTENSITY_BINS", "ImageSample", "ImageStats", "intensity_summary", "sample_images"]

INTENSITY_BINS = 64
GRID_SIZE = 16
_PIXELS_PER_IMAGE = 2048
_BIN_EDGES = np.linspace(0.0, 1.0, INTENSITY_BINS + 1)


@dataclass(frozen=True)
class ImageStats:
    """What the intensity summary needs from one decoded image (the image itself is not kept)."""

    hist: np.ndarray  # fraction of pixels per bin
    pixels: np.ndarray  # seeded subsample for percentiles
    mean: float
    dark: float
    bright: float


@dataclass
class ImageSample:
    """A seeded sample, per label in sampling order: statistics of every decoded image, the first
    ``GRID_SIZE`` images themselves (for the grids), and the failures. Memory stays bounded."""

    stats: dict[str, list[ImageStats]] = field(default_factory=dict)
    grid: dict[str, list[np.ndarray]] = field(default_factory=dict)
    grid_ids: dict[str, list[str]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)


def sample_images(source: DataSource, records: Sequence[Record], per_label: int, *, seed: int,
                  progress: bool = True) -> ImageSample:
    """Decode a seeded sample of at most ``per_label`` images per label (bounded EDA cost).

    An image that fails to decode, or decodes to something other than a finite 2-D array, is
    recorded in ``failures`` and skipped; the EDA goes on.
    """
    rng = np.random.default_rng(seed)
    sample = ImageSample()
    chosen: list[Record] = []
    for label in sorted({r.label for r in records}):
        of_label = [r for r in records if r.label == label]
        order = rng.permutation(len(of_label))[:per_label]
        chosen.extend(of_label[i] for i in order)
        sample.stats[label], sample.grid[label], sample.grid_ids[label] = [], [], []
    for record in progress_bar(chosen, desc="eda: decoding sample", enabled=progress, unit="img"):
        try:
            image = np.asarray(source.load_image(record), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - any decoder error is recorded, never raised
            sample.failures.append({"id": record.id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if image.ndim != 2 or image.size == 0 or not np.isfinite(image).all():
            error = f"unusable image array: shape {image.shape}, non-finite or empty"
            sample.failures.append({"id": record.id, "error": error})
            continue
        image = np.clip(image, 0.0, 1.0)
        sample.stats[record.label].append(_image_stats(image, rng))
        if len(sample.grid[record.label]) < GRID_SIZE:
            sample.grid[record.label].append(image)
            sample.grid_ids[record.label].append(record.id)
    return sample


def intensity_summary(sample: ImageSample) -> dict[str, Any]:
    """Pixel-intensity histograms and percentiles per label from the decoded sample.

    Each image's histogram is normalised before averaging so large images do not dominate;
    percentiles come from a seeded subsample of pixels per image.
    """
    per_label: dict[str, Any] = {}
    for label, stats in sample.stats.items():
        if not stats:
            per_label[label] = {"n_images": 0, "hist": None, "mean": None, "p01": None, "p50": None,
                                "p99": None, "dark_fraction": None, "bright_fraction": None}
            continue
        p01, p50, p99 = np.percentile(np.concatenate([s.pixels for s in stats]), [1, 50, 99])
        per_label[label] = {
            "n_images": len(stats),
            "hist": np.mean([s.hist for s in stats], axis=0).tolist(),
            "mean": float(np.mean([s.mean for s in stats])),
            "p01": float(p01), "p50": float(p50), "p99": float(p99),
            "dark_fraction": float(np.mean([s.dark for s in stats])),
            "bright_fraction": float(np.mean([s.bright for s in stats])),
        }
    return {"bin_edges": _BIN_EDGES.tolist(), "per_label": per_label}


def _image_stats(image: np.ndarray, rng: np.random.Generator) -> ImageStats:
    flat = image.ravel()
    return ImageStats(
        hist=np.histogram(flat, bins=_BIN_EDGES)[0] / flat.size,
        pixels=rng.choice(flat, size=min(_PIXELS_PER_IMAGE, flat.size), replace=False),
        mean=float(flat.mean()),
        dark=float((flat < 0.02).mean()),
        bright=float((flat >= 0.98).mean()),
    )
