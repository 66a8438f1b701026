"""Detection metrics: image AUROC/AP with a validation-chosen threshold, pixel AUROC/AP and
best Dice, each with seeded stratified bootstrap 95% CIs.

Conventions (documented because they change numbers):

* Point estimates of AUROC and AP come from scikit-learn (``roc_auc_score``,
  ``average_precision_score``: the step-wise AP, never a trapezoid over the PR curve).
* The operating threshold is chosen on **validation** scores by maximising Youden's J
  (sensitivity + specificity - 1); ties go to the highest such threshold. A score ``>=``
  the threshold means "tumor". Sensitivity, specificity and balanced accuracy are then
  measured on **test** at that fixed threshold.
* Bootstrap CIs resample positives and negatives separately (stratified, so every replicate
  has both classes), from ``np.random.default_rng(seed)``, and report percentile intervals.
  When the images' subjects are known, whole subjects are resampled instead (stratified by
  whether a subject has any tumor image), because slices of one subject are not independent.
  Replicates are evaluated as integer sample weights with an exact tie-aware formula that
  equals scikit-learn's with ``sample_weight`` (tested), so thousands of replicates stay fast.
* Pixel metrics pool the pixels inside the brain mask of every test image (a no_tumor image
  contributes only negatives). Above ``max_pixels`` pixels a seeded uniform subsample is
  used; the pixel CIs resample *images* (or subjects, as above), not pixels, because pixels of
  one image are not independent.
* Best Dice is an oracle upper bound: the pooled Dice over tumor images of ``map >= t``
  (inside the brain) vs the mask, maximised over a grid of ``t`` at quantiles of the pooled
  in-brain map values of those images; the chosen ``t`` is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from harness.config import MetricSettings

__all__ = [
    "Estimate", "bootstrap_counts", "choose_threshold", "rates_at_threshold", "stratified_counts",
    "subject_counts_note",
    "weighted_auroc_ap", "image_detection", "pixel_detection", "best_dice",
    "DEFAULT_MAX_PIXELS", "DICE_GRID_SIZE",
]

DEFAULT_MAX_PIXELS = 200_000
DICE_GRID_SIZE = 199
_CHUNK_CELLS = 8_000_000  # replicates x score groups evaluated at once (~64 MB of float64)


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


def stratified_counts(strata: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling counts: each stratum is resampled with replacement to its size."""
    strata = np.asarray(strata)
    flat = np.zeros(n_boot * strata.size, dtype=np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        draws = members[rng.integers(0, members.size, size=(n_boot, members.size))]
        cells = (np.arange(n_boot)[:, None] * strata.size + draws).ravel()
        flat += np.bincount(cells, minlength=flat.size)
    return flat.reshape(n_boot, strata.size)


def _subjects(labels: np.ndarray, groups: Sequence[str] | np.ndarray | None,
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(subject index of each sample, whether each subject has a positive), or None when there
    are no groups or every sample is its own group."""
    if groups is None:
        return None
    names, member_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    if member_of.size != labels.size:
        raise ValueError(f"{member_of.size} groups for {labels.size} samples")
    if names.size == labels.size:
        return None
    has_positive = np.zeros(names.size, dtype=int)
    np.maximum.at(has_positive, member_of, labels)
    return member_of, has_positive


def bootstrap_counts(labels: np.ndarray, groups: Sequence[str] | np.ndarray | None, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling counts for the CIs.

    Without ``groups``, or when every sample is its own group, samples are resampled within their
    label. With groups (subjects), whole groups are resampled, stratified by whether a group holds
    any positive: slices of one subject are not independent, and resampling them one by one
    would give intervals as if the test set held hundreds of patients instead of a dozen.
    """
    labels = np.asarray(labels).astype(int)
    subjects = _subjects(labels, groups)
    if subjects is None:
        return stratified_counts(labels, n_boot, rng)
    member_of, has_positive = subjects
    return stratified_counts(has_positive, n_boot, rng)[:, member_of]


def subject_counts_note(labels: np.ndarray, groups: Sequence[str] | np.ndarray | None) -> str | None:
    """How many subjects a subject-level interval rests on (None when images are resampled):
    with a handful of subjects a bootstrap interval is itself rough, and the reader should know."""
    subjects = _subjects(np.asarray(labels).astype(int), groups)
    if subjects is None:
        return None
    n_pos, n_all = int(subjects[1].sum()), int(subjects[1].size)
    return f"CI resamples {n_pos} subjects with tumor images and {n_all - n_pos} without"


def weighted_auroc_ap(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                      unit: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP of each row of ``weights``, exact with ties (as scikit-learn's with
    ``sample_weight``).

    ``unit`` maps each sample to a resampling unit (e.g. pixel -> image) and ``weights`` is
    then (replicates x units); without it, weights are per sample.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    unit = np.arange(scores.size) if unit is None else np.asarray(unit)
    weights = np.atleast_2d(weights).astype(float)
    n_units = weights.shape[1]
    uniq, group = np.unique(scores, return_inverse=True)  # ascending score groups
    shape = (n_units, uniq.size)
    pos = sp.csr_matrix((labels.astype(float), (unit, group)), shape=shape)
    neg = sp.csr_matrix(((~labels).astype(float), (unit, group)), shape=shape)
    chunk = max(1, _CHUNK_CELLS // max(1, uniq.size))
    aurocs, aps = [], []
    for start in range(0, weights.shape[0], chunk):
        w = weights[start:start + chunk]
        p = np.asarray((pos.T @ w.T).T)  # replicates x groups
        n = np.asarray((neg.T @ w.T).T)
        p_tot, n_tot = p.sum(axis=1), n.sum(axis=1)
        below = np.cumsum(n, axis=1) - n
        with np.errstate(invalid="ignore", divide="ignore"):
            aurocs.append((p * (below + 0.5 * n)).sum(axis=1) / (p_tot * n_tot))
            tp = np.cumsum(p[:, ::-1], axis=1)
            fp = np.cumsum(n[:, ::-1], axis=1)
            precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
            aps.append((p[:, ::-1] * precision).sum(axis=1) / p_tot)
    return np.concatenate(aurocs), np.concatenate(aps)


def _interval(replicates: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None, None
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


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
    point = {"auroc": float(roc_auc_score(y, s)), "ap": float(average_precision_score(y, s))}
    boot = dict(zip(("auroc", "ap"), weighted_auroc_ap(s, y, counts))) if counts is not None else {}
    subjects_note = subject_counts_note(y, test_groups) if counts is not None else None
    for metric, value in point.items():
        low, high = _interval(boot[metric], settings.ci) if boot else (None, None)
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
        low, high = _interval(boot_rates[metric], settings.ci) if boot_rates else (None, None)
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
    and best Dice for (N, H, W) maps vs masks."""
    image_labels = np.asarray(image_labels).astype(int)
    maps = np.asarray(maps, dtype=float)
    if maps.shape[0] != image_labels.size:
        raise ValueError(f"{maps.shape[0]} maps for {image_labels.size} images")
    values, truth, image = _in_brain(maps, masks, brain)
    n_images = int(image_labels.size)
    dice = best_dice(maps, masks, brain, image_labels)
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
    point = {"pixel_auroc": float(roc_auc_score(truth, values)),
             "pixel_ap": float(average_precision_score(truth, values))}
    boot: dict[str, np.ndarray] = {}
    if settings.bootstrap > 0:
        counts = bootstrap_counts(image_labels, groups, settings.bootstrap, rng)
        boot = dict(zip(("pixel_auroc", "pixel_ap"), weighted_auroc_ap(values, truth, counts, unit=image)))
    out = []
    for metric, value in point.items():
        low, high = _interval(boot[metric], settings.ci) if boot else (None, None)
        out.append(Estimate(metric, value, low, high, n_images, sub_note))
    return out + [dice]


def best_dice(maps: np.ndarray, masks: np.ndarray, brain: np.ndarray,
              image_labels: Sequence[int] | np.ndarray, grid_size: int = DICE_GRID_SIZE) -> Estimate:
    """Oracle best pooled Dice over tumor images; ``note`` names the threshold."""
    image_labels = np.asarray(image_labels).astype(int)
    tumor = np.flatnonzero(image_labels == 1)
    if tumor.size == 0:
        return Estimate("best_dice", None, n=0, note="not computed: no tumor images")
    maps = np.asarray(maps, dtype=float)
    maps = maps[:, 0] if maps.ndim == 4 else maps
    masks_t = np.asarray(masks).astype(bool).reshape(maps.shape)[tumor]
    values, truth, _ = _in_brain(maps[tumor], masks_t, np.asarray(brain).reshape(maps.shape)[tumor])
    n_mask = int(masks_t.sum())  # the whole mask counts, also any part outside the brain mask
    if n_mask == 0:
        return Estimate("best_dice", None, n=int(tumor.size), note="not computed: the tumor masks are empty")
    if values.size == 0 or not np.all(np.isfinite(values)):
        return Estimate("best_dice", None, n=int(tumor.size),
                        note="not computed: no finite in-brain map values")
    order = np.argsort(-values, kind="stable")
    desc, hits = values[order], np.cumsum(truth[order])
    grid = np.unique(np.quantile(values, np.linspace(0.0, 1.0, grid_size + 2)[1:]))
    # number of pixels with value >= t, via the descending order
    n_pred = np.searchsorted(-desc, -grid, side="right")
    tp = np.where(n_pred > 0, hits[np.maximum(n_pred - 1, 0)], 0)
    dice = 2.0 * tp / (n_pred + n_mask)
    best = int(np.argmax(dice))
    return Estimate("best_dice", float(dice[best]), n=int(tumor.size), note=f"threshold={grid[best]:.6g}")
