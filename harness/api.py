"""Public types for methods: what a method receives and what it returns.

Methods in ``baselines/``, ``generative/`` and third-party packages import only this module
(and ``harness.settings``, ``harness.training``, ``harness.scoring``); the runner computes every
metric. A method owns its settings: ``Settings`` (a :class:`~harness.settings.MethodSettings`
subclass) with per-profile defaults in ``profile_defaults``; the runner resolves them and hands
the instance to the constructor.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from harness.data.types import LABELS, NO_TUMOR, TUMOR, ImageSet
from harness.registry import CAPABILITIES, SUPERVISION, register_method
from harness.settings import MethodSettings

__all__ = [
    "CAPABILITIES", "SUPERVISION", "KnownWeights", "TUMOR", "NO_TUMOR", "LABELS", "ImageSet", "ScoreOutput", "FitContext",
    "Method", "MethodSettings", "register_method",
]


@dataclass(frozen=True)
class KnownWeights:
    """A pretrained weights file a method (or a metric) can use, where it comes from, and what
    uses it. ``python -m harness weights`` lists them; only ``weights --fetch`` downloads."""

    name: str
    file: str
    url: str
    used_by: str
    option: str  # how to point a run at a local copy

    @property
    def hash_prefix(self) -> str:
        """The SHA-256 prefix torch hub file names carry (``name-<hash>.pth``)."""
        return Path(self.file).stem.rsplit("-", 1)[-1]


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
    output_dir: Path  # this method's folder in the run: checkpoints/, curves, samples
    logger: logging.Logger
    profile: str = "quick"  # the profile's name, for logs; the values are in the method's settings
    resume: bool = False
    amp: bool = False  # mixed precision allowed (GPU)
    progress: bool = True
    # under torchrun, for a method with the ``distributed`` capability: every rank calls fit and
    # trains its shard of each batch (harness.training re-exports the helpers); rank 0 writes
    distributed: bool = False
    # for learning curves of translating methods: mri_fid(real, generated) is the FID between two
    # (N, 1, H, W) image sets in [0, 1] in the run's MRI feature space (torch-fidelity), or None
    # when the run has none; the real images go through the method's resolution path
    mri_fid: Callable[[torch.Tensor, torch.Tensor], float | None] | None = None


class Method(abc.ABC):
    """Base class of a registered method.

    Subclasses set ``capabilities``, ``supervision``, ``Settings`` and ``profile_defaults``
    (profile name -> values that differ from the class defaults), and implement ``fit`` and
    ``score``. The runner constructs a method with its resolved settings, so ``self.settings``
    is always set.

    ``fit`` trains on ``train`` (selecting on ``val``); ``score`` returns per-image scores (and
    maps, with the ``maps`` capability, at the ImageSet's resolution) for an ImageSet at the
    runner's resolution (resize inside if the method works at another); methods with the
    ``translates`` capability implement ``translate(images, to_domain)`` on (N, 1, H, W) tensors
    in [0, 1] and return the same shape. After ``fit`` the runner reads ``checkpoint()``,
    ``selection()`` and ``training_curves()`` into the run's files.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset({"scores"})
    # with ``translates``: the domains ``translate`` can produce; the runner skips the others
    # (a method that models healthy anatomy only reconstructs to no_tumor)
    translates_to: ClassVar[frozenset[str]] = frozenset({TUMOR, NO_TUMOR})
    supervision: ClassVar[str] = "none"
    description: ClassVar[str] = ""
    # the publication the method follows ("" for the harness's own floors) and, in one line, where
    # this implementation departs from it; `python -m harness list` shows both
    paper: ClassVar[str] = ""
    departures: ClassVar[str] = ""
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    profile_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    weights: ClassVar[tuple[KnownWeights, ...]] = ()  # pretrained files it can use (never downloaded)
    # other scorers of the same fitted model (variant suffix -> its supervision, a SUPERVISION
    # value): the runner evaluates each as a method named f"{name}+{suffix}" (e.g. ``dae+tuned``)
    # with its own run.json entry, rows and scores, calling score_variant; nothing is retrained
    variants: ClassVar[Mapping[str, str]] = {}
    variant_descriptions: ClassVar[Mapping[str, str]] = {}  # suffix -> one line for `list` and run.json

    def __init__(self, settings: MethodSettings | None = None) -> None:
        self.settings = settings if settings is not None else self.Settings()

    @classmethod
    def working_size(cls, settings: MethodSettings) -> int | None:
        """The square image size the method works at (None: the runner's size). The runner
        loads images at the largest working size of a run's methods."""
        size = getattr(settings, "image_size", None)
        return int(size) if size else None

    @abc.abstractmethod
    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        """Train on ``train``, selecting on ``val``."""

    @abc.abstractmethod
    def score(self, images: ImageSet) -> ScoreOutput:
        """Per-image scores (higher = more tumor) and, with ``maps``, per-pixel maps."""

    def translate(self, images: torch.Tensor, to_domain: str) -> torch.Tensor:
        """Only methods with the ``translates`` capability translate; the runner checks it."""
        raise TypeError(f"method {self.name!r} does not translate images")

    def score_variant(self, images: ImageSet, variant: str) -> ScoreOutput:
        """``score`` by the named variant's scorer (a key of ``variants``), after ``fit``."""
        raise TypeError(f"method {self.name!r} has no variant {variant!r}")

    def variant_selection(self, variant: str) -> dict[str, Any]:
        """What the variant chose on validation, recorded in its run.json entry like ``selection``."""
        return {}

    def training_curves(self) -> dict[str, list[float]]:
        return {}

    def checkpoint(self) -> Path | None:
        """The file holding the trained model after ``fit`` (recorded with its sha256), if any."""
        return None

    def selection(self) -> dict[str, Any]:
        """What ``fit`` chose on validation (epoch, map, aggregate, ...), recorded in run.json.
        An ``aggregate`` key is also shown on the run page."""
        return {}

    @classmethod
    def feature_extractor(cls, checkpoint: Path, device: torch.device) -> torch.nn.Module:
        """For the ``features`` capability: the network stored in ``checkpoint`` as a module that
        maps (N, 1, H, W) images in [0, 1] at any size to ``(features (N, D), logits (N, 2))``,
        in eval mode on ``device``. The MRI-domain FID/KID and target rates use it."""
        raise TypeError(f"method {cls.name!r} cannot serve as a feature extractor")
