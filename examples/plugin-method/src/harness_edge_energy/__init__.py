"""An example plugin method: how much sharp structure an image holds inside its brain mask.

Lesion rims and oedema borders add edges that healthy tissue lacks, so a high percentile of the
gradient magnitude is a (weak) anomaly score. It learns nothing; its point is to show the whole
plugin surface: typed settings with per-profile defaults, capabilities, a map, a selection record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from harness.api import FitContext, ImageSet, Method, MethodSettings, ScoreOutput

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


class EdgeEnergySettings(MethodSettings):
    percentile: float = Field(99.0, ge=50.0, le=100.0, description="brain percentile of the edge map")
    blur_px: int = Field(1, ge=0, le=5, description="box blur radius before the gradient (px)")


class EdgeEnergy(Method):
    capabilities = frozenset({"scores", "maps"})
    supervision = "none"
    description = "Example plugin: a high percentile of the in-brain gradient magnitude."
    Settings = EdgeEnergySettings
    profile_defaults = {"smoke": {"percentile": 95.0}}

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        ctx.logger.info("edge-energy: nothing to train (percentile %.1f)", self.settings.percentile)

    def score(self, images: ImageSet) -> ScoreOutput:
        x = images.images.float()
        r = self.settings.blur_px
        if r:
            x = F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)
        padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
        gx = F.conv2d(padded, _SOBEL.view(1, 1, 3, 3))
        gy = F.conv2d(padded, _SOBEL.t().reshape(1, 1, 3, 3))
        edges = torch.sqrt(gx ** 2 + gy ** 2) * images.brain
        inside = torch.where(images.brain.flatten(1), edges.flatten(1), torch.nan)
        scores = torch.nanquantile(inside.double(), self.settings.percentile / 100, dim=1).nan_to_num(0.0)
        return ScoreOutput(scores=scores.numpy(), maps=edges[:, 0].numpy().astype(np.float32))

    def selection(self) -> dict[str, Any]:
        return {"percentile": self.settings.percentile, "blur_px": self.settings.blur_px}
