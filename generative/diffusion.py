"""What the diffusion reconstruction methods share (``gaussian-ddpm``, ``anoddpm``, ``pddpm``).

A denoising diffusion model (MONAI's ``DiffusionModelUNet``) is trained on healthy slices with
the forward process of MONAI's ``DDPMScheduler``. To reconstruct a slice it is noised only part
of the way, to timestep ``noise_level`` of ``train_timesteps``, and denoised back to step 0, so
coarse anatomy survives while lesion-sized structure is redrawn as healthy tissue; the residual
is the anomaly map (:mod:`harness.scoring`, through :mod:`generative.reconstruction`).

The three methods differ only in what this module makes settings of:

- ``noise``: Gaussian, or AnoDDPM's multi-octave simplex noise (:mod:`generative.simplex`),
  used alike for training, for the partial noising and for each ancestral step.
- ``sampler``: the reverse chain. ``ddpm`` is the full ancestral chain (posterior mean plus
  the chosen noise at every step, from the scheduler's own betas), ``ddim`` MONAI's
  ``DDIMScheduler`` with ``inference_steps`` deterministic steps, ``one_step`` a single
  prediction of the clean image from the noised one (pDDPM's reconstruction).
- ``regions``: the whole slice (default), or, in pDDPM, one patch at a time (a subclass
  overrides :meth:`DiffusionMethod.train_regions` and :meth:`DiffusionMethod.patch_regions`):
  only the patch is noised, the rest of the image stays clean as context, and only the patch's
  pixels enter the loss and the stitched reconstruction.

Every reconstruction is deterministic: each image's noise (the start noise and every ancestral
step) comes from a generator seeded by the run seed and the image's own bytes, so an image is
reconstructed the same way whichever batch or split it arrives in.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Literal

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from pydantic import Field, model_validator
from torch import nn

from generative.reconstruction import ReconstructionMethod, ReconstructionSettings
from generative.simplex import simplex_noise

# (noised region, kept region) boolean masks (1, 1, s, s); None: the whole slice, both
Region = tuple[torch.Tensor, torch.Tensor] | None


class DiffusionSettings(ReconstructionSettings):
    """Defaults are gaussian-ddpm's quick profile; each method's module sets its own."""

    channels: tuple[int, ...] = Field((16, 32, 32), min_length=2, description="UNet channels per level")
    attention_levels: int = Field(1, ge=0, description="self-attention at this many of the lowest levels")
    attention_heads: int = Field(1, ge=1, description="heads of each self-attention layer")
    res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    train_timesteps: int = Field(1000, ge=10, description="T of the noise schedule")
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = Field("linear_beta")
    prediction: Literal["sample", "epsilon"] = Field("sample", description="the network predicts x0 or the noise")
    loss_type: Literal["l1", "l2"] = Field("l1")
    noise: Literal["gaussian", "simplex"] = Field("gaussian", description="noise of the forward process")
    simplex_octaves: int = Field(6, ge=1, description="simplex noise: layers summed (AnoDDPM: 6)")
    simplex_frequency: float = Field(64.0, gt=0, description="simplex noise: first layer's coordinate divisor "
                                     "in px (AnoDDPM: 64 at 256 px)")
    simplex_persistence: float = Field(0.8, gt=0, le=1, description="simplex noise: amplitude ratio of "
                                       "successive layers (AnoDDPM: 0.8)")
    noise_level: int = Field(60, ge=1, description="timestep a slice is noised to before denoising")
    max_train_timestep: int = Field(300, ge=0, description="train on timesteps below this only (0: all); "
                                    "reconstruction never visits those above noise_level")
    sampler: Literal["ddim", "ddpm", "one_step"] = Field("ddim", description="reverse chain at inference: DDIM "
                                                          "steps, the full ancestral chain, or one x0 prediction")
    inference_steps: int = Field(3, ge=1, description="DDIM steps from noise_level to 0 (other samplers: unused)")
    epochs: int = Field(12, ge=1, description="passes over the healthy train images")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate (cosine decay to zero)")

    @model_validator(mode="after")
    def _consistent(self) -> DiffusionSettings:
        levels = len(self.channels)
        if self.noise_level >= self.train_timesteps:
            raise ValueError(f"noise_level {self.noise_level} must be below train_timesteps {self.train_timesteps}")
        if self.max_train_timestep and not self.noise_level < self.max_train_timestep <= self.train_timesteps:
            raise ValueError(f"max_train_timestep {self.max_train_timestep} must be above noise_level "
                             f"{self.noise_level} and at most train_timesteps {self.train_timesteps}")
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**(levels-1) = {2 ** (levels - 1)}")
        if self.attention_levels > levels:
            raise ValueError(f"attention_levels {self.attention_levels} exceeds the {levels} UNet levels")
        if any(c % _groups(self.channels) for c in self.channels):
            raise ValueError(f"channels {self.channels} must share a group-norm divisor of at least 4")
        if any(c % self.attention_heads for c in self.channels[levels - self.attention_levels:]):
            raise ValueError(f"attention_heads {self.attention_heads} must divide the channels of every "
                             f"attention level {self.channels[levels - self.attention_levels:]}")
        return self


def _groups(channels: tuple[int, ...]) -> int:
    """Group-norm groups: 32 as MONAI's default when every level allows it, else a smaller divisor."""
    for groups in (32, 16, 8, 4):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1


def content_seed(seed: int, image: torch.Tensor) -> int:
    """A seed from the run seed and an image's bytes: the same image always gets the same noise."""
    return zlib.crc32(image.detach().cpu().float().numpy().tobytes(), seed % 2**32)


class DiffusionMethod(ReconstructionMethod):
    """Base of the diffusion methods: see the module docstring."""

    Settings = DiffusionSettings

    # ------------------------------------------------------------------ network and schedules
    def build(self) -> nn.Module:
        s = self.settings
        levels = len(s.channels)
        attention = tuple(i >= levels - s.attention_levels for i in range(levels))
        return DiffusionModelUNet(
            spatial_dims=2, in_channels=1, out_channels=1, channels=s.channels, attention_levels=attention,
            num_res_blocks=s.res_blocks, norm_num_groups=_groups(s.channels),
            num_head_channels=tuple(c // s.attention_heads for c in s.channels))

    def forward_scheduler(self) -> DDPMScheduler:
        s = self.settings
        return DDPMScheduler(num_train_timesteps=s.train_timesteps, schedule=s.schedule,
                             prediction_type=s.prediction)

    def chain(self) -> list[int]:
        """The reverse chain's timesteps, from the one the slice is noised to down to 0 (one_step:
        just the noised timestep)."""
        s = self.settings
        if s.sampler == "one_step":
            return [s.noise_level]
        if s.sampler == "ddpm":
            return list(range(s.noise_level, -1, -1))
        return [int(t) for t in self._ddim().timesteps]

    def _ddim(self) -> DDIMScheduler:
        """MONAI's DDIM scheduler on the coarsest grid with ``inference_steps`` steps at or below
        the noise level, its timesteps truncated to those (the first is where noise is added)."""
        s = self.settings
        scheduler = DDIMScheduler(num_train_timesteps=s.train_timesteps, schedule=s.schedule,
                                  prediction_type=s.prediction)
        n = min(s.train_timesteps, math.ceil(s.inference_steps * s.train_timesteps / (s.noise_level + 1)))
        while True:
            scheduler.set_timesteps(n)
            steps = scheduler.timesteps[scheduler.timesteps <= s.noise_level]
            if (len(steps) >= s.inference_steps and steps[0] > 0) or n == s.train_timesteps:
                break
            n += 1  # too coarse: the chain would start below noise_level's grid point or at step 0
        scheduler.timesteps = steps
        return scheduler

    # ------------------------------------------------------------------ noise
    def draw_noise(self, n: int, size: int, g: torch.Generator) -> torch.Tensor:
        """``n`` noise fields (n, 1, size, size) of the configured kind, all drawn from ``g``."""
        s = self.settings
        if s.noise == "simplex":
            return simplex_noise(n, size, size, g, octaves=s.simplex_octaves, frequency=s.simplex_frequency,
                                 persistence=s.simplex_persistence)
        return torch.randn((n, 1, size, size), generator=g)

    def _per_image_noise(self, generators: list[torch.Generator], size: int) -> torch.Tensor:
        return torch.cat([self.draw_noise(1, size, g) for g in generators])

    # ------------------------------------------------------------------ regions (pDDPM overrides)
    def train_regions(self, n: int, size: int, g: torch.Generator) -> torch.Tensor | None:
        """Per training image, the (n, 1, s, s) mask that is noised and scored; None: all of it."""
        return None

    def patch_regions(self, size: int) -> list[Region]:
        """The regions an image is reconstructed in, one after another; their kept parts tile the slice."""
        return [None]

    # ------------------------------------------------------------------ training
    def loss(self, model: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = self.settings
        x0 = x * 2 - 1
        noise = self.draw_noise(len(x0), x0.shape[-1], g).to(x0.device)
        t = torch.randint(0, s.max_train_timestep or s.train_timesteps, (len(x0),), generator=g).to(x0.device)
        noisy = self.forward_scheduler().add_noise(original_samples=x0, noise=noise, timesteps=t)
        region = self.train_regions(len(x0), x0.shape[-1], g)
        if region is not None:
            region = region.to(x0.device)
            noisy = torch.where(region, noisy, x0)  # the rest of the slice is clean context
        pred = model(x=noisy, timesteps=t).float()
        target = x0 if s.prediction == "sample" else noise
        error = (pred - target).abs() if s.loss_type == "l1" else (pred - target).square()
        if region is None:
            return error.mean()
        return (error * region).sum() / region.sum().clamp(min=1)

    # ------------------------------------------------------------------ reconstruction
    def reconstruct_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        x0 = x * 2 - 1
        generators = [torch.Generator().manual_seed(content_seed(self.seed, image)) for image in x]
        noise = self._per_image_noise(generators, size).to(x0.device)  # one start noise per image, every patch
        out = torch.zeros_like(x0)
        for region in self.patch_regions(size):
            noised, kept = (None, None) if region is None else (r.to(x0.device) for r in region)
            denoised = self._denoise(model, x0, noise, noised, generators)
            out = denoised if kept is None else torch.where(kept, denoised, out)
        return (out.float() + 1) / 2

    def _denoise(self, model: nn.Module, x0: torch.Tensor, noise: torch.Tensor, region: torch.Tensor | None,
                 generators: list[torch.Generator]) -> torch.Tensor:
        """Noise ``x0`` (inside ``region``) to the chain's first timestep and run the chain."""
        s = self.settings
        steps = self.chain()
        ddpm = self.forward_scheduler()
        abar = ddpm.alphas_cumprod.to(x0.device)
        x = ddpm.add_noise(original_samples=x0, noise=noise, timesteps=torch.tensor(steps[:1]).repeat(len(x0)))
        ddim = self._ddim() if s.sampler == "ddim" else None
        for k, t in enumerate(steps):
            if region is not None:
                x = torch.where(region, x, x0)  # the context stays clean at every step
            out = model(x=x, timesteps=torch.full((len(x),), t, device=x.device, dtype=torch.long)).float()
            if ddim is not None:
                x, _ = ddim.step(out, t, x)
                continue
            x0_pred = out if s.prediction == "sample" else (x - (1 - abar[t]).sqrt() * out) / abar[t].sqrt()
            x0_pred = x0_pred.clamp(-1, 1)
            if s.sampler == "one_step" or t == 0:
                x = x0_pred
            else:  # ancestral step: posterior mean of q(x_{t-1} | x_t, x0) plus its variance in the chosen noise
                beta, prev = ddpm.betas[t].to(x.device), abar[t - 1]
                mean = (prev.sqrt() * beta * x0_pred + ddpm.alphas[t].to(x.device).sqrt() * (1 - prev) * x) / (1 - abar[t])
                variance = (beta * (1 - prev) / (1 - abar[t])).clamp(min=1e-20)
                x = mean + variance.sqrt() * self._per_image_noise(generators, x.shape[-1]).to(x.device)
        return torch.where(region, x, x0) if region is not None else x

    def extra_selection(self) -> dict[str, Any]:
        s = self.settings
        steps = self.chain()
        return {"noise": s.noise, "noise_level": steps[0], "sampler": s.sampler, "denoising_steps": len(steps),
                "prediction": s.prediction, "patches": len(self.patch_regions(s.image_size))}

