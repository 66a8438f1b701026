"""Per-domain FID, IS, KID, reference FID and target rate of translated images, via torch-fidelity,
and the Fréchet Radiomics Distance beside them (:mod:`harness.metrics.frd`).

For each domain d (tumor, no_tumor) the real test images of d are compared with the test
images of the other domain translated into d, in each feature space (Inception-v3 and the
MRI-domain network). Features come from torch-fidelity's own extraction loop and extractors;
FID, KID and IS from torch-fidelity's own functions on those features, so real-image features
can be cached by content and one extraction serves every row.

What makes the numbers comparable (docs/results-schema.md, README "Metrics"):

* **Same resolution path.** A method that translates at a working size below the evaluation
  size returns upsampled images; the real images (test and, for the target rate's threshold,
  validation) are taken down to that size and back up the same way (antialiased bilinear), so
  the distance measures translation, not lost resolution.
* **Equal n and subject-disjoint references** (:mod:`harness.metrics.generative_plan`):
  ``fid``, ``kid`` and ``is`` use one seeded subsample of n images per set; ``fid_reference``
  is the mean ± sd over seeded partitions of the real images into halves A and B that share no
  subject; ``fid_relative`` (Woodland et al., MICCAI 2024) = mean FID(A, translated images from
  source subjects outside A) / that mean, all sets of h images, so 1 means "as far from the real
  images as real images of other subjects are".
* **Inception input.** uint8 images at their own size go through torch-fidelity's own
  TF1-compatible resize to 299 px; nothing is resized before it.
* **A rate with a direction.** The MRI space reports ``target_rate`` (:mod:`.target_rate`)
  instead of a 2-class IS, with ``target_rate_reference`` (the rate of real images) beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass
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
    INCEPTION_SPACE, FeatureSpace, FeatureSpaceUnavailable, MRIExtractor, mri_space, resolve_inception,
)
from harness.metrics.frd import (
    FRD_METRICS, FRD_SPACE, RadiomicsFeatures, RadiomicsUnavailable, frd_rows, radiomics_extractor,
)
from harness.metrics.generative_plan import (
    DOMAINS, MIN_IMAGES, DomainGroups, Plan, draws_problem, make_plan, mean_sd, partitions_text, relative,
)
from harness.metrics.realism_space import REALISM_METRICS, REALISM_SPACE
from harness.metrics.target_rate import target_rate, validation_threshold
from harness.results import metric_row

INCEPTION_METRICS = ("fid", "is", "kid", "fid_reference", "fid_relative")
MRI_METRICS = ("fid", "kid", "fid_reference", "fid_relative", "target_rate", "target_rate_reference")
MRI_MISSING_SPACE = "mri"  # feature_space of the MRI rows when no MRI network was given
REFERENCE_PARTITIONS = 5
BATCH_SIZE = 32


class UInt8Images(Dataset):
    """torch-fidelity input: (N, 1, H, W) uint8 held once, served as 3xHxW (gray repeated)."""

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
    if images.dim() != 4 or images.shape[1] != 1:
        return f"expected (N,1,H,W) single-channel images, got shape {tuple(images.shape)}"
    if images.numel() and not torch.isfinite(images).all():
        return "images contain NaN or infinite values"
    return None


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) floats in [0,1] -> uint8 at the same size (what both extractors receive)."""
    return (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def resolution_path(images: torch.Tensor, working_size: int | None) -> tuple[torch.Tensor, str]:
    """Real images through the translating method's resolution (down to its working size and
    back up, antialiased bilinear) and the note that names the path."""
    h, w = images.shape[-2:]
    if not working_size or working_size >= min(h, w):
        return images, f"resolution: real and translated images at {h}x{w} px"
    small = _resize(images.float(), (working_size, working_size))
    return (_resize(small, (h, w)).clamp(0, 1),
            f"resolution: the method translates at {working_size} px, so real images were taken down to "
            f"{working_size} px and back up to {h}x{w} px (antialiased bilinear), as its output is")


@dataclass
class _Domain:
    """One domain's inputs, ready for the extractors."""

    real: torch.Tensor  # uint8 (N,1,H,W), after the resolution path
    translated: torch.Tensor  # uint8
    real_groups: np.ndarray  # subject (or duplicate group) of each real image
    source_groups: np.ndarray  # subject of the source image of each translated image


def _take(feats: FeatureDict, idx: np.ndarray) -> FeatureDict:
    index = torch.as_tensor(idx, dtype=torch.long)
    return {k: v[index] for k, v in feats.items()}


def _fid(feats_a: FeatureDict, feats_b: FeatureDict, layer: str) -> float:
    stats_a = fid_featuresdict_to_statistics(feats_a, layer)
    stats_b = fid_featuresdict_to_statistics(feats_b, layer)
    return float(fid_statistics_to_metric(stats_a, stats_b, False)[KEY_METRIC_FID])


_REFERENCE_FIDS: dict[str, float] = {}  # in-process: every translating method of a run shares the reference


def _reference_fid(half_a: FeatureDict, half_b: FeatureDict, layer: str) -> float:
    """FID between two real halves, memoised by the exact features (a 2048-d FID costs seconds
    on a CPU, and each method of a run would otherwise recompute the same ones)."""
    h = hashlib.sha256(layer.encode())
    for feats in (half_a, half_b):
        h.update(feats[layer].contiguous().numpy().tobytes())
    key = h.hexdigest()
    if key not in _REFERENCE_FIDS:
        _REFERENCE_FIDS[key] = _fid(half_a, half_b, layer)
    return _REFERENCE_FIDS[key]


class _SpaceEvaluator:
    """Features and metric rows of one method in one feature space (extractor built lazily)."""

    def __init__(self, method: str, space: FeatureSpace, settings: MetricSettings, device: torch.device,
                 seed: int, cache: FeatureCache, logger: logging.Logger) -> None:
        self.method, self.space, self.settings = method, space, settings
        self.device, self.seed, self.cache, self.logger = device, seed, cache, logger
        self.layers = sorted({space.layer(m) for m in ("fid", "kid", "isc")})
        self._extractor = None

    def features(self, images: torch.Tensor, what: str, cached: bool) -> FeatureDict:
        key = cache_key(self.space.fingerprint, self.layers, images) if cached else None
        if key is not None:
            hit = self.cache.load(key, self.layers)
            if hit is not None:
                self.logger.info("%s features (%s, %d images) from cache %s", what, self.space.id,
                                 images.shape[0], key[:12])
                return hit
        if self._extractor is None:
            self._extractor = self.space.build(self.layers, self.device)
        self.logger.info("extracting %s features (%s, %d images)", what, self.space.id, images.shape[0])
        cuda = self.device.type == "cuda"
        with torch.cuda.device(self.device) if cuda else contextlib.nullcontext():
            try:
                feats = get_featuresdict_from_dataset(UInt8Images(images), self._extractor, BATCH_SIZE,
                                                      cuda, True, False)
            except ValueError as exc:  # a feature module that breaks its contract
                raise FeatureSpaceUnavailable(f"{self.space.id}: {exc}") from exc
        if key is not None:
            self.cache.save(key, feats)
        return feats

    def _row(self, domain: str, metric: str, value: float | None = None, *, std: float | None = None,
             ci: tuple[float | None, float | None] = (None, None), n: int | None = None, note: str) -> dict:
        if value is not None and not math.isfinite(value):
            value, std, note = None, None, f"not computed: non-finite result ({note})"
        return metric_row(self.method, metric, value, domain=domain, feature_space=self.space.id, std=std,
                          ci_low=ci[0], ci_high=ci[1], n=n, note=f"{self.space.description}; {note}")

    def rows(self, domain: str, data: _Domain, plan: Plan, path_note: str,
             threshold: float | None | str = None) -> list[dict]:
        real_f = self.features(data.real, f"real {domain}", cached=True)
        tr_f = self.features(data.translated, f"translated {domain}", cached=False)
        s, n = self.settings, plan.n
        rf, tf = _take(real_f, plan.real_idx[domain]), _take(tr_f, plan.translated_idx[domain])
        equal = (f"n={n} real and {n} translated (seeded subsample to the smallest of the {len(plan.real_idx)} "
                 f"domains' real and translated counts, so rows compare); {path_note}")
        fid_layer, kid_layer = self.space.layer("fid"), self.space.layer("kid")
        out = {"fid": self._row(domain, "fid", _fid(tf, rf, fid_layer), n=n, note=equal)}
        if "is" in self.space.metrics:
            splits = min(s.isc_splits, n)
            isc = isc_featuresdict_to_metric(tf, self.space.layer("isc"), isc_splits=splits, samples_shuffle=True,
                                             rng_seed=self.seed, verbose=False)
            out["is"] = self._row(domain, "is", isc[KEY_METRIC_ISC_MEAN], std=isc[KEY_METRIC_ISC_STD], n=n,
                                  note=f"translated images only, mean ± std over {splits} splits; {equal}")
        subset = min(s.kid_subset_size, n)
        capped = f"; subset size capped at {subset} (setting {s.kid_subset_size})" if subset < s.kid_subset_size else ""
        whole = subset == n  # every subset is the whole set: torch-fidelity's std is rounding, not spread
        if whole:
            capped += "; every subset is the whole set, so no std"
        kid = kid_featuresdict_to_metric(tf, rf, kid_layer, kid_subset_size=subset, rng_seed=self.seed, verbose=False)
        out["kid"] = self._row(domain, "kid", kid[KEY_METRIC_KID_MEAN], std=None if whole else kid[KEY_METRIC_KID_STD],
                               n=n, note=f"{equal}{capped}")
        out.update(self._reference_rows(domain, real_f, tr_f, plan, path_note))
        if "target_rate" in self.space.metrics:
            out.update(self._rate_rows(domain, data, real_f, tr_f, threshold, path_note))
        return [out[m] for m in self.space.metrics]

    def _reference_rows(self, domain: str, real_f: FeatureDict, tr_f: FeatureDict, plan: Plan,
                        path_note: str) -> dict[str, dict]:
        why = draws_problem(plan, domain)
        if why is not None:
            return {m: self._row(domain, m, note=f"not computed: {why}") for m in ("fid_reference", "fid_relative")}
        layer, h = self.space.layer("fid"), plan.h
        refs, matched = [], []
        for d in plan.draws[domain]:
            half_a = _take(real_f, d.a)
            refs.append(_reference_fid(half_a, _take(real_f, d.b), layer))
            matched.append(_fid(half_a, _take(tr_f, d.translated), layer))
        how = (f"{partitions_text(plan, domain)}; A, B and the translated draw each subsampled to h={h} images "
               f"(equal across partitions and domains); {path_note}")
        ref, ref_sd = mean_sd(refs)
        rows = {"fid_reference": self._row(domain, "fid_reference", ref, std=ref_sd, n=h,
                                           note=f"mean ± sd of FID(A, B) over {how}")}
        if ref <= 0:
            rows["fid_relative"] = self._row(domain, "fid_relative", n=h,
                                             note="not computed: fid_reference is 0 (identical real halves)")
            return rows
        value, std, text = relative(matched, refs)
        rows["fid_relative"] = self._row(
            domain, "fid_relative", value, std=std, n=h,
            note=f"mean FID(A, h={h} translated) {text}; 1 = as far as real images of other subjects; {how}")
        return rows

    def _rate_rows(self, domain: str, data: _Domain, real_f: FeatureDict, tr_f: FeatureDict,
                   threshold: float | None | str, path_note: str) -> dict[str, dict]:
        if not isinstance(threshold, float):
            why = threshold if isinstance(threshold, str) else "validation holds one class, so no threshold"
            return {m: self._row(domain, m, note=f"not computed: {why}")
                    for m in ("target_rate", "target_rate_reference")}
        s, logits = self.settings, self.space.layer("isc")
        source = "no_tumor" if domain == "tumor" else "tumor"
        rates = {
            "target_rate": (target_rate(tr_f[logits], domain, threshold, data.source_groups, s.bootstrap, s.ci,
                                        self.seed),
                            f"share of the {source} test images translated into {domain} that the classifier "
                            f"assigns to {domain}; higher is better; compare with target_rate_reference"),
            "target_rate_reference": (
                target_rate(real_f[logits], domain, threshold, data.real_groups, s.bootstrap, s.ci, self.seed),
                f"share of real {domain} test images the classifier assigns to {domain}: a reference for "
                f"target_rate, not a ceiling (smoothed images can pass the classifier more often than real ones)"),
        }
        return {m: self._row(domain, m, r.value, ci=(r.ci_low, r.ci_high), n=r.n,
                             note=f"{what}; threshold {threshold:.6g} (logit margin, Youden's J on validation "
                                  f"images taken through the same resolution path); CI resamples {r.subjects} "
                                  f"subjects; all {r.n} images; {path_note}")
                for m, (r, what) in rates.items()}


@dataclass
class Translations:
    """What the generative metrics read: per domain d the method translates into, the real test
    images of d with the subject (or duplicate group) of each, and the other domain's test images
    translated into d with the subject of each source image. Images are (N,1,H,W) floats in
    [0,1]. A domain is evaluated when ``translated`` has it (empty: a "not computed" row)."""

    real: dict[str, torch.Tensor]
    translated: dict[str, torch.Tensor]
    real_groups: dict[str, list[str]]
    source_groups: dict[str, list[str]]


def _prepare(data: Translations, domain: str, working_size: int | None) -> tuple[_Domain, str] | str:
    """One domain's uint8 inputs and resolution note, or why the domain cannot be evaluated."""
    for what, images, groups in (("real", data.real.get(domain), data.real_groups.get(domain)),
                                 ("translated", data.translated.get(domain), data.source_groups.get(domain))):
        problem = image_problem(images)
        if problem is None and (groups is None or len(groups) != images.shape[0]):
            problem = f"{0 if groups is None else len(groups)} subject groups for {images.shape[0]} images"
        if problem is None and images.shape[0] < MIN_IMAGES:
            problem = f"only {images.shape[0]} images, need >= {MIN_IMAGES}"
        if problem is not None:
            return f"{what} {domain}: {problem}"
    real, note = resolution_path(data.real[domain], working_size)
    return _Domain(to_uint8(real), to_uint8(data.translated[domain]),
                   np.asarray(data.real_groups[domain], dtype=str),
                   np.asarray(data.source_groups[domain], dtype=str)), note


def _spaces(inception_weights: str | None, mri: MRIExtractor | None, mri_missing: str,
            realism: tuple[FeatureSpace | None, str] | None = None
            ) -> list[tuple[str, FeatureSpace | str, tuple[str, ...]]]:
    """(row id, space or why it is unavailable, its metrics) in report order; ``realism``: the
    ``realism-ssl`` space or why it is missing (None: not part of this evaluation)."""
    try:
        inception: FeatureSpace | str = resolve_inception(inception_weights)
    except FeatureSpaceUnavailable as exc:
        inception = str(exc)
    out = [(INCEPTION_SPACE, inception, INCEPTION_METRICS)]
    if mri is None:
        out.append((MRI_MISSING_SPACE, mri_missing, MRI_METRICS))
    else:
        out.append((mri.space, mri_space(mri), MRI_METRICS))
    if realism is not None:
        out.append((REALISM_SPACE, realism[0] or realism[1], REALISM_METRICS))
    return out


def _threshold(evaluator: _SpaceEvaluator, mri: MRIExtractor, working_size: int | None) -> float | str | None:
    """The MRI classifier's validation threshold, or why it has none (a string). The validation
    images take the translating method's resolution path, as the real and translated test images
    the threshold is applied to do: a threshold fixed on sharper images would not transfer."""
    problem = image_problem(mri.val_images)
    if problem is not None:
        return f"validation images: {problem}"
    val = resolution_path(mri.val_images.detach().float().cpu(), working_size)[0]
    feats = evaluator.features(to_uint8(val), "validation", cached=True)
    return validation_threshold(feats[evaluator.space.layer("isc")], mri.val_labels.cpu())


def _radiomics(cache: FeatureCache, logger: logging.Logger, method: str) -> RadiomicsFeatures | str:
    try:
        return RadiomicsFeatures(radiomics_extractor(), cache, logger)
    except RadiomicsUnavailable as exc:
        logger.warning("%s: FRD not computed: %s", method, exc)
        return str(exc)


def evaluate_generative(method: str, data: Translations, *, settings: MetricSettings, device: torch.device,
                        seed: int, working_size: int | None, inception_weights: str | None,
                        mri: MRIExtractor | None, cache_dir: Path, logger: logging.Logger,
                        mri_missing: str = "no MRI-domain network (no method with the features capability)",
                        partitions: int = REFERENCE_PARTITIONS, frd: bool = True,
                        realism: tuple[FeatureSpace | None, str] | None = None) -> list[dict]:
    """Metric rows (docs/results-schema.md) for every domain and feature space.

    ``working_size``: the translating method's ``Method.working_size`` (None: the images' own
    size). ``mri``: the MRI-domain network, or None with ``mri_missing`` saying why.
    ``realism``: the ``realism-ssl`` space (:mod:`harness.metrics.realism_space`) or None and
    why not; None for the pair leaves its rows out. ``partitions``: seeded subject partitions
    behind ``fid_reference``. ``frd``: also the FRD rows (:mod:`harness.metrics.frd`; False only
    where a caller measures something else, as tests of FID do, since radiomics extraction costs
    seconds). Missing weights or packages, too few images or subjects and bad input give rows
    with ``value: None`` and the reason in ``note``; this never raises for them.
    """
    cache = FeatureCache(Path(cache_dir), logger)
    prepared = {d: _prepare(data, d, working_size) for d in DOMAINS if d in data.translated}
    ready = {d: p[0] for d, p in prepared.items() if not isinstance(p, str)}
    groups = {d: DomainGroups(x.real_groups, x.source_groups) for d, x in ready.items()}
    plan = make_plan(groups, settings.generative_max_images, seed, partitions)
    spaces = _spaces(inception_weights, mri, mri_missing, realism)
    evaluators: dict[str, _SpaceEvaluator | str] = {}
    for sid, space, _ in spaces:
        if isinstance(space, str):
            logger.warning("%s: %s feature space unavailable: %s", method, sid, space)
            evaluators[sid] = space
        else:
            evaluators[sid] = _SpaceEvaluator(method, space, settings, device, seed, cache, logger)
    radiomics = _radiomics(cache, logger, method) if frd and prepared else None
    thresholds: dict[str, float | str | None] = {}
    rows: list[dict] = []
    for domain, item in prepared.items():
        for sid, _, metrics in spaces:
            evaluator = evaluators[sid]
            problem = evaluator if isinstance(evaluator, str) else item if isinstance(item, str) else None
            if problem is None:
                try:
                    if "target_rate" in metrics and sid not in thresholds:
                        thresholds[sid] = _threshold(evaluator, mri, working_size)
                    rows.extend(evaluator.rows(domain, item[0], plan, item[1], thresholds.get(sid)))
                    continue
                except FeatureSpaceUnavailable as exc:
                    logger.warning("%s: %s feature space unavailable: %s", method, sid, exc)
                    evaluators[sid] = problem = str(exc)
            rows.extend(metric_row(method, m, None, domain=domain, feature_space=sid, note=f"not computed: {problem}")
                        for m in metrics)
        if radiomics is None:
            continue
        problem = radiomics if isinstance(radiomics, str) else item if isinstance(item, str) else None
        if problem is None:
            rows.extend(frd_rows(method, domain, item[0].real, item[0].translated, plan, seed, radiomics, item[1]))
        else:
            rows.extend(metric_row(method, m, None, domain=domain, feature_space=FRD_SPACE,
                                   note=f"not computed: {problem}") for m in FRD_METRICS)
    return rows
