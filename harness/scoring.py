"""The shared scorer of every method that scores an image by comparing it with its healthy version.

A method hands over images x (an :class:`~harness.api.ImageSet` at the run's resolution) and
their healthy version x_h (its reconstruction or translation, at the size the model works at);
this module turns the pair into anomaly maps and image scores. It offers two scorers, so that a
method's main row is the one its paper describes and the tuning stays visible as a variant:

**The paper's plain map (each method's main row; nothing chosen on validation).**

- :func:`baur_scoring`, for reconstruction methods (autoencoder, dae, the diffusion models):
  the residual with the standard post-processing of Baur et al. (Medical Image Analysis 2021,
  "Autoencoders for unsupervised anomaly segmentation in brain MR images: a comparative study"),
  as Behrendt et al.'s public evaluation code (pDDPM, MIDL 2023) applies it: only positive
  residuals max(x - x_h, 0) where the image's sequence shows lesions bright (FLAIR, T2:
  :data:`BRIGHT_LESION_SEQUENCES`; every other or unknown sequence keeps |x - x_h|, since a
  T1 post-contrast tumour has a dark core and a bright rim), a 5 x 5 median filter at the model's
  size, then the brain mask eroded width/25 times (4-connected) at the images' size. The image
  score is the **mean** of that map over the brain, Behrendt et al.'s slice score for
  reconstruction methods (``AnomalyScoreReco``), also MedIAnomaly's (Cai et al. 2024).
- :func:`structural_scoring`, for translation to healthy (CycleGAN's main row): the seed project
  read the translation as **structural consistency rather than pixel-level reconstruction**, so
  the map is 1 - local SSIM(x, x_h) (Wang et al. 2004: 11 x 11 gaussian window, sigma 1.5, at the
  model's size, nothing smoothed further) inside the brain, and the image score its **mean** over
  the brain, i.e. one minus the mean SSIM index of the pair there.
- :func:`fixed_point_scoring` (CycleGAN's ``residual`` variant): the pixel difference map
  |x_h - x| inside the brain and the image score its **maximum**, as Fixed-Point GAN
  (Siddiquee et al., ICCV 2019) scores detection.

**The tuned selection (a method's ``+tuned`` variant, supervision ``...+val_masks``).**
:func:`select_scoring` picks one of 5 maps x 4 aggregates on the validation split: the map by
pixel AUROC against the validation lesion masks when they exist (a map must point at the
lesion), else by image AUROC; then the aggregate by image AUROC. Selection and deployment run
**one** code path, :func:`deployed_maps`: maps are made at x_h's size, upsampled to the
ImageSet's size, and zeroed outside the ImageSet's own brain mask; scores aggregate those maps
over that same mask. So the validation AUROC that :func:`select_scoring` records is exactly the
AUROC of :func:`deploy` on validation. No paper uses these maps as they stand; they are the
harness's own search:

- ``residual``: |x - x_h| (any intensity change), ``ssim``: 1 - local SSIM(x, x_h)
  (structural change, gaussian window); both lightly smoothed.
- ``matched`` |d|, ``brighter`` max(d, 0), ``darker`` max(-d, 0) of the signed residual
  d = x - (a * x_h + c), where a, c are the per-image least-squares gain and offset over brain
  pixels. Images are percentile-normalised one by one, so a bright lesion compresses the rest
  of the brain and its healthy version comes out globally brighter; the raw residual is then
  large everywhere. Removing the gain/offset leaves the local change. d is smoothed *signed*
  (gaussian sigma = size / 32): a blurry model leaves zero-mean, sign-alternating
  high-frequency residuals that cancel, while a lesion leaves a coherent-sign residual.

An image's score is a named aggregate of its map over brain pixels; every map is >= 0 and zero
outside the brain, so skull and background never score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from harness.data.types import ImageSet
from harness.imaging import blur, erode, gaussian_kernel, median_filter

__all__ = [
    "MAP_KINDS", "SIGNED_KINDS", "AGGREGATES", "FALLBACK", "local_ssim", "gain_offset", "matched_residual",
    "SIGNED_SIGMA_PER_PX", "default_sigma", "anomaly_map", "aggregate", "pixel_auroc", "deployed_maps", "deploy", "select_scoring",
    "select_from_maps", "resize", "BRIGHT_LESION_SEQUENCES", "MEDIAN_SIZE", "EROSION_DIVISOR", "TUNED",
    "residual_modes", "baur_maps", "baur_scoring", "structural_scoring", "fixed_point_scoring", "plain_record",
]

MAP_KINDS = ("residual", "ssim", "matched", "brighter", "darker")
SIGNED_KINDS = ("matched", "brighter", "darker")  # maps of the gain/offset-matched signed residual
AGGREGATES = ("max", "top1", "top5", "mean")
FALLBACK = ("residual", "top1")  # when val lacks a class and nothing can be measured
MAX_SELECTION_PIXELS = 200_000
_TOP_FRACTION = {"top1": 0.01, "top5": 0.05}
# 2 px at 64 px, scaling with the model's blur; kept on development seed 100 against 0, 1/64 and
# 1/16 (validation pixel AUROC 0.644 / 0.661 / 0.660 / 0.634 for 0 / 1 / 2 / 4 px; docs/protocol.md)
SIGNED_SIGMA_PER_PX = 1 / 32
_MIN_VARIANCE = 1e-10

# The paper's plain map (Baur et al. 2021's post-processing, as in Behrendt et al.'s code)
BRIGHT_LESION_SEQUENCES = frozenset({"flair", "t2"})  # lesions hyperintense: positive residuals only
MEDIAN_SIZE = 5  # median filter of the residual, px at the model's size (Baur et al.: K = 5)
EROSION_DIVISOR = 25  # the brain mask is eroded width // 25 times (Behrendt et al.'s code)
TUNED = "tuned"  # the variant that selects map and aggregate on validation (select_scoring)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of (N, C, H, W), a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def local_ssim(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of (N, 1, H, W) images in [0, 1] with an 11x11 gaussian window
    (Wang et al. 2004 constants for data range 1)."""
    c1, c2 = 0.01**2, 0.03**2
    k = gaussian_kernel(sigma, radius=5)
    mu_x, mu_y = blur(x, k), blur(y, k)
    var_x = blur(x * x, k) - mu_x**2
    var_y = blur(y * y, k) - mu_y**2
    cov = blur(x * y, k) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def gain_offset(x: torch.Tensor, x_h: torch.Tensor, brain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least-squares (a, c), each (N, 1, 1, 1), of x ~ a * x_h + c over brain pixels.

    Degenerate images (fewer than two brain pixels, or x_h constant over the brain) get
    a = 1, c = 0: there is no gain to estimate, so the residual is left as it is."""
    w = brain.to(x.dtype)
    n = w.sum(dim=(-2, -1), keepdim=True)
    safe_n = n.clamp(min=1.0)
    mean_h = (w * x_h).sum(dim=(-2, -1), keepdim=True) / safe_n
    mean_x = (w * x).sum(dim=(-2, -1), keepdim=True) / safe_n
    dh = (x_h - mean_h) * w
    var = (dh * dh).sum(dim=(-2, -1), keepdim=True)
    cov = (dh * (x - mean_x)).sum(dim=(-2, -1), keepdim=True)
    ok = (n >= 2) & (var > _MIN_VARIANCE * safe_n)
    a = torch.where(ok, cov / var.clamp(min=_MIN_VARIANCE), torch.ones_like(var))
    c = torch.where(ok, mean_x - a * mean_h, torch.zeros_like(var))
    return a, c


def matched_residual(x: torch.Tensor, x_h: torch.Tensor, brain: torch.Tensor,
                     sigma: float) -> torch.Tensor:
    """Signed x - (a * x_h + c), zeroed outside the brain *before* smoothing: background and
    the offset c there are not part of the fit, and the zeros damp the brain rim, where
    skull-stripping edges and reconstruction errors concentrate (on the quick-profile CycleGAN
    this beat both smoothing the whole image and a rim-preserving normalised convolution on val)."""
    a, c = gain_offset(x, x_h, brain)
    w = brain.to(x.dtype)
    d = (x - (a * x_h + c)) * w
    if sigma > 0:
        d = blur(d, gaussian_kernel(sigma)) * w
    return d


def default_sigma(kind: str, size: int, signed_per_px: float = SIGNED_SIGMA_PER_PX) -> float:
    """Smoothing of a map kind at ``size`` px: 1 px for residual/ssim, ``size * signed_per_px``
    (size/32 by default) for the signed maps, whose blur artifacts grow with the image (and model) size."""
    return size * signed_per_px if kind in SIGNED_KINDS else 1.0


def anomaly_map(x: torch.Tensor, x_h: torch.Tensor, brain: torch.Tensor, kind: str,
                smooth_sigma: float | None = None, signed_per_px: float = SIGNED_SIGMA_PER_PX) -> torch.Tensor:
    """(N, H, W) map of how much the healthy version differs at each brain pixel (>= 0, 0
    outside), for images of one size; ``smooth_sigma`` None means ``default_sigma(kind, W)``."""
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown anomaly map {kind!r}; known: {', '.join(MAP_KINDS)}")
    sigma = default_sigma(kind, x.shape[-1], signed_per_px) if smooth_sigma is None else smooth_sigma
    if kind in SIGNED_KINDS:
        d = matched_residual(x, x_h, brain, sigma)
        signed = {"matched": d.abs(), "brighter": d.clamp(min=0.0), "darker": (-d).clamp(min=0.0)}
        return signed[kind].squeeze(1)  # already zero outside the brain
    raw = (x - x_h).abs() if kind == "residual" else (1.0 - local_ssim(x, x_h)).clamp(min=0.0)
    if sigma > 0:
        raw = blur(raw, gaussian_kernel(sigma))
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


def pixel_auroc(maps: torch.Tensor, masks: torch.Tensor, brain: torch.Tensor,
                index: np.ndarray | None = None) -> float | None:
    """AUROC of (N, H, W) map values vs lesion masks over brain pixels (``index``: a subsample
    of them); None when those pixels are all lesion or all healthy."""
    inside = brain.reshape(len(maps), -1).bool().flatten()
    truth = masks.reshape(len(maps), -1).bool().flatten()[inside].numpy()
    values = maps.reshape(len(maps), -1).float().flatten()[inside].numpy()
    if index is not None:
        truth, values = truth[index], values[index]
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, values))


def deployed_maps(images: ImageSet, healthy: torch.Tensor, kinds: Iterable[str] = MAP_KINDS,
                  signed_per_px: float = SIGNED_SIGMA_PER_PX) -> dict[str, torch.Tensor]:
    """The maps as a method deploys them: made at ``healthy``'s size ((N, 1, s, s), the model's
    working size; the images and brain masks are resized to it), upsampled to the ImageSet's
    size and zeroed outside the ImageSet's brain mask. Both selection and scoring use this."""
    if healthy.ndim != 4 or healthy.shape[0] != len(images) or healthy.shape[1] != 1:
        raise ValueError(f"healthy images must be (N={len(images)}, 1, s, s), got {tuple(healthy.shape)}")
    size = int(healthy.shape[-1])
    small = images.resized(size)
    x, x_h = small.images.float(), healthy.float().cpu()
    full = tuple(images.images.shape[-2:])
    inside = images.brain.squeeze(1).float()
    out = {}
    for kind in kinds:
        m = anomaly_map(x, x_h, small.brain, kind, signed_per_px=signed_per_px)
        out[kind] = resize(m.unsqueeze(1), full).clamp(min=0).squeeze(1) * inside
    return out


def deploy(images: ImageSet, healthy: torch.Tensor, selection: dict[str, Any],
           signed_per_px: float = SIGNED_SIGMA_PER_PX) -> tuple[np.ndarray, torch.Tensor]:
    """Image scores (N,) and maps (N, H, W) of the selected map and aggregate."""
    maps = deployed_maps(images, healthy, [str(selection["map"])], signed_per_px)[str(selection["map"])]
    return aggregate(maps, images.brain, str(selection["aggregate"])), maps


def _pixel_subsample(brain: torch.Tensor, seed: int = 0) -> np.ndarray | None:
    """A seeded, sorted subsample of at most MAX_SELECTION_PIXELS brain pixels (None: all),
    shared by every map so they are compared on the same pixels."""
    n = int(brain.bool().sum())
    if n <= MAX_SELECTION_PIXELS:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=MAX_SELECTION_PIXELS, replace=False))


def _best(table: dict[str, float | None], keys: list[str]) -> str | None:
    """The key with the highest defined value; ties keep the earlier key."""
    best: str | None = None
    for key in keys:
        value = table[key]
        if value is not None and (best is None or value > table[best]):  # type: ignore[operator]
            best = key
    return best


def select_scoring(images: ImageSet, healthy: torch.Tensor, kinds: Iterable[str] = MAP_KINDS,
                   signed_per_px: float = SIGNED_SIGMA_PER_PX) -> dict[str, Any]:
    """Pick the anomaly map and its aggregate on validation ``images`` with healthy versions
    ``healthy``, every candidate scored exactly as :func:`deploy` will score it (the signed maps
    smoothed with ``signed_per_px`` of the image size, as deployed)."""
    chosen = [k for k in MAP_KINDS if k in set(kinds)]
    return select_from_maps(deployed_maps(images, healthy, chosen, signed_per_px), images.brain, images.labels,
                            images.masks)


def select_from_maps(maps: dict[str, torch.Tensor], brain: torch.Tensor, labels: torch.Tensor,
                     masks: torch.Tensor | None = None) -> dict[str, Any]:
    """The selection rule, on (N, H, W) ``maps`` (a subset of MAP_KINDS) over ``brain``.

    With lesion masks, the MAP is the one with the best pixel AUROC over brain pixels, then its
    AGGREGATE the one with the best image AUROC. Maps are meant to localise: chosen by image
    AUROC alone, selection can pick a global intensity shift (per-image normalisation makes
    tumor images' healthy versions globally brighter) that separates images but does not point
    at the lesion. Without masks (or without lesion pixels), the (map, aggregate) pair with the
    best image AUROC wins. Ties keep the earlier candidate in (MAP_KINDS x AGGREGATES) order.
    Without both labels no AUROC exists: fall back to FALLBACK with ``val_auroc = None``.
    ``table`` holds every candidate's AUROC: "map/aggregate" (image) and, with masks,
    "map/pixel"."""
    y = labels.cpu().numpy().astype(int)
    if len(np.unique(y)) < 2:
        return {"map": FALLBACK[0], "aggregate": FALLBACK[1], "val_auroc": None,
                "val_pixel_auroc": None, "criterion": "none: val lacks a class", "table": {}}
    kinds = [k for k in MAP_KINDS if k in maps]
    table: dict[str, float | None] = {
        f"{k}/{a}": float(roc_auc_score(y, aggregate(maps[k], brain, a)))
        for k in kinds for a in AGGREGATES}
    kind = None
    if masks is not None:
        index = _pixel_subsample(brain)
        for k in kinds:
            table[f"{k}/pixel"] = pixel_auroc(maps[k], masks, brain, index)
        best_map = _best(table, [f"{k}/pixel" for k in kinds])
        kind = None if best_map is None else best_map.split("/")[0]
    if kind is None:
        pair = _best(table, [f"{k}/{a}" for k in kinds for a in AGGREGATES])
        assert pair is not None
        kind, agg = pair.split("/")
        criterion = "image AUROC"
    else:
        pair = _best(table, [f"{kind}/{a}" for a in AGGREGATES])
        assert pair is not None
        agg = pair.split("/")[1]
        criterion = "pixel AUROC (map) + image AUROC (aggregate)"
    return {"map": kind, "aggregate": agg, "val_auroc": table[pair],
            "val_pixel_auroc": table.get(f"{kind}/pixel"), "criterion": criterion, "table": table}


# ---------------------------------------------------------------- the paper's plain maps

def residual_modes(images: ImageSet) -> list[str]:
    """Per image, ``positive`` (max(x - x_h, 0)) where its sequence shows lesions bright
    (:data:`BRIGHT_LESION_SEQUENCES`), else ``absolute`` (|x - x_h|: unknown or T1-like)."""
    return ["positive" if seq in BRIGHT_LESION_SEQUENCES else "absolute" for seq in images.sequences()]


def _check_healthy(images: ImageSet, healthy: torch.Tensor) -> None:
    if healthy.ndim != 4 or healthy.shape[0] != len(images) or healthy.shape[1] != 1:
        raise ValueError(f"healthy images must be (N={len(images)}, 1, s, s), got {tuple(healthy.shape)}")


def baur_maps(images: ImageSet, healthy: torch.Tensor) -> torch.Tensor:
    """(N, H, W) post-processed residuals (module docstring): residual (positive or absolute by
    sequence) and its median filter at ``healthy``'s size, upsampled to the ImageSet's size, times
    its brain mask eroded ``width // EROSION_DIVISOR`` times."""
    _check_healthy(images, healthy)
    small = images.resized(int(healthy.shape[-1])).images.float()
    d = small - healthy.float().cpu()
    positive = torch.tensor([m == "positive" for m in residual_modes(images)], dtype=torch.bool)
    residual = torch.where(positive[:, None, None, None], d.clamp(min=0.0), d.abs())
    filtered = median_filter(residual, MEDIAN_SIZE)
    full = tuple(images.images.shape[-2:])
    eroded = erode(images.brain, full[-1] // EROSION_DIVISOR)
    return (resize(filtered, full).clamp(min=0) * eroded.to(filtered.dtype)).squeeze(1)


def baur_scoring(images: ImageSet, healthy: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """A reconstruction method's main row: image scores (N,), the mean of :func:`baur_maps` over
    the brain mask, and those maps (N, H, W)."""
    maps = baur_maps(images, healthy)
    return aggregate(maps, images.brain, "mean"), maps


def structural_scoring(images: ImageSet, healthy: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """A translating method's structural main row: the map 1 - local SSIM(x, x_h) made at
    ``healthy``'s size, upsampled to the ImageSet's size and zeroed outside its brain mask, and the
    image score its mean over the brain (one minus the pair's mean SSIM there)."""
    _check_healthy(images, healthy)
    small = images.resized(int(healthy.shape[-1])).images.float()
    raw = (1.0 - local_ssim(small, healthy.float().cpu())).clamp(min=0.0)
    full = resize(raw, tuple(images.images.shape[-2:])).clamp(min=0)
    maps = (full * images.brain.to(full.dtype)).squeeze(1)
    return aggregate(maps, images.brain, "mean"), maps


def fixed_point_scoring(images: ImageSet, healthy: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """A translating method's main row (Fixed-Point GAN): the difference map |x - x_h| made at
    ``healthy``'s size, upsampled to the ImageSet's size and zeroed outside its brain mask, and
    the image score its maximum over the brain."""
    _check_healthy(images, healthy)
    small = images.resized(int(healthy.shape[-1])).images.float()
    diff = resize((small - healthy.float().cpu()).abs(), tuple(images.images.shape[-2:])).clamp(min=0)
    maps = (diff * images.brain.to(diff.dtype)).squeeze(1)
    return aggregate(maps, images.brain, "max"), maps


def plain_record(val: ImageSet, scores: np.ndarray, maps: torch.Tensor, map_name: str,
                 aggregate_name: str) -> dict[str, Any]:
    """What run.json records of a main-row scorer on validation: its map and aggregate and, for
    information only (nothing is chosen from them), its validation image and pixel AUROC."""
    y = val.labels.cpu().numpy().astype(int)
    auroc = float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else None
    pixel = None
    if val.masks is not None:
        pixel = pixel_auroc(maps, val.masks, val.brain, _pixel_subsample(val.brain))
    return {"map": map_name, "aggregate": aggregate_name,
            "criterion": "none: the paper's map and aggregate, nothing chosen on validation",
            "val_auroc": auroc, "val_pixel_auroc": pixel}
