"""The registered method ``pddpm``: patched DDPM (Behrendt et al., MIDL 2023).

A DDPM trained on healthy slices to predict the clean image (L1 loss, cosine schedule,
T = 1000) where only one patch is noised and the rest of the slice stays clean as context; the
loss covers that patch alone. At inference each patch of a fixed grid is noised in turn to
t = 500 (index 499, as the authors' code passes ``test_timesteps - 1``), the clean image is
predicted in one pass (pDDPM's reconstruction), and the patch's denoised pixels are kept; the
kept cells tile the slice, so every pixel is reconstructed exactly once, and the stitched image
is the healthy version whose residual is the map (:mod:`generative.diffusion`).

Patch geometry follows the authors' MIDL23 configuration: 48 px patches (half the side of
their 96 px slices) on a grid, non-overlapping at inference; their configuration uses simplex
noise, whose parameters are not in their published source, so AnoDDPM's are used, scaled to the
slice size. ``patch_stride`` below ``patch_size`` gives overlapping patches whose centre cell is
kept (their ``cut`` aggregation). The paper profile is their setting: 128 base channels with
multipliers 1-2-2, 3 residual blocks, no attention, batch 32, lr 1e-4, 1600 epochs.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from generative.diffusion import DiffusionMethod, DiffusionSettings, Region
from harness.api import register_method


class PDDPMSettings(DiffusionSettings):
    """Defaults are the quick profile (see docs/protocol.md, issue 24)."""

    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = Field("cosine")
    noise: Literal["gaussian", "simplex"] = Field("simplex", description="noise of the forward process")
    simplex_octaves: int = Field(4, ge=1, description="simplex noise: layers summed (AnoDDPM: 6 at 256 px)")
    simplex_frequency: float = Field(16.0, gt=0, description="simplex noise: first layer's coordinate divisor "
                                     "in px (AnoDDPM: 64 at 256 px)")
    noise_level: int = Field(499, ge=1, description="timestep a patch is noised to (pDDPM: 500, index 499)")
    max_train_timestep: int = Field(0, ge=0, description="train on timesteps below this only (0: all)")
    sampler: Literal["ddim", "ddpm", "one_step"] = Field("one_step", description="reverse chain per patch: "
                                                          "one x0 prediction (pDDPM), DDIM steps or the full chain")
    patch_size: int = Field(32, ge=2, description="side of the noised square patch in px (pDDPM: half the slice)")
    patch_stride: int = Field(0, ge=0, description="grid step in px; the kept cells are stride x stride "
                              "(0: patch_size, non-overlapping as pDDPM)")
    # quick 20: 12 was tried for the quick run's 20 minutes and lost validation AUROC on development
    # seed 100 (docs/protocol.md, "Quick budgets for the 20-minute run")
    epochs: int = Field(20, ge=1, description="passes over the healthy train images")

    @model_validator(mode="after")
    def _patches_fit(self) -> PDDPMSettings:
        if self.patch_size > self.image_size:
            raise ValueError(f"patch_size {self.patch_size} must be at most image_size {self.image_size}")
        if self.patch_stride > self.patch_size:
            raise ValueError(f"patch_stride {self.patch_stride} must be at most patch_size {self.patch_size}: "
                             "a larger step would leave pixels no patch noises")
        return self


PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "channels": (8, 8), "attention_levels": 0, "train_timesteps": 100,
              "noise_level": 49, "simplex_frequency": 8, "simplex_octaves": 3, "patch_size": 16, "epochs": 2,
              "batch_size": 8},
    "paper": {"image_size": 96, "channels": (128, 256, 256), "attention_levels": 0, "res_blocks": 3,
              "simplex_frequency": 24.0, "simplex_octaves": 5, "patch_size": 48, "epochs": 1600,
              "batch_size": 32, "lr": 1e-4, "cpu_bf16": False},
}


def patch_grid(size: int, patch: int, stride: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(noised box, kept box) pairs as (row0, row1, col0, col1): the kept cells, ``stride`` apart,
    tile the ``size`` x ``size`` slice; each noised box is the ``patch``-sided square centred on its
    cell, shifted to stay inside the slice, so it always contains the cell."""
    def spans() -> list[tuple[int, int, int, int]]:
        out = []
        for start in range(0, size, stride):
            end = min(start + stride, size)
            lo = min(max(start - (patch - (end - start)) // 2, 0), size - patch)
            out.append((lo, lo + patch, start, end))
        return out

    return [((r0, r1, c0, c1), (kr0, kr1, kc0, kc1))
            for r0, r1, kr0, kr1 in spans() for c0, c1, kc0, kc1 in spans()]


def _mask(size: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., box[0]:box[1], box[2]:box[3]] = True
    return mask


@register_method("pddpm")
class PDDPMMethod(DiffusionMethod):
    description = ("pDDPM: patch-wise noising at t=500 with the rest of the slice as context, reconstructed patch "
                   "by patch and stitched (MONAI DiffusionModelUNet); anomaly map = residual with Baur et al.'s "
                   "post-processing, image score = its mean (pddpm+tuned: map and aggregate chosen on val lesion "
                   "masks)")
    paper = "Behrendt et al., Patched Diffusion Models for Unsupervised Anomaly Detection in Brain MRI, MIDL 2023"
    departures = ("2D slices at 64 px (paper 96) with 32 px patches; simplex parameters AnoDDPM's scaled to the "
                  "slice (not published); quick: 16-32-32 channels, 1 residual block, attention at the lowest "
                  "level, 20 epochs")
    Settings = PDDPMSettings
    profile_defaults = PROFILE_DEFAULTS

    def _grid(self, size: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
        s = self.settings
        patch = round(s.patch_size * size / s.image_size)  # the same share of the slice at any size
        return patch_grid(size, patch, round((s.patch_stride or s.patch_size) * size / s.image_size))

    def train_regions(self, n: int, size: int, g: torch.Generator) -> torch.Tensor:
        """One patch of the grid per image, drawn from ``g`` (pDDPM's ``grid_boxes``)."""
        noised = torch.cat([_mask(size, box) for box, _ in self._grid(size)])
        return noised[torch.randint(0, len(noised), (n,), generator=g)]

    def patch_regions(self, size: int) -> list[Region]:
        return [(_mask(size, box), _mask(size, cell)) for box, cell in self._grid(size)]
