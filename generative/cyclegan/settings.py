"""The CycleGAN's settings and its per-profile defaults (the class defaults are the quick profile)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.api import MethodSettings


class CycleGANSettings(MethodSettings):
    """Defaults are the quick profile (tuned for a 2-core CPU); ``paper`` is the reference.

    Training runs ``epochs`` at ``lr`` then ``decay_epochs`` of linear decay to zero:
    ``epochs + decay_epochs`` epochs in all, each one pass over the larger domain.
    """

    image_size: int = Field(64, ge=16, description="training and translation size (px)")
    ngf: int = Field(32, ge=1, description="generator filters")
    ndf: int = Field(32, ge=1, description="discriminator filters")
    n_blocks: int = Field(6, ge=1, description="generator residual blocks")
    d_layers: int = Field(0, ge=0, le=5, description=(
        "PatchGAN depth; 0: from image_size, so the receptive field stays a patch (34 px at 64, 70 at 128-256)"))
    # quick 4+2 (was 8+4) so the quick run --all fits 20 min on 2 cores: docs/protocol.md, issue 24
    epochs: int = Field(4, ge=0, description="epochs at the base learning rate")
    decay_epochs: int = Field(2, ge=0, description="epochs of linear decay to zero")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(2e-4, gt=0)
    lambda_cycle: float = Field(10.0, ge=0)
    lambda_identity: float = Field(0.5, ge=0)
    pool_size: int = Field(50, ge=0, description="history of generated images shown to the discriminators")
    upsample: Literal["resize", "transpose"] = Field(
        "resize", description="resize+conv (no checkerboards) or transpose conv (the reference)")
    max_train_per_domain: int = Field(0, ge=0, description="0: all train images")
    sample_every: int = Field(4, ge=1, description="epochs between sample grids")
    cpu_bf16: bool = Field(True, description="bf16 autocast when training on CPU")


PROFILE_DEFAULTS = {
    "smoke": {"image_size": 32, "ngf": 8, "ndf": 8, "n_blocks": 2, "epochs": 2, "decay_epochs": 1,
              "batch_size": 4, "max_train_per_domain": 48, "sample_every": 1},
    "paper": {"image_size": 256, "ngf": 64, "ndf": 64, "n_blocks": 9, "epochs": 100, "decay_epochs": 100,
              "batch_size": 1, "sample_every": 5, "upsample": "transpose", "cpu_bf16": False},
}
