"""Fréchet Radiomics Distance (FRD; Konz, Osuala et al., Medical Image Analysis 2026) per domain.

Why beside FID: FRD needs no pretrained network (so it works offline, where Inception cannot) and
its features are standardised radiomics (first-order statistics and texture of the original image,
its Laplacian-of-Gaussian and wavelet bands), which see blur and lost texture that a tumour
classifier was trained to ignore.

Everything that defines the metric comes from the ``frd-score`` package (optional extra
``[frd]``: ``frd-score`` and ``pyradiomics-bhklab``): its FRD v1 pyradiomics configuration, its
per-image extraction (``process_image_mask_pair`` on a PNG, full-image mask), its z-scoring and
its Fréchet distance. What the harness adds:

* **Features cached by content**: one entry per real image (SHA-256 of its uint8 pixels, keyed
  with the package versions and configuration), since extraction costs ~0.15-0.35 s of one CPU
  core per image (64-256 px) and every method of a run shares the real images.
* **Extraction in a process pool**, one forked worker per CPU: pyradiomics uses one core per image,
  so 2 cores extract ~1.7x faster (``benchmarks/bench_frd.py``), with the same features.
* **The same subject-disjoint partitions as FID** (:mod:`harness.metrics.generative_plan`): per
  partition, ``frd_reference`` = d²(A, B) and the numerator d²(A, translated images from source
  subjects outside A), both in one space z-scored on the real images A ∪ B (frd-score's v1
  z-scores on its first set; with a few dozen images per set, twice as many real images give
  steadier scales, and the translated images never set them). The first ``PARTITIONS`` draws are
  used, each set subsampled (seeded) to at most ``MAX_IMAGES`` images so that FRD adds about a
  minute per method on a 2-core CPU.
* **The value is the squared distance d²** (0 for identical sets, so a ratio against the
  reference means what ``fid_relative`` means); frd-score prints ln d², which the notes give too.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from harness.metrics.feature_cache import FeatureCache, cache_key
from harness.metrics.generative_plan import (
    DOMAINS, MIN_IMAGES, Draw, Plan, choose, draws_problem, mean_sd, partitions_text, relative,
)
from harness.results import metric_row

FRD_SPACE = "radiomics-frd-v1"  # the rows' feature_space
FRD_METRICS = ("frd", "frd_reference", "frd_relative")
MAX_IMAGES = 32  # per set and partition: bounds extraction time (see the module docstring)
PARTITIONS = 3
INSTALL = "pip install -e '.[frd]' (or: pip install frd-score pyradiomics-bhklab)"
_LAYER = "radiomics"
POOL_MIN = 4  # fewer images than this are extracted in-process: a pool would cost more than it saves
# fork starts the workers in milliseconds; forkserver and spawn re-import frd-score in each (3-5 s a
# pool: slower than in-process for 40 images on 2 cores). The workers use only numpy, Pillow and
# SimpleITK, never torch or its OpenMP threads, so forking a process that has run torch is safe.
_START_METHOD = "fork" if sys.platform == "linux" else "spawn"


class RadiomicsUnavailable(Exception):
    """frd-score or pyradiomics is missing or broken; the message says how to install them."""


def _frd_module() -> ModuleType:
    try:
        import frd_score.frd as frd
    except ImportError as exc:
        raise RadiomicsUnavailable(f"frd-score is not installed ({exc}); {INSTALL}") from exc
    return frd


@dataclass(frozen=True)
class RadiomicsExtractor:
    """frd-score's FRD v1 2D extractor and what identifies its features (the cache key)."""

    extractor: object
    module: ModuleType
    fingerprint: str
    description: str

    def one(self, image: np.ndarray, folder: Path) -> np.ndarray:
        """FRD v1 features of one (H, W) uint8 image, through frd-score's own per-image path
        (a PNG read by SimpleITK, a full-image mask)."""
        path = folder / "image.png"
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path)  # 2D uint8: mode L
        out = self.module.process_image_mask_pair((str(path), None), feature_extractor=self.extractor,
                                                  frd_version=self.module.FRD_VERSION_V1)
        if out is None:
            raise ValueError("frd-score skipped the image (empty mask)")
        return np.asarray(out[0], dtype=np.float64)


def radiomics_extractor() -> RadiomicsExtractor:
    """The extractor, or RadiomicsUnavailable saying how to install what is missing."""
    frd = _frd_module()
    try:
        import radiomics
    except ImportError as exc:  # frd-score without pyradiomics
        raise RadiomicsUnavailable(f"pyradiomics is not installed ({exc}); {INSTALL}") from exc
    import frd_score

    radiomics.setVerbosity(60)  # as frd-score's compute_frd: no per-image chatter
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = frd.get_feature_extractor(frd_version=frd.FRD_VERSION_V1, image_dim=2)

    config = hashlib.sha256(Path(frd.V1_CONFIG_2D).read_bytes()).hexdigest()
    versions = f"frd-score {frd_score.__version__}, pyradiomics {radiomics.__version__}"
    return RadiomicsExtractor(extractor, frd, f"frd-v1-2d|{versions}|config {config}",
                              f"FRD v1 radiomics ({versions}; Original, LoG and wavelet features)")


def _attempt(extractor: RadiomicsExtractor, image: np.ndarray, folder: Path) -> np.ndarray | str:
    """Features of one image, or the error as text: a failed image is a counted gap, not a stop."""
    try:
        return extractor.one(image, folder)
    except Exception as exc:  # pyradiomics raises many types
        return f"{type(exc).__name__}: {exc}"


_worker: tuple[RadiomicsExtractor, Path] | None = None  # a pool worker's own extractor and PNG folder


def _start_worker(folder: str) -> None:
    """Pool initializer: each worker builds its extractor (it is not picklable) and PNG folder."""
    global _worker
    _worker = radiomics_extractor(), Path(tempfile.mkdtemp(dir=folder))


def _in_worker(image: np.ndarray) -> np.ndarray | str:
    assert _worker is not None, "_start_worker did not run"
    extractor, folder = _worker
    return _attempt(extractor, image, folder)


class RadiomicsFeatures:
    """Per-image FRD features; real images are cached on disk one entry per image content.

    Extraction (pure CPU, one thread per image) runs in a pool of ``workers`` processes, default
    one per CPU; the results are the same as in-process, image by image."""

    def __init__(self, extractor: RadiomicsExtractor, cache: FeatureCache, logger: logging.Logger,
                 workers: int | None = None) -> None:
        self.extractor, self.cache, self.logger = extractor, cache, logger
        self.workers = workers or os.cpu_count() or 1

    def get(self, images: torch.Tensor, idx: np.ndarray, what: str, cached: bool) -> dict[int, np.ndarray | None]:
        """Features of ``images[i]`` ((N,1,H,W) uint8) for each i in ``idx``; None for an image
        the extractor fails on (a constant image has no texture bins), which is then left out
        and counted in the note."""
        rows: dict[int, np.ndarray | None] = {}
        keys = {}
        for i in map(int, idx):
            rows[i] = None
            if cached:
                keys[i] = cache_key(self.extractor.fingerprint, [_LAYER], images[i:i + 1])
                hit = self.cache.load(keys[i], [_LAYER])
                rows[i] = None if hit is None else hit[_LAYER].numpy()
        todo = [i for i, row in rows.items() if row is None]
        if todo:
            self.logger.info("extracting radiomics features of %d %s images (%d from cache)", len(todo), what,
                             len(rows) - len(todo))
        failed: list[str] = []
        for i, out in zip(todo, self._extracted([images[i, 0].numpy() for i in todo]), strict=True):
            if isinstance(out, str):
                failed.append(out)
                continue
            rows[i] = out
            if cached:
                self.cache.save(keys[i], {_LAYER: torch.from_numpy(out)})
        if failed:
            self.logger.warning("radiomics features failed on %d of %d %s images (first: %s)", len(failed),
                                len(rows), what, failed[0])
        return rows

    def _extracted(self, images: list[np.ndarray]) -> Iterator[np.ndarray | str]:
        """Features (or error text) of each image, in order, as they come: the caller caches each."""
        workers = min(self.workers, len(images))
        with tempfile.TemporaryDirectory(prefix="harness-frd-") as tmp:
            if workers == 1 or len(images) < POOL_MIN:
                yield from (_attempt(self.extractor, image, Path(tmp)) for image in images)
                return
            with ProcessPoolExecutor(workers, multiprocessing.get_context(_START_METHOD), initializer=_start_worker,
                                     initargs=(tmp,)) as pool:
                yield from pool.map(_in_worker, images)


def _finite_rows(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x).all(axis=1)]


def frechet_radiomics_distances(reference: np.ndarray, others: Sequence[np.ndarray],
                                normalise_on: np.ndarray | None = None) -> tuple[list[float], int]:
    """Squared Fréchet distance of each of ``others`` to ``reference`` (feature rows) in FRD v1's
    standardised space, and how many features it kept.

    As frd-score's v1: float32 features, images with a non-finite feature left out, z-scored on
    real images (``normalise_on``, default ``reference``: its ``norm_ref="d1"``), features
    constant there dropped. All distances share that space, so they can be divided by one another.
    """
    frd = _frd_module()
    base = _finite_rows(np.asarray(reference if normalise_on is None else normalise_on, dtype=np.float32))
    sets = [_finite_rows(np.asarray(x, dtype=np.float32)) for x in (reference, *others)]
    if min(len(x) for x in sets) < MIN_IMAGES or reference.shape[1] == 0:
        raise ValueError(f"fewer than {MIN_IMAGES} images with finite radiomics features in a set")
    normed = [frd.z_score_normalize(x, 0, 1, base_distribution=base, replace_nan=False, handle_std_zero=False)
              for x in sets]
    keep = base.std(axis=0) > 0  # z-scores of a constant feature are not finite (frd-score drops them)
    if not keep.any():
        raise ValueError("every feature is constant in the real images")
    normed = [x[:, keep].astype(np.float64) for x in normed]
    mu0, sigma0 = normed[0].mean(axis=0), np.cov(normed[0], rowvar=False)
    return [float(frd.calculate_frechet_distance(mu0, sigma0, x.mean(axis=0), np.cov(x, rowvar=False)))
            for x in normed[1:]], int(keep.sum())


def _subsample(plan: Plan, domain: str, seed: int) -> tuple[list[Draw], int]:
    """The first ``PARTITIONS`` draws of the plan, each set cut (seeded) to at most ``MAX_IMAGES``."""
    k = min(plan.h, MAX_IMAGES)
    out = []
    for p, d in enumerate(plan.draws[domain][:PARTITIONS]):
        rng = np.random.default_rng([seed, DOMAINS.index(domain), 3, p])
        out.append(Draw(*(x[choose(x.size, k, rng)] for x in (d.a, d.b, d.translated)), d.pool, d.pool_subjects))
    return out, k


def frd_rows(method: str, domain: str, real: torch.Tensor, translated: torch.Tensor, plan: Plan, seed: int,
             features: RadiomicsFeatures, path_note: str) -> list[dict]:
    """The ``frd``, ``frd_reference`` and ``frd_relative`` rows of one domain (real and translated
    are the (N,1,H,W) uint8 images the plan indexes, after the resolution path)."""
    desc = features.extractor.description

    def row(metric: str, value: float | None = None, std: float | None = None, n: int | None = None, *,
            note: str) -> dict:
        if value is not None and not math.isfinite(value):
            value, std, note = None, None, f"not computed: non-finite result ({note})"
        return metric_row(method, metric, value, domain=domain, feature_space=FRD_SPACE, std=std, n=n,
                          note=f"{desc}; {note}")

    why = draws_problem(plan, domain)
    if why is not None:
        return [row(m, note=f"not computed: {why}") for m in FRD_METRICS]
    draws, k = _subsample(plan, domain, seed)
    real_idx = np.unique(np.concatenate([np.concatenate([d.a, d.b]) for d in draws]))
    tr_idx = np.unique(np.concatenate([d.translated for d in draws]))
    real_f = features.get(real, real_idx, f"real {domain}", cached=True)
    tr_f = features.get(translated, tr_idx, f"translated {domain}", cached=False)
    sizes = [v.size for v in (*real_f.values(), *tr_f.values()) if v is not None]
    width = max(sizes, default=0)

    def usable(v: np.ndarray | None) -> bool:
        return v is not None and v.size == width and bool(np.isfinite(v).all())

    def stack(feats: dict[int, np.ndarray | None], ix: np.ndarray) -> np.ndarray:
        return np.stack([feats[i] if usable(feats[i]) else np.full(width, np.nan) for i in map(int, ix)])

    bad_real, bad_tr = (sum(not usable(v) for v in f.values()) for f in (real_f, tr_f))
    gaps = (f"; left out for lack of finite radiomics features (e.g. a constant image): {bad_real} of "
            f"{len(real_f)} real and {bad_tr} of {len(tr_f)} translated images" if bad_real or bad_tr else "")
    refs, nums, kept, problem = [], [], set(), None
    try:
        for d in draws:
            a, b = stack(real_f, d.a), stack(real_f, d.b)
            real_ab = np.concatenate([a, b])
            (ref,), n_features = frechet_radiomics_distances(a, [b], normalise_on=real_ab)
            refs.append(ref)
            kept.add(n_features)
            try:  # the reference stands without the translations
                nums.append(frechet_radiomics_distances(a, [stack(tr_f, d.translated)], normalise_on=real_ab)[0][0])
            except ValueError as exc:
                problem = f"translated {domain} images: {exc}"
    except ValueError as exc:
        return [row(m, note=f"not computed: real {domain} images: {exc}{gaps}") for m in FRD_METRICS]
    total = len(plan.draws[domain])
    how = (f"{partitions_text(plan, domain, draws)}; FRD uses {len(draws)} of those {total} partitions and k={k} "
           f"images of each of A, B and the translated draw (seeded subsample, at most {MAX_IMAGES}, to bound "
           f"radiomics extraction time); {min(kept)}-{max(kept)} features kept after z-scoring on the real "
           f"images A ∪ B{gaps}; {path_note}")
    ref_mean, ref_sd = mean_sd(refs)
    out = [row("frd_reference", ref_mean, ref_sd, k, note=f"mean ± sd of d²(A, B), real vs real; {how}")]
    if problem is not None:
        return [row("frd", note=f"not computed: {problem}{gaps}"), *out,
                row("frd_relative", note=f"not computed: {problem}{gaps}")]
    num_mean, num_sd = mean_sd(nums)
    ln = f"; ln d² (the log scale frd-score reports) = {math.log(num_mean):.4g}" if num_mean > 0 else ""
    out.insert(0, row("frd", num_mean, num_sd, k, note=f"mean ± sd of d²(A, k={k} translated){ln}; {how}"))
    if ref_mean <= 0:
        out.append(row("frd_relative", n=k, note="not computed: frd_reference is 0 (identical real halves)"))
    else:
        value, std, text = relative(nums, refs)
        out.append(row("frd_relative", value, std, k,
                       note=f"mean d²(A, translated) {text}; 1 = as far as real images of other subjects; {how}"))
    return out
