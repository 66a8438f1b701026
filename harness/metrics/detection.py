"""Detection metrics: image AUROC/AP with a validation-chosen threshold, pixel AUROC/AP, Dice at
a validation-chosen threshold and the oracle Dice, with seeded bootstrap 95% CIs.

Conventions (documented because they change numbers):

* Point estimates of AUROC and AP come from :func:`harness.metrics.bootstrap.auroc_ap`, the
  harness's one implementation (equal to scikit-learn's ``roc_auc_score`` and
  ``average_precision_score``, ties and weights included, tested; AP is the step-wise AP, never a
  trapezoid over the PR curve); the bootstrap replicates use the same formula.
* The operating threshold is chosen on **validation** scores by maximising Youden's J
  (sensitivity + specificity - 1); ties go to the highest such threshold. A score ``>=``
  the threshold means "tumor". Sensitivity, specificity and balanced accuracy are then
  measured on **test** at that fixed threshold.
* CIs come from :mod:`harness.metrics.bootstrap` (stratified; whole subjects when known) with
  ``np.random.default_rng(seed)``: every metric of a method, and every method of a run, sees the
  same resamples, which is what makes the paired differences of :mod:`harness.metrics.paired`
  paired.
* Pixel metrics pool the pixels inside the brain mask of every test image (a no_tumor image
  contributes only negatives). Above ``max_pixels`` pixels a seeded uniform subsample is
  used; the pixel CIs resample *images* (or subjects, as above), not pixels, because pixels of
  one image are not independent.
* ``dice`` is the honest localisation number: ``map >= t`` inside the brain, with ``t`` the
  threshold that maximises the pooled Dice over **all validation images** (exact search over
  every distinct map value), then pooled over **all test images**, so a map that lights up
  healthy slices pays for it. Its CI resamples subjects (or images) like the others.
* ``dice_oracle`` is an upper bound, not a result: the pooled Dice over the same test images as
  ``dice`` (healthy ones count), at the threshold that maximises it on test (the same exact
  search). It bounds ``dice`` exactly, so their gap is the cost of fixing the threshold on
  validation. Its note says so. (Older runs call it ``best_dice``; runs written before December 2026
  pooled tumor images only, over a grid of thresholds.)
* Both Dice count the whole lesion mask (also any part outside the brain mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from harness.config import MetricSettings
from harness.metrics.bootstrap import (auroc_ap, bootstrap_counts, percentile_interval, stratified_counts,
                                       subject_counts_note, weighted_auroc_ap)

__all__ = [
    "Estimate", "bootstrap_counts", "choose_threshold", "rates_at_threshold", "stratified_counts",
    "subject_counts_note", "weighted_auroc_ap", "image_detection", "pixel_detection", "dice_oracle",
    "choose_dice_threshold", "dice_at_threshold", "ORACLE_NOTE", "DEFAULT_MAX_PIXELS",
]

DEFAULT_MAX_PIXELS = 200_000
ORACLE_NOTE = "threshold chosen on test"


@dataclass(frozen=True)
class Estimate:
    """One metric: value, percentile CI, sample count and, if not computed, the reason."""

    metric: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    note: str | None = None


def _one_class_note(labels: np.ndarray, where: str) -> str | None:
    if labels.size == 0:
        return f"not computed: no {where} samples"
    if np.unique(labels).size < 2:
        return f"not computed: only one class in {where}"
    return None


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Threshold maximising Youden's J on (validation) scores; None with a single class."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
    if _one_class_note(labels, "val") is not None:
        return None
    fpr, tpr, thresholds = roc_curve(labels, scores)
    finite = np.isfinite(thresholds)  # the first threshold (inf) predicts nothing positive
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float,
                       weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sensitivity, specificity and balanced accuracy of ``score >= threshold``.

    ``weights`` (replicates x samples) evaluates many bootstrap replicates at once.
    """
    labels = np.asarray(labels).astype(bool)
    pred = np.asarray(scores, dtype=float) >= threshold
    w = np.ones((1, labels.size)) if weights is None else np.atleast_2d(weights).astype(float)
    sens = (w @ (pred & labels)) / (w @ labels)
    spec = (w @ (~pred & ~labels)) / (w @ ~labels)
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": (sens + spec) / 2}


def image_detection(val_labels: np.ndarray, val_scores: np.ndarray, test_labels: np.ndarray,
                    test_scores: np.ndarray, settings: MetricSettings, seed: int,
                    test_groups: Sequence[str] | np.ndarray | None = None,
                    ) -> tuple[list[Estimate], float | None]:
    """Image-level metrics on test with the threshold from validation; returns the estimates
    and the threshold (None when validation has one class). ``test_groups`` (the subject of each
    test image) makes the CIs resample subjects (:func:`bootstrap_counts`)."""
    y = np.asarray(test_labels).astype(int)
    s = np.asarray(test_scores, dtype=float)
    n = int(y.size)
    if not np.all(np.isfinite(s)):
        note = f"not computed: {int((~np.isfinite(s)).sum())} non-finite test score(s)"
        return [Estimate(m, None, n=n, note=note) for m in
                ("auroc", "ap", "ap_chance", "sensitivity", "specificity", "balanced_accuracy")], None
    threshold = choose_threshold(val_labels, val_scores)
    chance = Estimate("ap_chance", float(y.mean()) if n else None, n=n,
                      note=None if n else "not computed: no test samples")
    note = _one_class_note(y, "test")
    if note is not None:
        return [Estimate(m, None, n=n, note=note) for m in
                ("auroc", "ap", "sensitivity", "specificity", "balanced_accuracy")] + [chance], threshold

    rng = np.random.default_rng(seed)
    counts = bootstrap_counts(y, test_groups, settings.bootstrap, rng) if settings.bootstrap > 0 else None
    out = []
    point = dict(zip(("auroc", "ap"), auroc_ap(s, y)))
    boot = dict(zip(("auroc", "ap"), weighted_auroc_ap(s, y, counts))) if counts is not None else {}
    subjects_note = subject_counts_note(y, test_groups) if counts is not None else None
    for metric, value in point.items():
        low, high = percentile_interval(boot[metric], settings.ci) if boot else (None, None)
        out.append(Estimate(metric, value, low, high, n, subjects_note if metric == "auroc" else None))
    out.append(chance)
    if threshold is None:
        note = "not computed: validation has only one class, so no threshold"
        out += [Estimate(m, None, n=n, note=note)
                for m in ("sensitivity", "specificity", "balanced_accuracy")]
        return out, None
    rates = rates_at_threshold(y, s, threshold)
    boot_rates = rates_at_threshold(y, s, threshold, counts) if counts is not None else {}
    for metric, value in rates.items():
        low, high = percentile_interval(boot_rates[metric], settings.ci) if boot_rates else (None, None)
        out.append(Estimate(metric, float(value[0]), low, high, n, f"threshold={threshold:.6g}"))
    return out, threshold


def _in_brain(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray):
    """Flatten in-brain pixels: values, mask labels, and the image index of each pixel."""
    maps = np.asarray(maps, dtype=float)
    if maps.ndim == 4:
        maps = maps[:, 0]
    masks = np.asarray(masks).astype(bool).reshape(maps.shape)
    brain = np.asarray(brain).astype(bool).reshape(maps.shape)
    image = np.broadcast_to(np.arange(maps.shape[0])[:, None, None], maps.shape)
    return maps[brain], masks[brain], image[brain]


def pixel_detection(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                    image_labels: Sequence[int] | np.ndarray, settings: MetricSettings, seed: int,
                    max_pixels: int = DEFAULT_MAX_PIXELS,
                    groups: Sequence[str] | np.ndarray | None = None) -> list[Estimate]:
    """Pixel AUROC, pixel AP (CIs over images, or over ``groups`` of images such as subjects)
    and the oracle Dice for (N, H, W) maps vs masks."""
    image_labels = np.asarray(image_labels).astype(int)
    maps = np.asarray(maps, dtype=float)
    if maps.shape[0] != image_labels.size:
        raise ValueError(f"{maps.shape[0]} maps for {image_labels.size} images")
    values, truth, image = _in_brain(maps, masks, brain)
    n_images = int(image_labels.size)
    dice = dice_oracle(maps, masks, brain, image_labels)
    if not np.all(np.isfinite(values)):
        note = "not computed: the maps have non-finite values"
        return [Estimate("pixel_auroc", None, n=n_images, note=note),
                Estimate("pixel_ap", None, n=n_images, note=note), dice]
    note = _one_class_note(truth.astype(int), "the in-brain pixels")
    if note is not None:
        return [Estimate("pixel_auroc", None, n=n_images, note=note),
                Estimate("pixel_ap", None, n=n_images, note=note), dice]
    rng = np.random.default_rng(seed)
    sub_note = None
    if values.size > max_pixels:
        keep = np.sort(rng.choice(values.size, size=max_pixels, replace=False))
        sub_note = f"seeded subsample of {max_pixels} of {values.size} in-brain pixels"
        values, truth, image = values[keep], truth[keep], image[keep]
        if np.unique(truth).size < 2:
            note = "not computed: the pixel subsample has only one class"
            return [Estimate("pixel_auroc", None, n=n_images, note=note),
                    Estimate("pixel_ap", None, n=n_images, note=note), dice]
    point = dict(zip(("pixel_auroc", "pixel_ap"), auroc_ap(values, truth)))
    boot: dict[str, np.ndarray] = {}
    if settings.bootstrap > 0:
        counts = bootstrap_counts(image_labels, groups, settings.bootstrap, rng)
        boot = dict(zip(("pixel_auroc", "pixel_ap"), weighted_auroc_ap(values, truth, counts, unit=image)))
    out = []
    for metric, value in point.items():
        low, high = percentile_interval(boot[metric], settings.ci) if boot else (None, None)
        out.append(Estimate(metric, value, low, high, n_images, sub_note))
    return out + [dice]


def _squeeze(maps: np.ndarray) -> np.ndarray:
    maps = np.asarray(maps, dtype=float)
    return maps[:, 0] if maps.ndim == 4 else maps


def dice_oracle(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                image_labels: Sequence[int] | np.ndarray) -> Estimate:
    """The pooled Dice over the same images as ``dice`` (all of them, healthy ones included), at
    the threshold that maximises it on these same (test) images: the exact upper bound of
    ``dice``, so their gap is the price of fixing the threshold on validation and nothing else.
    ``note`` says so and names the threshold."""
    n = int(np.asarray(image_labels).size)
    maps = _squeeze(maps)
    masks = np.asarray(masks).astype(bool).reshape(maps.shape)
    if not masks.any():
        return Estimate("dice_oracle", None, n=n, note="not computed: the tumor masks are empty")
    if not np.all(np.isfinite(maps)):
        return Estimate("dice_oracle", None, n=n, note="not computed: no finite in-brain map values")
    brain = np.asarray(brain).reshape(maps.shape)
    threshold = choose_dice_threshold(maps, masks, brain)
    if threshold is None:
        return Estimate("dice_oracle", None, n=n, note="not computed: no in-brain map values")
    tp, pred, truth = _dice_counts(maps, masks, brain, threshold)
    value = 2.0 * tp.sum() / (pred.sum() + truth.sum())
    return Estimate("dice_oracle", float(value), n=n,
                    note=f"{ORACLE_NOTE}: threshold={threshold:.6g}; the same {n} images as Dice pooled")


def choose_dice_threshold(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray) -> float | None:
    """The threshold that maximises the pooled Dice over all (validation) images, healthy ones
    included, searched exactly over every distinct in-brain map value; ties go to the highest
    threshold. None when there is no lesion pixel or no finite map value to choose from."""
    maps = _squeeze(maps)
    masks = np.asarray(masks).astype(bool).reshape(maps.shape)
    values, truth, _ = _in_brain(maps, masks, np.asarray(brain).reshape(maps.shape))
    n_mask = int(masks.sum())
    if n_mask == 0 or values.size == 0 or not np.all(np.isfinite(values)):
        return None
    order = np.argsort(-values, kind="stable")
    desc, hits = values[order], np.cumsum(truth[order])
    last = np.flatnonzero(np.append(desc[1:] != desc[:-1], True))  # last pixel of each distinct value
    dice = 2.0 * hits[last] / (last + 1 + n_mask)
    return float(desc[last[int(np.argmax(dice))]])


def _dice_counts(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: true-positive, predicted and lesion pixel counts of ``map >= threshold`` in the brain."""
    maps = _squeeze(maps)
    masks = np.asarray(masks).astype(bool).reshape(maps.shape)
    pred = (maps >= threshold) & np.asarray(brain).astype(bool).reshape(maps.shape)
    axes = (1, 2)
    return (pred & masks).sum(axis=axes), pred.sum(axis=axes), masks.sum(axis=axes)


def dice_at_threshold(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
                      image_labels: Sequence[int] | np.ndarray, threshold: float | None,
                      settings: MetricSettings, seed: int,
                      groups: Sequence[str] | np.ndarray | None = None) -> Estimate:
    """Pooled Dice over all images at a threshold fixed beforehand (on validation), with a CI
    over the same resamples as the image metrics (subjects when ``groups`` are given)."""
    image_labels = np.asarray(image_labels).astype(int)
    n = int(image_labels.size)
    if threshold is None:
        return Estimate("dice", None, n=n,
                        note="not computed: no validation threshold (validation has no lesion pixels or finite maps)")
    maps = _squeeze(maps)
    if not np.all(np.isfinite(maps)):
        return Estimate("dice", None, n=n, note="not computed: the maps have non-finite values")
    tp, pred, truth = _dice_counts(maps, masks, brain, threshold)
    if pred.sum() + truth.sum() == 0:
        return Estimate("dice", None, n=n, note="not computed: no lesion and no predicted pixel")
    value = 2.0 * tp.sum() / (pred.sum() + truth.sum())
    note = f"threshold={threshold:.6g} chosen on validation; all {n} images pooled (healthy ones count)"
    w = bootstrap_counts(image_labels, groups, settings.bootstrap, np.random.default_rng(seed)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = 2.0 * (w @ tp) / (w @ pred + w @ truth)
    low, high = percentile_interval(replicates, settings.ci)
    return Estimate("dice", float(value), low, high, n, note)
