"""Public types for methods: what a method receives and what it returns.

Methods in ``baselines/``, ``generative/`` and third-party packages import only this module
(and ``harness.config``, ``harness.training``); the runner computes every metric.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from harness.config import Profile
from harness.registry import register_method

__all__ = [
    "CAPABILITIES", "TUMOR", "NO_TUMOR", "LABELS", "ImageSet", "ScoreOutput", "FitContext",
    "Method", "register_method",
]

TUMOR = "tumor"
NO_TUMOR = "no_tumor"
LABELS = (NO_TUMOR, TUMOR)  # index = integer label: 0 no_tumor, 1 tumor
CAPABILITIES = frozenset({"scores", "maps", "translates"})


@dataclass
class ImageSet:
    """A split, decoded and resized, held in memory.

    ``images`` are single-channel float32 in [0, 1], shape (N, 1, H, W). ``masks`` are the
    ground-truth lesion masks (bool, same shape) when the dataset has them, else None.
    ``brain`` is a brain/foreground mask (bool) computed from the image, so that scores and
    maps ignore the background.
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    brain: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            ids=[self.ids[i] for i in idx.tolist()],
            brain=self.brain[idx],
            masks=None if self.masks is None else self.masks[idx],
        )

    def of_label(self, label: int) -> ImageSet:
        return self.subset(torch.nonzero(self.labels == label).flatten())

    def resized(self, size: int) -> ImageSet:
        """Bilinear resize of images (nearest for masks) to ``size`` x ``size``."""
        if self.images.shape[-1] == size and self.images.shape[-2] == size:
            return self
        import torch.nn.functional as F

        def nearest(m: torch.Tensor) -> torch.Tensor:
            return F.interpolate(m.float(), size=(size, size), mode="nearest") > 0.5

        return ImageSet(
            images=F.interpolate(self.images, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True).clamp(0, 1),
            labels=self.labels,
            ids=self.ids,
            brain=nearest(self.brain),
            masks=None if self.masks is None else nearest(self.masks),
        )


@dataclass
class ScoreOutput:
    """Per-image anomaly scores (higher = more tumor) and optional per-pixel maps (N, H, W)."""

    scores: np.ndarray
    maps: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class FitContext:
    """What the runner hands a method for training."""

    device: torch.device
    seed: int
    profile: Profile
    output_dir: Path  # this method's folder in the run: checkpoints/, curves, samples
    logger: logging.Logger
    resume: bool = False
    pretrained: str | None = None  # e.g. ImageNet ResNet18 weights path
    amp: bool = False  # mixed precision allowed (GPU)
    progress: bool = True


class Method(abc.ABC):
    """Base class of a registered method. Subclasses set ``capabilities`` and must implement
    ``fit`` and ``score``; ``translate`` is only for methods with the ``translates`` capability.

    ``fit`` trains on ``train`` (selecting on ``val``); ``score`` returns per-image scores
    (and maps, with the ``maps`` capability, at the ImageSet's resolution) for an ImageSet at
    the runner's resolution (resize inside if the method works at another); methods with the
    ``translates`` capability implement ``translate(images, to_domain)`` on (N, 1, H, W)
    tensors in [0, 1] and return the same shape.
    ``training_curves`` returns per-epoch losses for the report.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset({"scores"})
    description: ClassVar[str] = ""

    @abc.abstractmethod
    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        """Train on ``train``, selecting on ``val``."""

    @abc.abstractmethod
    def score(self, images: ImageSet) -> ScoreOutput:
        """Per-image scores (higher = more tumor) and, with ``maps``, per-pixel maps."""

    def translate(self, images: torch.Tensor, to_domain: str) -> torch.Tensor:
        """Only methods with the ``translates`` capability translate; the runner checks it."""
        raise TypeError(f"method {self.name!r} does not translate images")

    def training_curves(self) -> dict[str, list[float]]:
        return {}
