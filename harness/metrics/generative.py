"""Per-domain FID, IS and KID of translated images, through torch-fidelity.

For each domain d (tumor, no_tumor) the real test images of d are compared with the test
images of the other domain translated into d, in each feature space (Inception-v3 and the
MRI-domain ResNet18). Features come from torch-fidelity's own extraction loop and extractors;
FID, KID and IS come from torch-fidelity's own functions on those features. Working at the
feature level (instead of ``calculate_metrics``, which recomputes everything from its inputs)
lets real-image features be cached by content hash, and lets one extraction serve the full
comparison, the real-vs-real reference and the size-matched relative distance.
``tests/test_generative_metrics.py`` checks the numbers equal ``calculate_metrics``'s.

Scale. FID is biased upward at small sample sizes (the covariance of n < 2048 Inception
features is rank-deficient), so it is only comparable between runs with equal n. KID is
unbiased. To judge scale, each domain also gets ``fid_reference``: FID between two disjoint,
seeded halves (h images each) of the real images; and ``fid_relative`` (Woodland et al.,
MICCAI 2024): FID(real half A, h seeded translated images) / fid_reference, both at sample
size h so their bias matches. 1 means "as far from the real images as real images are from
each other".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_featuresdict_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_featuresdict_to_metric
from torch_fidelity.utils import get_featuresdict_from_dataset

from harness.config import MetricSettings
from harness.metrics.feature_cache import FeatureCache, FeatureDict, cache_key
from harness.metrics.feature_spaces import (
    INCEPTION_SPACE, MRI_SPACE, FeatureSpace, FeatureSpaceUnavailable, resolve_inception, resolve_mri,
)

DOMAINS = ("tumor", "no_tumor")
METRICS = ("fid", "isc", "kid", "fid_reference", "fid_relative")
MIN_IMAGES = 2  # a covariance, a KID subset and an IS split all need at least two
BATCH_SIZE = 32


class UInt8Images(Dataset):
    """torch-fidelity input: (N, 1, S, S) uint8 held once, served as 3xSxS (gray repeated)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].expand(3, -1, -1)


def image_problem(images: object) -> str | None:
    """Why ``images`` cannot be evaluated, or None when they can."""
    if images is None:
        return "no images"
    if not isinstance(images, torch.Tensor):
        return f"expected a tensor, got {type(images).__name__}"
    if images.dim() not in (3, 4) or (images.dim() == 4 and images.shape[1] != 1):
        return f"expected (N,1,H,W) single-channel images, got shape {tuple(images.shape)}"
    if images.numel() and not torch.isfinite(images).all():
        return "images contain NaN or infinite values"
    return None


def to_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N,1,H,W) or (N,H,W) floats in [0,1] -> (N,1,size,size) uint8, resized before quantising
    so that every run feeds the extractor the same resolution whatever the data's."""
    problem = image_problem(images)
    if problem is not None:
        raise ValueError(problem)
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.shape[0] and x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def extract_features(extractor: torch.nn.Module, images: torch.Tensor, device: torch.device) -> FeatureDict:
    """torch-fidelity's own dataset loop (single process: ``save_cpu_ram``) over uint8 images."""
    return get_featuresdict_from_dataset(UInt8Images(images), extractor, BATCH_SIZE,
                                         device.type == "cuda", True, False)


def _subsample(images: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    if limit <= 0 or images.shape[0] <= limit:
        return images
    idx = np.sort(np.random.RandomState(seed).permutation(images.shape[0])[:limit])
    return images[torch.as_tensor(idx)]


def _row(method: str, domain: str, metric: str, space: str, value: float | None = None,
         std: float | None = None, n: int | None = None, note: str | None = None) -> dict:
    if value is not None and not math.isfinite(value):
        value, std, note = None, None, f"not computed: non-finite result ({note})"
    return {"method": method, "split": "test", "domain": domain, "metric": metric, "feature_space": space,
            "value": value, "std": std, "ci_low": None, "ci_high": None, "n": n, "note": note}


def _unavailable(method: str, domain: str, space: str, reason: str, n: int | None = None) -> list[dict]:
    return [_row(method, domain, m, space, n=n, note=f"not computed: {reason}") for m in METRICS]


def _fid(feats_a: FeatureDict, feats_b: FeatureDict, layer: str) -> float:
    stats_a = fid_featuresdict_to_statistics(feats_a, layer)
    stats_b = fid_featuresdict_to_statistics(feats_b, layer)
    return float(fid_statistics_to_metric(stats_a, stats_b, False)[KEY_METRIC_FID])


def _take(feats: FeatureDict, idx: np.ndarray) -> FeatureDict:
    index = torch.as_tensor(idx, dtype=torch.long)
    return {k: v[index] for k, v in feats.items()}


class _DomainEvaluator:
    """Features and metric rows for one method in one feature space (extractor built lazily)."""

    def __init__(self, method: str, space: FeatureSpace, settings: MetricSettings, device: torch.device,
                 seed: int, cache: FeatureCache, logger: logging.Logger) -> None:
        self.method, self.space, self.settings = method, space, settings
        self.device, self.seed, self.cache, self.logger = device, seed, cache, logger
        self.layers = sorted({space.layer(m) for m in ("fid", "kid", "isc")})
        self._extractor: torch.nn.Module | None = None

    def _features(self, images: torch.Tensor, what: str, cached: bool) -> FeatureDict:
        key = cache_key(self.space.fingerprint, self.layers, images) if cached else None
        if key is not None:
            hit = self.cache.load(key, self.layers)
            if hit is not None:
                self.logger.info("%s features (%s, %d images) from cache %s", what, self.space.id,
                                 images.shape[0], key[:12])
                return hit
        if self._extractor is None:
            try:
                self._extractor = self.space.create_extractor(self.layers, self.device)
            except Exception as exc:  # a corrupt or foreign weights file is a missing feature space
                raise FeatureSpaceUnavailable(
                    f"could not load {self.space.id} weights {self.space.weights_path}: "
                    f"{type(exc).__name__}: {exc}") from exc
        self.logger.info("extracting %s features (%s, %d images)", what, self.space.id, images.shape[0])
        feats = extract_features(self._extractor, images, self.device)
        if key is not None:
            self.cache.save(key, feats)
        return feats

    def rows(self, domain: str, real: torch.Tensor, translated: torch.Tensor) -> list[dict]:
        sid, desc, s = self.space.id, self.space.description, self.settings
        n_real, n_tr = int(real.shape[0]), int(translated.shape[0])
        if min(n_real, n_tr) < MIN_IMAGES:
            return _unavailable(self.method, domain, sid,
                                f"only {n_real} real and {n_tr} translated {domain} images, "
                                f"need >= {MIN_IMAGES} of each", n=n_tr)
        real_u8 = to_uint8(real, self.space.input_size)
        tr_u8 = to_uint8(translated, self.space.input_size)
        real_f = self._features(real_u8, f"real {domain}", cached=True)
        tr_f = self._features(tr_u8, f"translated {domain}", cached=False)
        fid_layer, kid_layer, isc_layer = (self.space.layer(m) for m in ("fid", "kid", "isc"))
        sizes = f"n_real={n_real}, n_translated={n_tr}"
        out: list[dict] = []

        fid = _fid(tr_f, real_f, fid_layer)  # argument order as calculate_metrics(input1=translated)
        out.append(_row(self.method, domain, "fid", sid, fid, n=n_tr,
                        note=f"{desc}; {sizes}; FID is biased upward at small n: compare only at equal n "
                             f"(KID is unbiased)"))

        splits = min(s.isc_splits, n_tr)
        isc_range = "; a 2-class posterior bounds IS to [1, 2]" if sid == MRI_SPACE else ""
        isc = isc_featuresdict_to_metric(tr_f, isc_layer, isc_splits=splits, samples_shuffle=True,
                                         rng_seed=self.seed, verbose=False)
        out.append(_row(self.method, domain, "isc", sid, isc[KEY_METRIC_ISC_MEAN], isc[KEY_METRIC_ISC_STD],
                        n=n_tr, note=f"{desc}; translated images only; {splits} splits{isc_range}"))

        subset = min(s.kid_subset_size, n_real, n_tr)
        capped = f"; KID subset size capped at {subset} (setting {s.kid_subset_size})" \
            if subset < s.kid_subset_size else ""
        if subset == n_real == n_tr:
            capped += "; every subset is the whole set, so std is ~0"
        kid = kid_featuresdict_to_metric(tr_f, real_f, kid_layer, kid_subset_size=subset, rng_seed=self.seed,
                                         verbose=False)
        out.append(_row(self.method, domain, "kid", sid, kid[KEY_METRIC_KID_MEAN], kid[KEY_METRIC_KID_STD],
                        n=n_tr, note=f"{desc}; {sizes}; subset size {subset}{capped}"))

        out.extend(self._reference_rows(domain, real_f, tr_f, fid_layer))
        return out

    def _reference_rows(self, domain: str, real_f: FeatureDict, tr_f: FeatureDict, layer: str) -> list[dict]:
        """Real-vs-real halves and the size-matched relative FID (see the module docstring)."""
        sid, desc = self.space.id, self.space.description
        n_real, n_tr = len(real_f[layer]), len(tr_f[layer])
        half = n_real // 2
        if half < MIN_IMAGES:
            reason = f"not computed: only {n_real} real {domain} images, need >= {2 * MIN_IMAGES} for two halves"
            return [_row(self.method, domain, m, sid, n=n_real, note=reason) for m in ("fid_reference", "fid_relative")]
        perm = np.random.RandomState(self.seed).permutation(n_real)
        half_a, half_b = _take(real_f, perm[:half]), _take(real_f, perm[half:2 * half])
        reference = _fid(half_a, half_b, layer)
        rows = [_row(self.method, domain, "fid_reference", sid, reference, n=half,
                     note=f"{desc}; FID between two disjoint seeded halves of {half} real images")]
        m = min(half, n_tr)
        tr_sub = _take(tr_f, np.random.RandomState(self.seed + 1).permutation(n_tr)[:m])
        matched = _fid(half_a, tr_sub, layer)
        note = (f"{desc}; FID(real half A, {m} translated)={matched:.6g} / fid_reference; "
                f"equal sample sizes, so both carry the same small-sample bias")
        if m < half:
            note += f" (only {m} translated images for a half of {half})"
        if reference <= 0:
            rows.append(_row(self.method, domain, "fid_relative", sid, n=m,
                             note="not computed: fid_reference is 0 (identical real halves)"))
        else:
            rows.append(_row(self.method, domain, "fid_relative", sid, matched / reference, n=m, note=note))
        return rows


def _resolve_spaces(inception_weights: str | None, mri_checkpoint: str | None
                    ) -> list[tuple[str, FeatureSpace | str]]:
    """Each feature space or the reason it is unavailable, in report order."""
    out: list[tuple[str, FeatureSpace | str]] = []
    resolvers: list[tuple[str, Callable[[], FeatureSpace]]] = [
        (INCEPTION_SPACE, lambda: resolve_inception(inception_weights)),
        (MRI_SPACE, lambda: resolve_mri(mri_checkpoint)),
    ]
    for sid, resolve in resolvers:
        try:
            out.append((sid, resolve()))
        except FeatureSpaceUnavailable as exc:
            out.append((sid, str(exc)))
    return out


def _domain_input(images: torch.Tensor | None, limit: int, seed: int) -> torch.Tensor | str:
    """Validated, optionally subsampled images, or why they cannot be used."""
    problem = image_problem(images)
    return problem if problem is not None else _subsample(images, limit, seed)


def evaluate_generative(method: str, real: dict[str, torch.Tensor], translated: dict[str, torch.Tensor], *,
                        settings: MetricSettings, device: torch.device, seed: int,
                        inception_weights: str | None, mri_checkpoint: str | None, cache_dir: Path,
                        logger: logging.Logger) -> list[dict]:
    """Metric rows (docs/results-schema.md) for every domain and feature space.

    ``real[d]``: real test images of domain d; ``translated[d]``: test images of the other
    domain translated into d; (N,1,H,W) floats in [0,1]. Missing weights, too few images or bad
    input give rows with ``value: None`` and the reason in ``note``; this never raises for them.
    """
    cache = FeatureCache(Path(cache_dir), logger)
    spaces = _resolve_spaces(inception_weights, mri_checkpoint)
    for sid, space in spaces:
        if isinstance(space, str):
            logger.warning("%s: %s feature space unavailable: %s", method, sid, space)
    evaluators = {sid: _DomainEvaluator(method, space, settings, device, seed, cache, logger)
                  for sid, space in spaces if not isinstance(space, str)}
    limit = settings.generative_max_images
    rows: list[dict] = []
    for domain in DOMAINS:
        if domain not in real and domain not in translated:
            continue
        real_d = _domain_input(real.get(domain), limit, seed)
        tr_d = _domain_input(translated.get(domain), limit, seed + 1)
        for i, (sid, space) in enumerate(spaces):
            if isinstance(space, str):
                rows.extend(_unavailable(method, domain, sid, space))
            elif isinstance(real_d, str) or isinstance(tr_d, str):
                problem = f"real {domain}: {real_d}" if isinstance(real_d, str) else f"translated {domain}: {tr_d}"
                rows.extend(_unavailable(method, domain, sid, problem))
            else:
                try:
                    rows.extend(evaluators[sid].rows(domain, real_d, tr_d))
                except FeatureSpaceUnavailable as exc:
                    logger.warning("%s: %s feature space unavailable: %s", method, sid, exc)
                    spaces[i] = (sid, str(exc))
                    rows.extend(_unavailable(method, domain, sid, str(exc)))
    return rows
