"""The MRI-domain feature extractor for FID/KID and target rates: a method with the ``features``
capability, trained on the split.

When a run includes such a method its checkpoint is used. Otherwise the first registered method
with the capability is trained once per (method, split hash, train seed, profile, settings) and cached,
so a translation-only run still gets an MRI feature space and the next run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from harness.atomic import atomic_copy
from harness.data.types import ImageSet
from harness.method_build import build_method
from harness.registry import METHODS


def cache_root() -> Path:
    """``$HARNESS_CACHE`` or ``~/.cache/brain-mri-harness``."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "brain-mri-harness")


def feature_method(preferred: tuple[str, ...] = ()) -> str | None:
    """The method that serves as the MRI feature extractor: the first of ``preferred`` (a run's
    methods) with the ``features`` capability, else the first registered one; None if none has it."""
    for names in (preferred, METHODS.names()):
        for name in names:
            if "features" in METHODS.get(name).capabilities:
                return name
    return None


def reference_key(method: str, split_hash: str, seed: int, profile: str, settings: dict[str, Any]) -> str:
    """Method, split, seed and profile plus a hash of the settings, so an override never reuses a stale model."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{method}-{split_hash[:16]}-seed{seed}-{profile}-{digest}"


def reference_file(method: str, settings: dict[str, Any], *, split_hash: str, seed: int, profile: str) -> Path:
    """Where the feature method's checkpoint for this split is cached. A grid copies its feature
    cell's checkpoint here, so its translating cells use that very file (harness.grid)."""
    return cache_root() / "mri-reference" / reference_key(method, split_hash, seed, profile, settings) / "model.pt"


def dedicated_checkpoint(method: str, settings: dict[str, Any], train: ImageSet, val: ImageSet, *,
                         split_hash: str, seed: int, profile: str, device: torch.device,
                         logger: logging.Logger, progress: bool) -> Path:
    """Train (or reuse) the cached feature method for this split; returns its checkpoint file."""
    target = reference_file(method, settings, split_hash=split_hash, seed=seed, profile=profile)
    folder = target.parent
    if target.is_file():
        logger.info("MRI feature extractor: reusing %s", target)
        return target
    logger.info("MRI feature extractor: training a dedicated %s into %s", method, folder)
    instance, ctx = build_method(method, settings, device=device, seed=seed, profile=profile,
                                 output_dir=folder / "work", logger=logger, resume=True, progress=progress)
    instance.fit(train, val, ctx)
    checkpoint = instance.checkpoint()
    if checkpoint is None or not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{method} did not leave a checkpoint (checkpoint() returned {checkpoint})")
    atomic_copy(checkpoint, target)
    return target
