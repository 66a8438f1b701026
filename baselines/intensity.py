"""The no-learning sanity baseline: how unusual are the brightest (or darkest) brain voxels?

Why it exists: Heer et al. found that plain FLAIR intensity thresholding (AUROC 0.991 on MSLUB)
beat f-AnoGAN and a VAE; lesions are often simply the brightest tissue in the slice. A harness
that reports deep anomaly detectors without this floor misleads its users, so every run has it.

Per image: z-score the intensities inside the brain mask (robustly: median and MAD, so a large
lesion does not inflate the scale it is measured against), smooth lightly inside the brain
(normalised convolution, so the brain edge is not darkened by the background), and take a high
percentile of the signed, brain-masked values as the score. The anomaly map is the positive part
of the signed, smoothed z-map, zero outside the brain. ``fit`` learns nothing: it only chooses,
on the validation set's image labels, the percentile and the sign with the highest validation
AUROC, and records the choice in ``selected``. The signs: ``bright`` (z, lesions brighter than
the brain, as in FLAIR/T2), ``dark`` (-z, as in T1) and ``two-sided`` (|z|: a lesion either way,
e.g. a T1 post-contrast tumour's bright rim around a dark core). When the validation images
carry two or more MRI sequences (``ImageSet.sequences``), one more candidate per percentile,
``by-sequence``, takes each sequence's best sign on that sequence's validation images (the
overall best sign for a sequence whose validation images lack a class or are not seen there),
so a mixed FLAIR + T1 cohort is not scored with one sign for both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import Field
from sklearn.metrics import roc_auc_score

from harness.api import FitContext, ImageSet, Method, MethodSettings, ScoreOutput, register_method
from harness.imaging import blur, gaussian_kernel

# Named aggregates, in tie-break order (the first is the default before ``fit``).
PERCENTILES: dict[str, float] = {"p99": 99.0, "p95": 95.0, "p99.9": 99.9, "p90": 90.0}
# How a z-map becomes "more lesion = higher", in tie-break order (the first is the default).
SIGNS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bright": lambda z: z, "dark": lambda z: -z, "two-sided": torch.abs}
BY_SEQUENCE = "by-sequence"  # the candidate that takes each sequence's own best sign
# Gaussian sigma in pixels for a 128 px slice, scaled with the size; kept on development seeds
# 100/101 over 0.5 and 2.0 (best mean validation AUROC; docs/protocol.md)
SMOOTH_SIGMA_AT_128 = 1.0
_MAD_TO_STD = 1.4826
_EPS = 1e-6
_CHUNK = 64  # images per vectorised step (torch quantiles refuse very large inputs)

_log = logging.getLogger(__name__)


def robust_zscore(images: torch.Tensor, brain: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) -> z-scores from each image's brain median and MAD; zero outside the brain."""
    out = torch.zeros(images.shape, dtype=torch.float32)
    for start in range(0, images.shape[0], _CHUNK):
        x = images[start:start + _CHUNK].float().flatten(1)
        inside = brain[start:start + _CHUNK].flatten(1)
        values = torch.where(inside, x, torch.nan)
        median = values.nanmedian(dim=1, keepdim=True).values
        scale = _MAD_TO_STD * (values - median).abs().nanmedian(dim=1, keepdim=True).values
        std = torch.sqrt(torch.nanmean((values - median) ** 2, dim=1, keepdim=True))
        scale = torch.where(scale < _EPS, std, scale)  # more than half the brain at one value
        scale = torch.where(torch.isnan(scale) | (scale < _EPS), 1.0, scale)  # constant or empty brain
        z = torch.where(inside, (x - median.nan_to_num(0.0)) / scale, 0.0)
        out[start:start + _CHUNK] = z.view(-1, *images.shape[1:])
    return out


def smooth_in_brain(z: torch.Tensor, brain: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing restricted to the brain: blur(z * m) / blur(m), zero outside the brain."""
    kernel = gaussian_kernel(sigma)
    m = brain.float()
    weight = blur(m, kernel, border="zeros")
    smoothed = blur(z * m, kernel, border="zeros") / weight.clamp_min(_EPS)
    return smoothed * m


def brain_percentiles(signed: torch.Tensor, brain: torch.Tensor, q: float) -> np.ndarray:
    """The ``q``-th percentile (linear, as numpy's) of each image's brain values; 0 without brain pixels."""
    out = []
    for start in range(0, signed.shape[0], _CHUNK):
        values = torch.where(brain[start:start + _CHUNK].flatten(1), signed[start:start + _CHUNK].flatten(1),
                             torch.nan)
        out.append(torch.nanquantile(values.double(), q / 100.0, dim=1).nan_to_num(0.0))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float64)


class IntensitySettings(MethodSettings):
    smooth_sigma_at_128px: float = Field(SMOOTH_SIGMA_AT_128, ge=0.5, le=8.0,
                                         description="Gaussian sigma (px at 128 px; scaled with the size)")


@register_method("intensity")
class IntensityBaseline(Method):
    capabilities = frozenset({"scores", "maps"})
    supervision = "none"
    description = ("No-learning floor: high percentile of brain-masked robust z-scores (bright, dark or two-sided "
                   "|z|, per MRI sequence when the data has several; chosen on val labels); map = smoothed z-map.")
    Settings = IntensitySettings

    def __init__(self, settings: IntensitySettings | None = None) -> None:
        super().__init__(settings)
        self.aggregate = next(iter(PERCENTILES))
        self.sign = next(iter(SIGNS))  # the sign of every image, or of sequences by_sequence does not name
        self.by_sequence: dict[str, str] = {}  # sequence -> its sign, for the by-sequence candidate
        self.selected: dict[str, Any] = {"aggregate": self.aggregate, "sign": self.sign, "fallback_sign": self.sign,
                                         "by_sequence": None, "val_auroc": None, "candidates": {},
                                         "smooth_sigma_at_128px": self.settings.smooth_sigma_at_128px}

    def _smoothed_z(self, images: ImageSet) -> torch.Tensor:
        z = robust_zscore(images.images, images.brain)
        sigma = self.settings.smooth_sigma_at_128px * images.images.shape[-1] / 128.0
        return smooth_in_brain(z, images.brain, max(sigma, 0.5))

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        labels = val.labels.numpy()
        if len(val) == 0 or len(np.unique(labels)) < 2:
            ctx.logger.warning("intensity: validation split lacks one class; keeping the default %s/%s",
                               self.sign, self.aggregate)
            return
        z = self._smoothed_z(val)
        sequences = val.sequences()
        scores = {(sign, agg): brain_percentiles(flip(z), val.brain, q)
                  for sign, flip in SIGNS.items() for agg, q in PERCENTILES.items()}
        candidates = {f"{sign}/{agg}": float(roc_auc_score(labels, v)) for (sign, agg), v in scores.items()}
        per_sequence: dict[str, dict[str, str]] = {}
        if len(set(sequences)) > 1:
            for agg in PERCENTILES:
                by_sign = {s: scores[(s, agg)] for s in SIGNS}
                per_sequence[agg] = _signs_by_sequence(labels, sequences, by_sign)
                mixed = _mix(by_sign, sequences, per_sequence[agg], _best_sign(labels, by_sign))
                candidates[f"{BY_SEQUENCE}/{agg}"] = float(roc_auc_score(labels, mixed))
        best = max(candidates, key=candidates.__getitem__)  # ties keep the earlier candidate
        sign, self.aggregate = best.split("/")
        overall = {s: scores[(s, self.aggregate)] for s in SIGNS}
        self.sign = _best_sign(labels, overall) if sign == BY_SEQUENCE else sign
        self.by_sequence = per_sequence[self.aggregate] if sign == BY_SEQUENCE else {}
        self.selected = {"aggregate": self.aggregate, "sign": sign, "fallback_sign": self.sign,
                         "by_sequence": self.by_sequence or None,
                         "val_auroc": candidates[best], "candidates": {k: round(v, 6) for k, v in candidates.items()},
                         "smooth_sigma_at_128px": self.settings.smooth_sigma_at_128px}
        ctx.logger.info("intensity: selected %s lesions%s, aggregate %s (val AUROC %.4f); candidates %s", sign,
                        f" {self.by_sequence} (else {self.sign})" if self.by_sequence else "", self.aggregate,
                        candidates[best], self.selected["candidates"])

    def _signed(self, images: ImageSet) -> torch.Tensor:
        """The smoothed z-map, signed per image by the selection (by sequence where it chose so)."""
        z = self._smoothed_z(images)
        names = [self.by_sequence.get(seq, self.sign) for seq in images.sequences()]
        out = torch.empty_like(z)
        for name in set(names):
            idx = torch.tensor([i for i, n in enumerate(names) if n == name], dtype=torch.long)
            out[idx] = SIGNS[name](z[idx])
        return out

    def score(self, images: ImageSet) -> ScoreOutput:
        z = self._signed(images)
        scores = brain_percentiles(z, images.brain, PERCENTILES[self.aggregate])
        empty = ~images.brain.flatten(1).any(dim=1)
        if bool(empty.any()):
            _log.warning("intensity: %d image(s) have an empty brain mask; scored 0 with an empty map: %s",
                         int(empty.sum()), [images.ids[i] for i in torch.nonzero(empty).flatten()[:5].tolist()])
        maps = (z.clamp_min(0) * images.brain)[:, 0].numpy().astype(np.float32)
        return ScoreOutput(scores=scores, maps=maps, extras={"empty_brain": empty.numpy()})

    def selection(self) -> dict[str, Any]:
        return dict(self.selected)


def _best_sign(labels: np.ndarray, scores: dict[str, np.ndarray]) -> str:
    """The sign whose scores have the highest AUROC (ties: the earlier in SIGNS)."""
    aurocs = {s: float(roc_auc_score(labels, v)) for s, v in scores.items()}
    return max(aurocs, key=aurocs.__getitem__)


def _signs_by_sequence(labels: np.ndarray, sequences: list[str], scores: dict[str, np.ndarray]) -> dict[str, str]:
    """Each sequence's best sign on its own validation images; sequences whose images lack a class
    are left out (the overall sign scores them)."""
    out = {}
    for seq in sorted(set(sequences)):
        idx = np.array([i for i, s in enumerate(sequences) if s == seq])
        if len(np.unique(labels[idx])) == 2:
            out[seq] = _best_sign(labels[idx], {s: v[idx] for s, v in scores.items()})
    return out


def _mix(scores: dict[str, np.ndarray], sequences: list[str], signs: dict[str, str], fallback: str) -> np.ndarray:
    """Per image, the scores of its sequence's sign (``fallback`` for a sequence not in ``signs``)."""
    return np.array([scores[signs.get(seq, fallback)][i] for i, seq in enumerate(sequences)], dtype=np.float64)
