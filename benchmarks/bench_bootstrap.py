"""Bootstrap AUROC/AP: the vectorised weighted evaluation against its baselines, measured in the
same process.

Run: ``python benchmarks/bench_bootstrap.py [--n N] [--boot B] [--images I] [--size S]``.

* image case: ``weighted_auroc_ap`` over per-image weights vs a scikit-learn loop;
* pixel case (what ``pixel_detection`` asks for): pooled in-brain pixel scores subsampled to
  ``DEFAULT_MAX_PIXELS``, replicates resampling images, vs the previous replicates x score-groups
  implementation kept below as the baseline. Prints both timings, their ratio and the largest
  difference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.metrics.bootstrap import _by_score_groups
from harness.metrics.detection import DEFAULT_MAX_PIXELS, bootstrap_counts, stratified_counts, weighted_auroc_ap


def image_case(n: int, n_boot: int) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + y
    counts = stratified_counts(y, n_boot, np.random.default_rng(1))

    t = time.perf_counter()
    base = np.array([(roc_auc_score(y, s, sample_weight=w), average_precision_score(y, s, sample_weight=w))
                     for w in counts])
    t_base = time.perf_counter() - t

    t = time.perf_counter()
    auroc, ap = weighted_auroc_ap(s, y, counts)
    t_fast = time.perf_counter() - t

    assert np.allclose(base[:, 0], auroc) and np.allclose(base[:, 1], ap)
    print(f"image case, n={n} replicates={n_boot}: sklearn loop {t_base:.3f} s, weighted {t_fast:.3f} s, "
          f"speed-up x{t_base / t_fast:.1f}")


def _previous_weighted_auroc_ap(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                                unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: the implementation before per-unit counts (replicates x score groups), which
    the library keeps for samples that are their own unit."""
    rank = np.unique(scores, return_inverse=True)[1].ravel()
    return _by_score_groups(rank, int(rank.max(initial=-1)) + 1, labels.astype(bool), np.asarray(unit, dtype=np.int64),
                            np.atleast_2d(weights).astype(float))


def pixel_data(n_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """In-brain pixel scores, lesion labels and image index as pixel_detection pools them: ellipse
    brains (~40% of the image), 40% tumor images with a lesion disc of a few hundred pixels,
    subsampled to DEFAULT_MAX_PIXELS; plus the image labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    brain = np.broadcast_to((xx / 0.65) ** 2 + (yy / 0.78) ** 2 < 1, (n_images, size, size))
    image_labels = (rng.random(n_images) < 0.4).astype(int)
    centre = rng.uniform(-0.4, 0.4, (2, n_images, 1, 1))
    radius = np.sqrt(rng.uniform(200, 500, (n_images, 1, 1)) / np.pi) * 2 / size
    masks = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < radius ** 2) & (image_labels[:, None, None] == 1)
    maps = rng.normal(size=(n_images, size, size)) + 1.5 * masks
    image = np.broadcast_to(np.arange(n_images)[:, None, None], maps.shape)
    values, truth, image = maps[brain], masks[brain], image[brain]
    keep = np.sort(rng.choice(values.size, size=min(values.size, DEFAULT_MAX_PIXELS), replace=False))
    return values[keep], truth[keep], image[keep], image_labels


def pixel_case(n_images: int, size: int, n_boot: int) -> None:
    values, truth, image, image_labels = pixel_data(n_images, size, 0)
    counts = bootstrap_counts(image_labels, None, n_boot, np.random.default_rng(1))

    t = time.perf_counter()
    base = _previous_weighted_auroc_ap(values, truth, counts, image)
    t_base = time.perf_counter() - t

    t = time.perf_counter()
    fast = weighted_auroc_ap(values, truth, counts, unit=image)
    t_fast = time.perf_counter() - t

    diff = max(float(np.max(np.abs(b - f))) for b, f in zip(base, fast))
    assert diff < 1e-9, diff
    print(f"pixel case, {n_images} images of {size}x{size}, {values.size} pixels ({int(truth.sum())} lesion), "
          f"replicates={n_boot}: previous {t_base:.3f} s, per-unit {t_fast:.3f} s, "
          f"speed-up x{t_base / t_fast:.1f}, max abs difference {diff:.2e}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="image case: scores (default 300)")
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--images", type=int, default=263, help="pixel case: images (default 263, the quick run's)")
    parser.add_argument("--size", type=int, default=128, help="pixel case: image side (default 128)")
    args = parser.parse_args()
    image_case(args.n, args.boot)
    pixel_case(args.images, args.size, args.boot)
