"""PatchCore (Roth et al., CVPR 2022): nearest-neighbour distance of each patch's mid-level
backbone features to a coreset of the healthy training patches.

Why it is here: feature-modelling methods lead brain-MRI anomaly benchmarks (BMAD: PatchCore
91.6 image AUROC on BraTS2021), so a harness without one understates what unsupervised
detection reaches. The backbone is a torchvision ImageNet network from a user's file (its
sha256 checked while settings are validated, before any data is loaded; never downloaded) or,
without a file, the same network randomly initialised; run.json records which.

``fit`` keeps every layer2 + layer3 patch feature of the no_tumor train images
(:mod:`baselines.patchcore_features`), optionally randomly projected, and subsamples them by
greedy k-center coreset (:mod:`baselines.coreset`) into the memory bank. ``score``: each test
patch's distance to its nearest bank entry, upsampled to the image, gaussian-smoothed (sigma 4 px
at 224 px, scaled with the size), zero outside the brain; the image score is the map's maximum,
optionally with the paper's neighbourhood reweighting. Nothing is chosen on validation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from baselines.coreset import greedy_coreset, nearest_neighbours, random_projection
from baselines.patchcore_features import ARCHITECTURES, PatchFeatures, build_backbone, check_weights_file
from harness.api import FitContext, ImageSet, KnownWeights, Method, MethodSettings, ScoreOutput, register_method
from harness.imaging import blur, gaussian_kernel
from harness.training import progress

_PAPER_SIZE = 224  # the paper's input size, which its smoothing sigma refers to


class PatchCoreSettings(MethodSettings):
    """The quick profile's values; ``PatchCore.profile_defaults`` has smoke and paper."""

    architecture: Literal["wide_resnet50_2", "resnet18"] = Field(
        "wide_resnet50_2", description="torchvision backbone (wide_resnet50_2 as the paper)")
    # "auto": imagenet-file when weights is given, else random. A new source (e.g. an encoder
    # trained on the run's own train split) is a new value here and a branch in PatchCore._backbone
    backbone: Literal["auto", "imagenet-file", "random"] = Field(
        "auto", description="where the backbone's weights come from")
    weights: str | None = Field(None, description="path to torchvision's ImageNet state dict, e.g. "
                                                  "wide_resnet50_2-95faca4d.pth (never downloaded)")
    weights_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{8,64}$",
                                       description="expected sha256 (or a prefix) of the weights file; "
                                                   "default: the hash prefix in its torchvision name")
    image_size: int = Field(128, ge=32, le=512, description="backbone input size (px); layer2's grid is 1/8 of it")
    patch_size: int = Field(3, ge=1, le=7, description="local neighbourhood averaged into each patch feature")
    feature_dim: int | None = Field(None, ge=8, description="seeded random projection of the patch features "
                                                            "(None: all layer2 + layer3 channels)")
    # quick 5% (the paper's main variant is 10%): development seeds 100-102 (docs/protocol.md),
    # validation AUROC +0.016 on average against 10%, fit + score 138 s -> 83 s on 2 CPU cores
    coreset_fraction: float = Field(0.05, gt=0, le=1, description="share of train patches kept in the memory bank")
    coreset_projection_dim: int = Field(128, ge=2, description="random projection the coreset is selected in")
    smoothing_sigma_at_224px: float = Field(4.0, ge=0, description="gaussian sigma of the map (px at 224 px, "
                                                                   "scaled with the size; 0: none)")
    reweight: bool = Field(False, description="the paper's image-score reweighting by the nearest "
                                              "bank entry's neighbourhood density")
    reweight_neighbours: int = Field(9, ge=2, description="b: bank neighbours of the reweighting")
    batch_size: int = Field(16, ge=1, description="images per backbone forward pass")

    @model_validator(mode="after")
    def _weights_source(self) -> PatchCoreSettings:
        """Refuse contradictions and a weights file that is not the one named, now, before any
        data is loaded (a wrong file would otherwise surface after minutes, or never)."""
        if self.backbone == "random" and self.weights:
            raise ValueError("backbone='random' contradicts weights=...; drop one of them")
        if self.backbone == "imagenet-file" and not self.weights:
            raise ValueError(f"backbone='imagenet-file' needs weights=PATH to torchvision's "
                             f"{ARCHITECTURES[self.architecture].weights_file}")
        if self.weights_sha256 and not self.weights:
            raise ValueError("weights_sha256 is given but weights (the file to check) is not")
        if self.weights:
            check_weights_file(self.weights, self.weights_sha256)
        return self

    @property
    def source(self) -> str:
        """The backbone source ``auto`` resolves to."""
        if self.backbone != "auto":
            return self.backbone
        return "imagenet-file" if self.weights else "random"


@register_method("patchcore")
class PatchCore(Method):
    capabilities = frozenset({"scores", "maps"})
    supervision = "healthy_only"
    description = ("PatchCore: kNN distance of layer2+3 patch features to a greedy coreset of healthy train "
                   "patches; backbone = ImageNet weights from a checked file, or random init (run.json says which).")
    paper = "Roth et al., Towards Total Recall in Industrial Anomaly Detection, CVPR 2022"
    departures = ("grey slices repeated to RGB, 128 px and a 5% coreset in the quick profile (paper: 224, 10%); without a "
                  "weights file a random-init "
                  "backbone; image score = max of the smoothed, brain-masked map (reweighting optional)")
    Settings = PatchCoreSettings
    weights = (KnownWeights("wide_resnet50_2", ARCHITECTURES["wide_resnet50_2"].weights_file,
                            ARCHITECTURES["wide_resnet50_2"].url,
                            "patchcore backbone (torchvision ImageNet wide_resnet50_2, the paper's)",
                            "--set patchcore.weights=PATH"),)
    profile_defaults = {
        # a smoke cohort has a few thousand train patches: 5% leaves too few bank entries to cover
        # healthy tissue (the obvious-lesion test's map then peaks outside the lesion)
        "smoke": {"architecture": "resnet18", "image_size": 64, "coreset_fraction": 0.1},
        "paper": {"image_size": 224, "coreset_fraction": 0.1},
    }

    def __init__(self, settings: PatchCoreSettings | None = None) -> None:
        super().__init__(settings)
        self.extractor: PatchFeatures | None = None
        self.projection: torch.Tensor | None = None
        self.bank: torch.Tensor | None = None
        self.device = torch.device("cpu")
        self.progress = False
        self.selected: dict[str, Any] = {}

    def _backbone(self, seed: int) -> tuple[torch.nn.Module, str]:
        """The backbone network and a sentence saying where its weights came from."""
        s: PatchCoreSettings = self.settings
        if s.source == "imagenet-file":
            sha = check_weights_file(str(s.weights), s.weights_sha256)
            return build_backbone(s.architecture, s.weights, seed), f"ImageNet weights from {s.weights} sha256 {sha}"
        return build_backbone(s.architecture, None, seed), f"random init (seed {seed}): no weights file"

    def _features(self, images: torch.Tensor, desc: str) -> torch.Tensor:
        """(N, 1, s, s) -> (N, h, w, D) patch features (projected when ``feature_dim`` is set), on CPU."""
        assert self.extractor is not None
        out = []
        batches = range(0, len(images), self.settings.batch_size)
        for start in progress(batches, total=len(batches), desc=desc, enabled=self.progress, unit="batch"):
            f = self.extractor(images[start:start + self.settings.batch_size].to(self.device))
            f = f.permute(0, 2, 3, 1)
            if self.projection is not None:
                f = f @ self.projection
            out.append(f.cpu())
        return torch.cat(out)

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        s: PatchCoreSettings = self.settings
        healthy = train.of_label(0).resized(s.image_size).images.float()
        if len(healthy) == 0:
            raise ValueError("patchcore models healthy (no_tumor) patches; the train split has none")
        self.device, self.progress = ctx.device, ctx.progress
        t0 = time.perf_counter()
        backbone, source = self._backbone(ctx.seed)
        self.extractor = PatchFeatures(backbone, s.patch_size).to(self.device).eval()
        dim = ARCHITECTURES[s.architecture].dim
        self.projection = (random_projection(dim, s.feature_dim, ctx.seed, self.device)
                           if s.feature_dim is not None and s.feature_dim < dim else None)
        features = self._features(healthy, "patchcore features")
        grid = tuple(features.shape[1:3])
        patches = features.reshape(-1, features.shape[-1])
        t1 = time.perf_counter()
        n_bank = max(1, math.ceil(s.coreset_fraction * len(patches)))
        keep = greedy_coreset(patches.to(self.device), n_bank, ctx.seed, s.coreset_projection_dim)
        self.bank = patches[keep.cpu()].to(self.device)
        t2 = time.perf_counter()
        self.selected = {
            "backbone": s.architecture, "backbone_source": source, "image_size": s.image_size,
            "patch_grid": list(grid), "feature_dim": int(patches.shape[1]), "train_images": len(healthy),
            "train_patches": len(patches), "memory_bank": n_bank, "coreset_fraction": s.coreset_fraction,
            "reweight": s.reweight, "seconds_features": round(t1 - t0, 2), "seconds_coreset": round(t2 - t1, 2),
        }
        ctx.logger.info("patchcore: %s %s; %d healthy images -> %d patches %s x %d -> memory bank %d "
                        "(features %.1fs, coreset %.1fs)", s.architecture, source, len(healthy), len(patches),
                        grid, patches.shape[1], n_bank, t1 - t0, t2 - t1)

    def score(self, images: ImageSet) -> ScoreOutput:
        if self.extractor is None or self.bank is None:
            raise RuntimeError("patchcore: call fit() before score()")
        s: PatchCoreSettings = self.settings
        if len(images) == 0:
            return ScoreOutput(scores=np.zeros(0), maps=np.zeros((0, *images.images.shape[-2:]), np.float32))
        features = self._features(images.resized(s.image_size).images.float(), "patchcore scoring")
        n, h, w, d = features.shape
        dist, nearest = nearest_neighbours(features.reshape(-1, d).to(self.device), self.bank)
        patch_scores = dist.cpu().view(n, 1, h, w)
        size = tuple(images.images.shape[-2:])
        maps = F.interpolate(patch_scores, size=size, mode="bilinear", align_corners=False)
        sigma = s.smoothing_sigma_at_224px * size[-1] / _PAPER_SIZE
        if sigma > 0:
            maps = blur(maps, gaussian_kernel(sigma))
        maps = maps * images.brain.float()
        scores = maps.flatten(1).amax(dim=1).double()
        if s.reweight:
            scores = scores * self._reweighting(features, patch_scores, nearest.cpu().view(n, h, w), images)
        return ScoreOutput(scores=scores.numpy(), maps=maps[:, 0].numpy().astype(np.float32))

    def _reweighting(self, features: torch.Tensor, patch_scores: torch.Tensor, nearest: torch.Tensor,
                     images: ImageSet) -> torch.Tensor:
        """The paper's Eq. 7 weight per image, at its most anomalous in-brain patch m: with m* its
        nearest bank entry and N_b(m*) the b bank entries nearest m*, w = 1 - softmax over N_b of
        ||m - n||, taken at m* (close to 1 - 1/b in dense regions, near 1 where m* is isolated)."""
        assert self.bank is not None
        n, h, w, d = features.shape
        inside = F.adaptive_max_pool2d(images.brain.float(), (h, w)).view(n, -1) > 0
        scored = torch.where(inside, patch_scores.view(n, -1), -torch.inf)
        top = scored.argmax(dim=1)
        rows = torch.arange(n)
        m = features.view(n, h * w, d)[rows, top].to(self.device)
        m_star = nearest.view(n, -1)[rows, top].to(self.device)
        b = min(self.settings.reweight_neighbours, len(self.bank))
        support = torch.cdist(self.bank[m_star], self.bank).topk(b, dim=1, largest=False).indices
        to_support = (self.bank[support] - m[:, None, :]).norm(dim=-1)
        return (1 - torch.softmax(to_support.double(), dim=1)[:, 0]).cpu()

    def selection(self) -> dict[str, Any]:
        return dict(self.selected)
