"""A content-addressed cache of extracted features.

torch-fidelity's own cache is keyed by the name the caller gives an input, so a changed image
set under the same name silently reuses stale statistics. This cache is keyed by what the
features actually depend on: the feature space (extractor, weights hash, input size, layers,
library version) and a SHA-256 of the exact uint8 pixels fed to the extractor.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from harness.training import atomic_torch_save

FeatureDict = dict[str, torch.Tensor]


def content_hash(images: torch.Tensor) -> str:
    """SHA-256 of a uint8 image tensor's shape and bytes (what the extractor sees)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"content_hash expects uint8 images, got {images.dtype}")
    h = hashlib.sha256()
    h.update(repr(tuple(images.shape)).encode())
    h.update(images.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def cache_key(space_fingerprint: str, layers: list[str] | tuple[str, ...], images: torch.Tensor) -> str:
    """One key per (feature space, requested layers, image content)."""
    blob = "\n".join([space_fingerprint, ",".join(sorted(layers)), content_hash(images)])
    return hashlib.sha256(blob.encode()).hexdigest()


class FeatureCache:
    """Feature dicts stored as ``<root>/features/<key>.pt``, written atomically.

    An unreadable or incomplete entry is a miss (and is overwritten), never an error.
    """

    def __init__(self, root: Path, logger: logging.Logger | None = None) -> None:
        self.folder = Path(root) / "features"
        self.logger = logger or logging.getLogger(__name__)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str, layers: list[str] | tuple[str, ...]) -> FeatureDict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file is only a cache miss
            self.logger.warning("ignoring unreadable feature cache %s: %s", path.name, exc)
            return None
        if not isinstance(feats, dict) or not all(isinstance(feats.get(k), torch.Tensor) for k in layers):
            self.logger.warning("ignoring incomplete feature cache %s", path.name)
            return None
        return {k: feats[k] for k in layers}

    def save(self, key: str, feats: FeatureDict) -> None:
        atomic_torch_save({k: v.detach().cpu() for k, v in feats.items()}, self.path(key))
