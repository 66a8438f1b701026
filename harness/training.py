"""Training plumbing shared by every method: devices, seeding, mixed precision, checkpoints and
progress bars (re-exported from :mod:`harness.progress`). Methods use these instead of copying them."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import distributed  # DDP helpers for methods with the ``distributed`` capability
from harness.atomic import atomic_link, atomic_write
from harness.progress import progress

__all__ = ["choose_device", "seed_everything", "make_generator", "autocast", "rng_state", "set_rng_state",
           "atomic_torch_save", "Checkpointer", "progress", "distributed"]


def choose_device(requested: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; ``requested`` forces one (an unavailable one is an error)."""
    if requested in ("", "auto", None):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {requested!r} requested but MPS is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices). Seed 0 is a seed like any other."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA (fp16/bf16 as the GPU supports); a no-op elsewhere or disabled."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain lists, so a checkpoint holding them loads with
    ``torch.load(..., weights_only=True)`` (no pickled objects that could run code)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`harness.atomic.atomic_write`: a kill never leaves half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


class Checkpointer:
    """Per-epoch checkpoints (``epoch-NNN.pt`` + ``last.pt``) holding whatever state a method
    passes (models, optimizers, schedulers, pools) plus the global RNG state, so that a
    resumed run continues exactly where it stopped."""

    def __init__(self, folder: Path, keep_last: int = 2) -> None:
        self.folder = Path(folder)
        self.keep_last = keep_last

    @property
    def last_path(self) -> Path:
        return self.folder / "last.pt"

    def save(self, epoch: int, state: dict[str, Any]) -> Path:
        payload = {"epoch": epoch, "rng": rng_state(), "state": state}
        path = self.folder / f"epoch-{epoch:03d}.pt"
        atomic_torch_save(payload, path)
        atomic_link(path, self.last_path)  # the same bytes: one write (and fsync) per epoch, not two
        self._prune()
        return path

    def load_last(self, map_location: str | torch.device = "cpu") -> tuple[int, dict[str, Any]] | None:
        """Return ``(epoch, state)`` of the newest complete checkpoint and restore RNG state."""
        if not self.last_path.exists():
            return None
        payload = torch.load(self.last_path, map_location=map_location, weights_only=True)
        set_rng_state(payload["rng"])
        return int(payload["epoch"]), payload["state"]

    def _prune(self) -> None:
        epochs = sorted(self.folder.glob("epoch-*.pt"))
        for old in epochs[: max(0, len(epochs) - self.keep_last)]:
            old.unlink(missing_ok=True)
