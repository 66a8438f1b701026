"""FRD radiomics extraction: one process (the baseline) against the process pool, in the same run.

    python benchmarks/bench_frd.py [--n 60] [--size 64] [--workers N]

Extracts the FRD v1 features of N seeded brain-like uint8 images (textured discs, one constant
image that pyradiomics fails on) through ``RadiomicsFeatures.get`` with one worker, then with the
pool (default one worker per CPU, pool start-up included), checks that both give the same features
and the same failures, and prints both times and their ratio. The images are made with torch, so
the pool forks a process whose torch threads have run, as in a harness run. Needs the ``[frd]`` extra.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.metrics.feature_cache import FeatureCache  # noqa: E402
from harness.metrics.frd import RadiomicsFeatures, radiomics_extractor  # noqa: E402


def brain_like(n: int, size: int, seed: int) -> torch.Tensor:
    """(n,1,size,size) uint8 discs with fine texture and coarse shading; image 0 is constant."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.6 + 0.25 * torch.rand(n, 1, 1, 1, generator=g)
    disc = ((xx**2 + yy**2) < radius**2).float()
    fine = F.avg_pool2d(torch.randn(n, 1, size, size, generator=g), 3, stride=1, padding=1)
    coarse = F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=(size, size), mode="bilinear",
                           align_corners=False)
    images = (disc * (0.45 + 0.1 * coarse + 0.4 * fine)).clamp(0, 1)
    images[0] = 0.3
    return (images * 255).round().to(torch.uint8)


def timed(features: RadiomicsFeatures, images: torch.Tensor) -> tuple[dict[int, np.ndarray | None], float]:
    start = time.perf_counter()
    rows = features.get(images, np.arange(len(images)), "bench", cached=False)
    return rows, time.perf_counter() - start


def same(a: dict[int, np.ndarray | None], b: dict[int, np.ndarray | None]) -> bool:
    """Same keys in the same order, the same failures, and equal features."""
    return list(a) == list(b) and all(
        (x is None and y is None) or (x is not None and y is not None and np.allclose(x, y, equal_nan=True))
        for x, y in zip(a.values(), b.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="images (default 60)")
    parser.add_argument("--size", type=int, default=64, help="image size in px (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default one per CPU)")
    args = parser.parse_args()

    logger = logging.getLogger("bench_frd")
    images = brain_like(args.n, args.size, seed=0)
    extractor = radiomics_extractor()
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(Path(tmp), logger)
        serial, t_serial = timed(RadiomicsFeatures(extractor, cache, logger, workers=1), images)
        pool = RadiomicsFeatures(extractor, cache, logger, workers=args.workers)
        pooled, t_pooled = timed(pool, images)
    failed = sum(v is None for v in serial.values())
    print(f"{args.n} images of {args.size} px ({failed} failing), {os.cpu_count()} CPUs, pool of "
          f"{min(pool.workers, args.n)} workers")
    print(f"serial: {t_serial:6.2f} s ({t_serial / args.n:.3f} s/image)")
    print(f"pooled: {t_pooled:6.2f} s ({t_pooled / args.n:.3f} s/image)")
    print(f"ratio serial/pooled: {t_serial / t_pooled:.2f}; identical features and failures: {same(serial, pooled)}")


if __name__ == "__main__":
    main()
