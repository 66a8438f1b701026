"""A realism encoder: a small CNN trained self-supervised (VICReg) on a split's train images.

Why: the run's classifier (the ``mri-resnet18`` space) was trained with blur, noise and
resolution-loss augmentation and per-image z-scoring, so its features ignore exactly what a
realism metric must see, and it is a competitor grading the others. This encoder needs no
download and no labels, and it is never taught to ignore blur, noise or resolution:

* **Views** are crops at the images' own scale (no resizing, so no resolution change), flips,
  and a small intensity scale and shift. Two crops of one image share its sharpness and noise,
  so VICReg's variance and covariance terms reward features that carry them.
* **Architecture** (the harness's own): a plain strided CNN with BatchNorm and ReLU whose
  features are the global means of every stage's activations, from full resolution down, so the
  fine-scale filters' energy (what blur removes and noise adds) is part of the feature vector.
  No per-image normalisation: brightness and contrast stay visible; one fixed scaling from the
  train images' mean and std is stored with the weights.
* **Cached** on disk by everything the weights depend on (data key, image size, settings, seed,
  version), written atomically; training is seeded (one CPU generator for every draw).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.training import atomic_torch_save

__all__ = ["ENCODER_VERSION", "RealismEncoder", "RealismSettings", "encoder_key", "load_or_train", "settings_for",
           "train_encoder"]

ENCODER_VERSION = "realism-vicreg-v1"  # bump when the network, views or loss change


@dataclass(frozen=True)
class RealismSettings:
    """The training budget and shape of the encoder (part of its cache key)."""

    widths: tuple[int, ...] = (16, 32, 64, 96)
    steps: int = 120
    batch_size: int = 48
    crop: int = 64
    lr: float = 2e-3
    max_scale: float = 0.1  # intensity views: x * (1 +- max_scale) +- max_shift
    max_shift: float = 0.05

    def __post_init__(self) -> None:
        if self.steps < 3 or self.batch_size < 2 or self.crop < 8 or not self.widths:
            raise ValueError(f"realism encoder settings need steps >= 3, batch_size >= 2, crop >= 8 and widths: {self}")


# per profile: quick trains in ~20 s on a 2-core CPU (763 images at 128 px); smoke in ~2 s (not meaningful)
PROFILE_SETTINGS = {
    "smoke": RealismSettings(steps=20, batch_size=16, crop=32),
    "quick": RealismSettings(),
    "paper": RealismSettings(widths=(32, 64, 128, 192), steps=1500, batch_size=128, crop=96),
}


def settings_for(profile: str) -> RealismSettings:
    """The profile's encoder settings; a profile of the user's own gets the quick budget."""
    return PROFILE_SETTINGS.get(profile, PROFILE_SETTINGS["quick"])


class RealismEncoder(nn.Module):
    """(N,1,H,W) floats in [0,1], any size -> (N, sum(widths)) features: the spatial mean of each
    stage's ReLU activations. Stage 1 keeps full resolution; each later stage halves it."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        stages, channels = [], 1
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(nn.Conv2d(channels, width, 3, 1 if i == 0 else 2, 1, bias=False),
                                        nn.BatchNorm2d(width), nn.ReLU(inplace=True)))
            channels = width
        self.stages = nn.ModuleList(stages)
        self.register_buffer("pixel_mean", torch.tensor(0.0))
        self.register_buffer("pixel_std", torch.tensor(1.0))

    @property
    def dim(self) -> int:
        return sum(s[0].out_channels for s in self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.pixel_mean) / self.pixel_std
        pooled = []
        for stage in self.stages:
            h = stage(h)
            pooled.append(h.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def _projector(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Linear(256, 256))


def _vicreg(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VICReg (Bardes et al., ICLR 2022) with its published weights 25/25/1."""
    invariance = F.mse_loss(z1, z2)
    variance = covariance = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(dim=0)
        std = torch.sqrt(z.var(dim=0) + 1e-4)
        variance = variance + F.relu(1 - std).mean()
        cov = (z.T @ z) / (z.shape[0] - 1)
        off = cov - torch.diag(torch.diag(cov))
        covariance = covariance + off.pow(2).sum() / z.shape[1]
    return 25 * invariance + 25 * variance + covariance


def _views(images: torch.Tensor, index: torch.Tensor, s: RealismSettings, g: torch.Generator) -> torch.Tensor:
    """Crops at the images' own scale, flips and a small intensity change; no blur, noise or resizing."""
    n, h, w = index.numel(), images.shape[-2], images.shape[-1]
    crop = min(s.crop, h, w)
    top = torch.randint(0, h - crop + 1, (n,), generator=g)
    left = torch.randint(0, w - crop + 1, (n,), generator=g)
    out = torch.stack([images[i, :, t:t + crop, l:l + crop] for i, t, l in zip(index.tolist(), top.tolist(),
                                                                                  left.tolist())])
    flip_h = torch.rand(n, generator=g) < 0.5
    flip_v = torch.rand(n, generator=g) < 0.5
    out = torch.where(flip_h[:, None, None, None], out.flip(-1), out)
    out = torch.where(flip_v[:, None, None, None], out.flip(-2), out)
    scale = 1 + s.max_scale * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    shift = s.max_shift * (2 * torch.rand(n, 1, 1, 1, generator=g) - 1)
    return (out * scale + shift).clamp(0, 1)


def train_encoder(images: torch.Tensor, settings: RealismSettings, seed: int,
                  logger: logging.Logger | None = None) -> RealismEncoder:
    """Train on (N,1,H,W) floats in [0,1] on the CPU; same images, settings and seed -> same weights."""
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[0] < 2:
        raise ValueError(f"the realism encoder needs >= 2 images shaped (N,1,H,W), got {tuple(images.shape)}")
    images = images.detach().float().cpu().clamp(0, 1)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # weight initialisation
    encoder = RealismEncoder(settings.widths)
    encoder.pixel_mean.fill_(float(images.mean()))
    encoder.pixel_std.fill_(float(images.std()) + 1e-6)
    projector = _projector(encoder.dim)
    params = [*encoder.parameters(), *projector.parameters()]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-4)
    warm_up = max(0.1, 2 / settings.steps)  # one-cycle needs >= 1 step up and >= 1 step down
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps, pct_start=warm_up)
    batch = min(settings.batch_size, images.shape[0])
    started = time.perf_counter()
    encoder.train()
    projector.train()
    for step in range(settings.steps):
        index = torch.randperm(images.shape[0], generator=g)[:batch]
        z1 = projector(encoder(_views(images, index, settings, g)))
        z2 = projector(encoder(_views(images, index, settings, g)))
        loss = _vicreg(z1, z2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if logger is not None and (step + 1) % max(1, settings.steps // 4) == 0:
            logger.info("realism encoder step %d/%d: VICReg loss %.3f", step + 1, settings.steps, loss.item())
    if logger is not None:
        logger.info("realism encoder trained in %.1f s (%d images, %d steps)", time.perf_counter() - started,
                    images.shape[0], settings.steps)
    return encoder.eval().requires_grad_(False)


def encoder_key(data_key: str, image_size: tuple[int, int], settings: RealismSettings, seed: int) -> str:
    """What the weights depend on: the train data (e.g. the split hash), their size, settings, seed."""
    blob = json.dumps({"version": ENCODER_VERSION, "data": data_key, "size": list(image_size),
                       "settings": asdict(settings), "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_or_train(images: torch.Tensor, data_key: str, settings: RealismSettings, seed: int, cache_dir: Path,
                  logger: logging.Logger) -> tuple[RealismEncoder, str]:
    """The cached encoder for (data, size, settings, seed) or a newly trained one; and its key.
    An unreadable cache file is retrained over, never an error."""
    key = encoder_key(data_key, tuple(images.shape[-2:]), settings, seed)
    path = Path(cache_dir) / "realism-encoder" / f"{key}.pt"
    if path.is_file():
        try:
            encoder = RealismEncoder(settings.widths)
            encoder.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            logger.info("realism encoder: reusing %s", path)
            return encoder.eval().requires_grad_(False), key
        except Exception as exc:  # a truncated or foreign file is only a cache miss
            logger.warning("realism encoder: ignoring unreadable cache %s: %s", path.name, exc)
    logger.info("realism encoder: training on %d train images into %s", images.shape[0], path)
    encoder = train_encoder(images, settings, seed, logger)
    atomic_torch_save(encoder.state_dict(), path)
    return encoder, key
