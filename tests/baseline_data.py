"""Tiny synthetic brain-like slices for the baseline tests: an elliptical 'brain' with smooth
texture on a black background; tumor images carry one bright (or dark) blob inside the brain."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from harness.api import FitContext, ImageSet
from harness.config import method_settings


def make_slices(n: int, size: int = 32, seed: int = 0, contrast: float = 0.5,
                bright: bool = True) -> ImageSet:
    """``n`` images, alternating no_tumor / tumor, deterministic in ``seed``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images, brains, masks, labels = [], [], [], []
    for i in range(n):
        label = i % 2
        a, b = 0.7 + 0.15 * torch.rand(1, generator=g), 0.8 + 0.15 * torch.rand(1, generator=g)
        brain = (xx / a) ** 2 + (yy / b) ** 2 <= 1.0
        texture = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 5, 1, 2)[0, 0]
        img = (0.35 + 0.2 * torch.rand(1, generator=g) + 0.3 * (texture - 0.5)) * brain
        lesion = torch.zeros(size, size, dtype=torch.bool)
        if label:
            cx, cy = (torch.rand(2, generator=g) - 0.5) * 0.8
            r = 0.15 + 0.1 * torch.rand(1, generator=g)
            lesion = (((xx - cx) ** 2 + (yy - cy) ** 2) <= r**2) & brain
            img = img + (contrast if bright else -contrast) * lesion * 0.8
        images.append(img.clamp(0, 1))
        brains.append(brain)
        masks.append(lesion)
        labels.append(label)
    return ImageSet(
        images=torch.stack(images)[:, None].float(),
        labels=torch.tensor(labels),
        ids=[f"img{i:03d}" for i in range(n)],
        brain=torch.stack(brains)[:, None],
        masks=torch.stack(masks)[:, None],
    )


def make_context(out: Path, seed: int = 0, resume: bool = False) -> FitContext:
    """A CPU FitContext for the smoke profile."""
    return FitContext(device=torch.device("cpu"), seed=seed, profile="smoke", output_dir=Path(out),
                      logger=logging.getLogger("test-baselines"), resume=resume, progress=False)


def resnet18(**overrides: object):
    """A ResNet18Baseline with the smoke profile's settings and ``overrides`` on top."""
    from baselines.resnet18 import ResNet18Baseline

    return ResNet18Baseline(method_settings("resnet18", "smoke", overrides))
