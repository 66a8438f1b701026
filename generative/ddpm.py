"""The registered method ``ddpm``: diffusion reconstruction, AnoDDPM / pDDPM style, on MONAI.

A denoising diffusion model is trained on healthy slices (MONAI's ``DiffusionModelUNet``, its
``DDPMScheduler`` for the forward process and ``DiffusionInferer`` for the training pass). To
reconstruct a slice it is noised only part of the way, to timestep ``noise_level`` of
``train_timesteps``, and denoised back to step 0 (``DDIMScheduler`` with a few steps in the
quick profile, the full ancestral ``DDPMScheduler`` chain in the paper profile), so the coarse
anatomy survives the noise while lesion-sized detail is re-drawn as healthy tissue; the
residual is the anomaly map (:mod:`harness.scoring`).

Like pDDPM (Behrendt et al., MIDL 2023) the network predicts the clean image (``sample``) and
is trained with an L1 loss; their published settings (T = 1000, test noise level 500, 128
base channels with multipliers 1-2-2) are the paper profile. Their patch-wise noising is not
built here: the whole slice is noised, as in AnoDDPM, with Gaussian noise.

Every reconstruction is deterministic: each image's starting noise comes from a generator
seeded by the run seed and the image's own bytes, so an image is reconstructed the same way
whichever batch or split it arrives in.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from pydantic import Field, model_validator
from torch import nn

from harness.api import register_method
from generative.reconstruction import ReconstructionMethod, ReconstructionSettings


class DDPMSettings(ReconstructionSettings):
    """Defaults are the quick profile; ``paper`` is pDDPM's published setting (whole-slice noising)."""

    channels: tuple[int, ...] = Field((16, 32, 32), min_length=2, description="UNet channels per level")
    attention: bool = Field(True, description="self-attention at the lowest level")
    res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    train_timesteps: int = Field(1000, ge=10, description="T of the noise schedule")
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = Field("linear_beta")
    prediction: Literal["sample", "epsilon"] = Field("sample", description="the network predicts x0 or the noise")
    loss_type: Literal["l1", "l2"] = Field("l1")
    noise_level: int = Field(60, ge=1, description="timestep a slice is noised to before denoising")
    max_train_timestep: int = Field(300, ge=0, description="train on timesteps below this only (0: all); "
                                    "reconstruction never visits those above noise_level")
    sampler: Literal["ddim", "ddpm"] = Field("ddim", description="denoising chain at inference")
    inference_steps: int = Field(3, ge=1, description="DDIM steps from noise_level to 0 (ddpm: all)")
    epochs: int = Field(12, ge=1, description="passes over the healthy train images")
    lr: float = Field(5e-4, gt=0, description="Adam learning rate (cosine decay to zero)")

    @model_validator(mode="after")
    def _consistent(self) -> DDPMSettings:
        if self.noise_level >= self.train_timesteps:
            raise ValueError(f"noise_level {self.noise_level} must be below train_timesteps {self.train_timesteps}")
        if self.max_train_timestep and not self.noise_level < self.max_train_timestep <= self.train_timesteps:
            raise ValueError(f"max_train_timestep {self.max_train_timestep} must be above noise_level "
                             f"{self.noise_level} and at most train_timesteps {self.train_timesteps}")
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise ValueError(f"image_size {self.image_size} must be a multiple of 2**(levels-1)")
        if any(c % _groups(self.channels) for c in self.channels):
            raise ValueError(f"channels {self.channels} must share a group-norm divisor of at least 4")
        return self


PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "channels": (8, 8), "attention": False, "train_timesteps": 100,
              "noise_level": 30, "max_train_timestep": 40, "inference_steps": 2, "epochs": 2, "batch_size": 8},
    "paper": {"image_size": 128, "channels": (128, 256, 256), "attention": True, "res_blocks": 2,
              "noise_level": 500, "max_train_timestep": 0, "sampler": "ddpm", "epochs": 1600, "batch_size": 32,
              "lr": 1e-4, "cpu_bf16": False},
}


def _groups(channels: tuple[int, ...]) -> int:
    """Group-norm groups: 32 as MONAI's default when every level allows it, else a smaller divisor."""
    for groups in (32, 16, 8, 4):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1


def content_seed(seed: int, image: torch.Tensor) -> int:
    """A seed from the run seed and an image's bytes: the same image always gets the same noise."""
    return zlib.crc32(image.detach().cpu().float().numpy().tobytes(), seed % 2**32)


@register_method("ddpm")
class DDPMMethod(ReconstructionMethod):
    description = ("Diffusion reconstruction (AnoDDPM/pDDPM style, MONAI DiffusionModelUNet): noise a slice "
                   "to a partial timestep, denoise it back; anomaly map = residual (chosen on val)")
    Settings = DDPMSettings
    profile_defaults = PROFILE_DEFAULTS

    def build(self) -> nn.Module:
        s = self.settings
        levels = len(s.channels)
        return DiffusionModelUNet(
            spatial_dims=2, in_channels=1, out_channels=1, channels=s.channels,
            attention_levels=tuple(s.attention and i == levels - 1 for i in range(levels)),
            num_res_blocks=s.res_blocks, norm_num_groups=_groups(s.channels),
            num_head_channels=s.channels[-1])

    def _train_scheduler(self) -> DDPMScheduler:
        s = self.settings
        return DDPMScheduler(num_train_timesteps=s.train_timesteps, schedule=s.schedule,
                             prediction_type=s.prediction)

    def loss(self, model: nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = self.settings
        x0 = x * 2 - 1
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        t = torch.randint(0, s.max_train_timestep or s.train_timesteps, (len(x0),), generator=g).to(x0.device)
        pred = DiffusionInferer(self._train_scheduler())(inputs=x0, diffusion_model=model, noise=noise,
                                                         timesteps=t).float()
        target = x0 if s.prediction == "sample" else noise
        return F.l1_loss(pred, target) if s.loss_type == "l1" else F.mse_loss(pred, target)

    def _inference_scheduler(self) -> DDIMScheduler | DDPMScheduler:
        """The denoising chain from ``noise_level`` down to 0: its timesteps are truncated to
        those at or below the noise level (the first of them is where the noise is added)."""
        s = self.settings
        kind = DDIMScheduler if s.sampler == "ddim" else DDPMScheduler
        scheduler = kind(num_train_timesteps=s.train_timesteps, schedule=s.schedule, prediction_type=s.prediction)
        n = s.train_timesteps
        if s.sampler == "ddim":  # the coarsest grid with inference_steps steps at or below the noise level
            n = min(s.train_timesteps, math.ceil(s.inference_steps * s.train_timesteps / (s.noise_level + 1)))
        while True:
            scheduler.set_timesteps(n)
            steps = scheduler.timesteps[scheduler.timesteps <= s.noise_level]
            if (len(steps) >= s.inference_steps and steps[0] > 0) or n == s.train_timesteps:
                break
            n += 1  # too coarse: the chain would start below noise_level's grid point or at step 0
        scheduler.timesteps = steps
        return scheduler

    def reconstruct_batch(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        scheduler = self._inference_scheduler()
        start = scheduler.timesteps[:1]
        x0 = x * 2 - 1
        noise = torch.stack([torch.randn(image.shape, generator=torch.Generator().manual_seed(
            content_seed(self.seed, image))) for image in x]).to(x0.device)
        noisy = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=start.repeat(len(x0)))
        with torch.random.fork_rng(devices=[]):  # the DDPM chain draws from the global RNG
            torch.manual_seed(content_seed(self.seed, x))
            out = DiffusionInferer(scheduler).sample(input_noise=noisy, diffusion_model=model,
                                                     scheduler=scheduler, verbose=False)
        return (out.float() + 1) / 2

    def extra_selection(self) -> dict[str, object]:
        s = self.settings
        steps = self._inference_scheduler().timesteps
        return {"noise_level": int(steps[0]), "sampler": s.sampler, "denoising_steps": int(len(steps)),
                "prediction": s.prediction}

