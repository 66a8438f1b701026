"""The degradation ladder: does a feature space see blur, noise and lost resolution?

A realism space is accepted only if degrading real images moves them away from other real
images in it. On each domain's real test images, split into subject-disjoint halves A and B
(:mod:`harness.metrics.subject_halves`, several seeded partitions), the ladder measures

    relative FID = mean FID(degraded A, B) / mean FID(A, B)

for Gaussian blur of sigma 0.5, 1 and 2 px, added Gaussian noise, JPEG at quality 30 and the 2x
down/up path methods that work at half size go through. Accepted when, in every domain with
halves, the blur levels (clean = 1, then 0.5, 1, 2 px) rise with Spearman >= 0.9 and blur 1 px
gives >= 2. FID is torch-fidelity's, on the features the space gives the generative rows.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch
from PIL import Image
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_featuresdict_to_statistics, fid_statistics_to_metric

from harness.imaging import blur, gaussian_kernel
from harness.metrics.subject_halves import subject_halves

__all__ = ["BLUR_SIGMAS", "LadderResult", "degrade", "run_ladder"]

BLUR_SIGMAS = (0.5, 1.0, 2.0)
NOISE_SD = 0.05  # of the [0, 1] intensity range
JPEG_QUALITY = 30
MIN_SPEARMAN = 0.9
MIN_BLUR_1PX = 2.0
PARTITIONS = 5
MAX_PER_HALF = 200
LEVELS = (*(f"blur {s:g} px" for s in BLUR_SIGMAS), f"noise sd {NOISE_SD:g}", f"JPEG q{JPEG_QUALITY}", "2x down/up")

Embed = Callable[[torch.Tensor], torch.Tensor]  # uint8 (N,1,H,W) -> features (N, D)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for image in images[:, 0].numpy():
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L")))
    return torch.from_numpy(np.stack(out))[:, None]


def _down_up(images: torch.Tensor) -> torch.Tensor:
    """Half size and back, antialiased bilinear: the path of a method working at half the size."""
    h, w = images.shape[-2:]
    small = torch.nn.functional.interpolate(images, size=(h // 2, w // 2), mode="bilinear", align_corners=False,
                                            antialias=True)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False,
                                           antialias=True)


def degrade(images: torch.Tensor, level: str, seed: int = 0) -> torch.Tensor:
    """One ladder level applied to uint8 (N,1,H,W) images; uint8 out."""
    if level.startswith("JPEG"):
        return _jpeg(images, JPEG_QUALITY)
    x = images.float() / 255.0
    if level.startswith("blur"):
        sigma = float(level.split()[1])
        x = blur(x, gaussian_kernel(sigma))
    elif level.startswith("noise"):
        x = x + NOISE_SD * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    elif level == "2x down/up":
        x = _down_up(x)
    else:
        raise ValueError(f"unknown ladder level {level!r}; known: {', '.join(LEVELS)}")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    sa = fid_featuresdict_to_statistics({"f": a.double()}, "f")
    sb = fid_featuresdict_to_statistics({"f": b.double()}, "f")
    return float(fid_statistics_to_metric(sa, sb, False)[KEY_METRIC_FID])


@dataclass(frozen=True)
class LadderResult:
    """Relative FID per domain and level, the blur Spearman per domain, and the verdict."""

    relative: dict[str, dict[str, float]]
    spearman: dict[str, float]
    images_per_half: dict[str, int]
    skipped: dict[str, str]  # domain -> why it has no ladder

    @property
    def passed(self) -> bool:
        return bool(self.relative) and all(
            self.spearman[d] >= MIN_SPEARMAN and self.relative[d]["blur 1 px"] >= MIN_BLUR_1PX for d in self.relative)

    def summary(self) -> str:
        """One line: the figures and the verdict (the run's notes and every row of the space)."""
        if not self.relative:
            why = "; ".join(f"{d}: {w}" for d, w in self.skipped.items()) or "no domain"
            return f"degradation ladder not run ({why}), so the space is NOT accepted as a realism measure"
        parts = []
        for d, rel in self.relative.items():
            figures = ", ".join(f"{level} {value:.2f}" for level, value in rel.items())
            parts.append(f"{d} (h={self.images_per_half[d]}): {figures}; blur Spearman {self.spearman[d]:.2f}")
        verdict = ("passed" if self.passed else
                   f"FAILED (needs blur Spearman >= {MIN_SPEARMAN} and blur 1 px >= {MIN_BLUR_1PX:g} in every "
                   f"domain), so its rows are NOT evidence of realism")
        skipped = "".join(f"; {d} skipped: {w}" for d, w in self.skipped.items())
        return f"degradation ladder {verdict}: relative FID of degraded real test halves {' | '.join(parts)}{skipped}"


def run_ladder(embed: Embed, domains: dict[str, tuple[torch.Tensor, list[str]]], seed: int,
               partitions: int = PARTITIONS, max_per_half: int = MAX_PER_HALF) -> LadderResult:
    """The ladder on each domain's real uint8 images (N,1,H,W) with their subject groups."""
    relative, spearman, sizes, skipped = {}, {}, {}, {}
    for d, (images, groups) in domains.items():
        try:
            parts = subject_halves(groups, partitions, seed)
        except ValueError as exc:
            skipped[d] = str(exc)
            continue
        h = min([max_per_half] + [min(len(p.a), len(p.b)) for p in parts])
        if h < 2:
            skipped[d] = f"halves of {h} image(s)"
            continue
        clean = embed(images)
        degraded = {level: embed(degrade(images, level, seed)) for level in LEVELS}
        refs, nums = [], {level: [] for level in LEVELS}
        for k, p in enumerate(parts):
            rng = np.random.default_rng([seed, k])
            a = torch.as_tensor(np.sort(rng.permutation(p.a)[:h]))
            b = torch.as_tensor(np.sort(rng.permutation(p.b)[:h]))
            refs.append(_fid(clean[a], clean[b]))
            for level, feats in degraded.items():
                nums[level].append(_fid(feats[a], clean[b]))
        ref = float(np.mean(refs))
        relative[d] = {level: float(np.mean(v)) / ref if ref > 0 else float("inf") for level, v in nums.items()}
        ladder = [1.0] + [relative[d][f"blur {s:g} px"] for s in BLUR_SIGMAS]
        spearman[d] = float(scipy.stats.spearmanr(np.arange(len(ladder)), ladder).statistic)
        sizes[d] = h
    return LadderResult(relative, spearman, sizes, skipped)
