"""The MRI-domain feature extractor for FID/KID: the split's ResNet18 classifier.

When a run includes ``resnet18`` its checkpoint is used. Otherwise a dedicated ResNet18 is
trained through the registry once per (split hash, seed, profile) and cached, so a
CycleGAN-only run still gets an MRI feature space and the next run reuses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch

from harness.api import FitContext, ImageSet
from harness.config import Profile
from harness.registry import METHODS
from harness.training import seed_everything

MRI_METHOD = "resnet18"


def cache_root() -> Path:
    """``$HARNESS_CACHE`` or ``~/.cache/brain-mri-harness``."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "brain-mri-harness")


def reference_key(split_hash: str, seed: int, profile: Profile) -> str:
    """Profile name plus a hash of its ResNet18 settings, so an override never reuses a stale model."""
    settings = json.dumps(dataclasses.asdict(profile.resnet18), sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:8]
    return f"{MRI_METHOD}-{split_hash[:16]}-seed{seed}-{profile.name}-{digest}"


def dedicated_checkpoint(train: ImageSet, val: ImageSet, *, split_hash: str, seed: int, profile: Profile,
                         device: torch.device, logger: logging.Logger, progress: bool) -> Path:
    """Train (or reuse) the cached ResNet18 for this split; returns its checkpoint file."""
    folder = cache_root() / "mri-reference" / reference_key(split_hash, seed, profile)
    target = folder / "model.pt"
    if target.is_file():
        logger.info("MRI feature extractor: reusing %s", target)
        return target
    logger.info("MRI feature extractor: training a dedicated %s into %s", MRI_METHOD, folder)
    seed_everything(seed)
    method = METHODS.get(MRI_METHOD)()
    ctx = FitContext(device=device, seed=seed, profile=profile, output_dir=folder / "work",
                     logger=logger, resume=True, amp=device.type == "cuda", progress=progress)
    method.fit(train, val, ctx)
    checkpoint = getattr(method, "checkpoint_path", None)
    if checkpoint is None or not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{MRI_METHOD} did not leave a checkpoint (checkpoint_path={checkpoint})")
    tmp = folder / ".model.pt.tmp"
    shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, target)
    return target
