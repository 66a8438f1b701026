"""Anomaly maps from translation to healthy, and the image scores aggregated from them.

An image x and its healthy translation x_h = G_tumor->healthy(x) give two maps: the residual
|x - x_h| (intensity change) and 1 - local SSIM(x, x_h) (structural change, gaussian window).
Both are lightly smoothed and zeroed outside the brain mask, so skull and background never
score. An image's score is a named aggregate of its map over brain pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

MAP_KINDS = ("residual", "ssim")
AGGREGATES = ("max", "top1", "top5", "mean")
_TOP_FRACTION = {"top1": 0.01, "top5": 0.05}


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 2-D gaussian (1, 1, k, k); radius defaults to 3 sigma."""
    radius = max(1, int(math.ceil(3 * sigma))) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Same-size gaussian filtering with reflected borders."""
    r = kernel.shape[-1] // 2
    pad_mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    return F.conv2d(F.pad(x, (r, r, r, r), mode=pad_mode), kernel.to(x))


def local_ssim(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of (N, 1, H, W) images in [0, 1] with an 11x11 gaussian window
    (Wang et al. 2004 constants for data range 1)."""
    c1, c2 = 0.01**2, 0.03**2
    k = gaussian_kernel(sigma, radius=5)
    mu_x, mu_y = _blur(x, k), _blur(y, k)
    var_x = _blur(x * x, k) - mu_x**2
    var_y = _blur(y * y, k) - mu_y**2
    cov = _blur(x * y, k) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def anomaly_map(x: torch.Tensor, x_h: torch.Tensor, brain: torch.Tensor, kind: str,
                smooth_sigma: float = 1.0) -> torch.Tensor:
    """(N, H, W) map of how much the translation changed each brain pixel (>= 0, 0 outside)."""
    if kind == "residual":
        raw = (x - x_h).abs()
    elif kind == "ssim":
        raw = (1.0 - local_ssim(x, x_h)).clamp(min=0.0)
    else:
        raise ValueError(f"unknown anomaly map {kind!r}; known: {', '.join(MAP_KINDS)}")
    if smooth_sigma > 0:
        raw = _blur(raw, gaussian_kernel(smooth_sigma))
    return (raw * brain.to(raw.dtype)).squeeze(1)


def aggregate(maps: torch.Tensor, brain: torch.Tensor, name: str) -> np.ndarray:
    """Image scores (N,) from (N, H, W) maps over brain pixels; an image without brain pixels
    scores 0. ``top1``/``top5`` are the mean of the highest 1 % / 5 % of brain pixels."""
    if name not in AGGREGATES:
        raise ValueError(f"unknown aggregate {name!r}; known: {', '.join(AGGREGATES)}")
    flat = maps.reshape(len(maps), -1).float()
    inside = brain.reshape(len(maps), -1).bool()
    scores = np.zeros(len(maps), dtype=np.float64)
    for i in range(len(maps)):
        values = flat[i][inside[i]]
        if values.numel() == 0:
            continue
        if name == "max":
            scores[i] = values.max().item()
        elif name == "mean":
            scores[i] = values.mean().item()
        else:
            k = max(1, int(math.ceil(_TOP_FRACTION[name] * values.numel())))
            scores[i] = values.topk(k).values.mean().item()
    return scores


def select_scoring(maps: dict[str, torch.Tensor], brain: torch.Tensor,
                   labels: torch.Tensor) -> dict[str, object]:
    """Pick the (map, aggregate) pair with the best validation AUROC; ties keep the earlier
    pair in (MAP_KINDS x AGGREGATES) order. Without both labels in ``labels`` no AUROC
    exists: fall back to residual/top1 and say so with ``val_auroc = None``."""
    y = labels.cpu().numpy().astype(int)
    if len(np.unique(y)) < 2:
        return {"map": "residual", "aggregate": "top1", "val_auroc": None, "table": {}}
    table: dict[str, float] = {}
    best: tuple[float, str, str] | None = None
    for kind in MAP_KINDS:
        for agg in AGGREGATES:
            auc = float(roc_auc_score(y, aggregate(maps[kind], brain, agg)))
            table[f"{kind}/{agg}"] = auc
            if best is None or auc > best[0]:
                best = (auc, kind, agg)
    assert best is not None
    return {"map": best[1], "aggregate": best[2], "val_auroc": best[0], "table": table}
