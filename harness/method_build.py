"""One place that turns a method's name and resolved settings into an instance and its FitContext.

Why: the runner, the torchrun followers and the cached MRI feature method all build methods; one
function keeps the seeding and the context (device, AMP, resume, progress) the same for all three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from harness import distributed as torch_distributed
from harness.api import FitContext, Method
from harness.registry import METHODS
from harness.training import seed_everything

__all__ = ["build_method", "trains_distributed"]


def build_method(name: str, settings: Mapping[str, Any], *, device: torch.device, seed: int, profile: str,
                 output_dir: Path, logger: logging.Logger, resume: bool = False, progress: bool = True,
                 distributed: bool = False,
                 mri_fid: Callable[[torch.Tensor, torch.Tensor], float | None] | None = None,
                 ) -> tuple[Method, FitContext]:
    """Method ``name`` with ``settings`` (validated by its typed model) and the context to fit it in.
    Seeds everything first, so a method's numbers do not depend on what ran before it."""
    seed_everything(seed)
    cls = METHODS.get(name)
    method = cls(cls.Settings(**settings))
    ctx = FitContext(device=device, seed=seed, profile=profile, output_dir=output_dir, logger=logger,
                     resume=resume, amp=device.type == "cuda", progress=progress, distributed=distributed,
                     mri_fid=mri_fid)
    return method, ctx


def trains_distributed(name: str) -> bool:
    """Under torchrun, whether method ``name`` trains on every rank (its ``distributed`` capability)."""
    return torch_distributed.active() and "distributed" in METHODS.get(name).capabilities
