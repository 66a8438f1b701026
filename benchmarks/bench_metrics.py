"""Time the per-domain generative evaluation, first run against a run with a warm feature cache.

    .venv/bin/python benchmarks/bench_metrics.py [--n 200] [--size 64] [--inception-weights PATH]

Uses a randomly initialised ResNet18 checkpoint as the MRI-domain extractor (the numbers are
meaningless; the timing is not) and Inception-v3 when its weights are found. Both runs happen in
this process; the ratio is cached / first, so machine load affects both alike.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from baselines.resnet18 import ResNet18Baseline
from baselines.resnet18_net import build_resnet18_classifier
from harness.config import MetricSettings
from harness.hashing import file_sha256
from harness.metrics.feature_spaces import MRIExtractor
from harness.metrics.generative import Translations, evaluate_generative
from harness.metrics.weights import find_inception_weights


class _ExtractionCounter(logging.Handler):
    """Counts the evaluator's 'extracting real ...' log lines: real-feature extractions run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.real = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("extracting real"):
            self.real += 1


def synthetic_domain(n: int, size: int, seed: int, lesion: bool) -> torch.Tensor:
    """Seeded ellipse 'brains' with noise; tumor images get a bright disc."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    scale = 0.7 + 0.2 * torch.rand(n, 1, 1, generator=g)
    img = ((xx / scale) ** 2 + (yy / (scale * 1.2)) ** 2 < 1).float() * 0.5
    if lesion:
        cx, cy = (torch.rand(2, n, 1, 1, generator=g) - 0.5) * 0.8
        img = img + 0.4 * ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.04).float()
    return (img + 0.05 * torch.randn(n, size, size, generator=g)).clamp(0, 1).unsqueeze(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="images per domain and set (default 200)")
    parser.add_argument("--size", type=int, default=64, help="image and extractor size (default 64)")
    parser.add_argument("--inception-weights", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    logger = logging.getLogger("bench_metrics")
    logger.setLevel(logging.INFO)
    counter = _ExtractionCounter()
    logger.addHandler(counter)
    real = {"tumor": synthetic_domain(args.n, args.size, 1, True),
            "no_tumor": synthetic_domain(args.n, args.size, 2, False)}
    translated = {"tumor": synthetic_domain(args.n, args.size, 3, True),
                  "no_tumor": synthetic_domain(args.n, args.size, 4, False)}
    subjects = [f"s{i // 4}" for i in range(args.n)]  # four slices per synthetic subject
    data = Translations(real, translated, {d: subjects for d in real}, {d: subjects for d in real})
    val_images = torch.cat([synthetic_domain(40, args.size, 5, True), synthetic_domain(40, args.size, 6, False)])
    val_labels = torch.cat([torch.ones(40, dtype=torch.long), torch.zeros(40, dtype=torch.long)])
    inception, _ = find_inception_weights(args.inception_weights)
    print(f"{args.n} images per set, {args.size} px; feature spaces: mri-resnet18"
          f"{', inception-v3' if inception else ' (inception-v3 weights not found: skipped)'}")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "resnet18.pt"
        torch.save({"model": build_resnet18_classifier().state_dict(), "image_size": args.size}, ckpt)
        cpu = torch.device("cpu")
        mri = MRIExtractor(ResNet18Baseline.feature_extractor(ckpt, cpu), "mri-resnet18", file_sha256(ckpt, 64),
                           val_images, val_labels)
        times, extractions, results = [], [], []
        for _ in range(2):
            before = counter.real
            start = time.perf_counter()
            rows = evaluate_generative("bench", data, settings=MetricSettings(), device=cpu, seed=0,
                                       working_size=None, inception_weights=str(inception) if inception else None,
                                       mri=mri, cache_dir=Path(tmp) / "cache", logger=logger)
            times.append(time.perf_counter() - start)
            extractions.append(counter.real - before)
            results.append([r["value"] for r in rows])
    computed = sum(v is not None for v in results[0])
    print(f"first run : {times[0]:7.2f} s, real-feature extractions: {extractions[0]}")
    print(f"cached run: {times[1]:7.2f} s, real-feature extractions: {extractions[1]} "
          f"(skipped {extractions[0] - extractions[1]})")
    print(f"ratio cached/first: {times[1] / times[0]:.2f}; {computed} metric values; "
          f"identical results: {results[0] == results[1]}")


if __name__ == "__main__":
    main()
