"""The registered method ``gaussian-ddpm``: Gaussian partial diffusion of the whole slice.

No single paper's method, and named for what it is: a DDPM trained on healthy slices with
Gaussian noise; a slice is noised to ``noise_level`` and denoised back (:mod:`generative.diffusion`).
This is the Gaussian-noise variant that AnoDDPM (Wyatt et al., 2022) compares simplex noise
against, and the whole-slice DDPM baseline of pDDPM (Behrendt et al., 2023), whose network and
noise level its paper profile takes. Its quick budget (chain start 41, 3 DDIM steps) was chosen
on development seed 100 before issue 24 (docs/protocol.md).
"""

from __future__ import annotations

from generative.diffusion import DiffusionMethod, DiffusionSettings
from harness.api import register_method

PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "channels": (8, 8), "attention_levels": 0, "train_timesteps": 100,
              "noise_level": 30, "max_train_timestep": 40, "inference_steps": 2, "epochs": 2, "batch_size": 8},
    "paper": {"image_size": 128, "channels": (128, 256, 256), "attention_levels": 1, "res_blocks": 2,
              "noise_level": 500, "max_train_timestep": 0, "sampler": "ddpm", "epochs": 1600, "batch_size": 32,
              "lr": 1e-4, "cpu_bf16": False},
}


@register_method("gaussian-ddpm")
class GaussianDDPMMethod(DiffusionMethod):
    description = ("Gaussian partial diffusion (MONAI DiffusionModelUNet): noise the whole slice to a partial "
                   "timestep with Gaussian noise, denoise it back; anomaly map = residual with Baur et al.'s "
                   "post-processing, image score = its mean (gaussian-ddpm+tuned: map and aggregate chosen on val "
                   "lesion masks)")
    paper = ("Ho et al., NeurIPS 2020 (DDPM), used as Wyatt et al., CVPR-W 2022's Gaussian partial-diffusion "
             "ablation; paper profile: Behrendt et al., MIDL 2023's whole-slice DDPM")
    departures = ("2D slices at 64 px; quick: noised to t=41 of 1000 (not 500), 3 DDIM steps, training t < 300, "
                  "16-32-32 channels, 12 epochs")
    Settings = DiffusionSettings
    profile_defaults = PROFILE_DEFAULTS
