"""The resampling behind every confidence interval and paired test of the detection metrics, and
the harness's one AUROC/AP implementation.

Kept apart from :mod:`harness.metrics.detection` (and free of scikit-learn and torch) so that the
paired comparisons (:mod:`harness.metrics.paired`) reuse exactly the same resamples.

* Resampling is stratified: positives and negatives separately (every replicate has both
  classes), or, when the images' subjects are known, whole subjects stratified by whether a
  subject has any tumor image, because slices of one subject are not independent.
* Replicates are integer sample weights evaluated with an exact tie-aware formula that equals
  scikit-learn's AUROC and AP with ``sample_weight`` (tested), so thousands stay fast; when
  samples pool into few units (pixels of images), per-unit counts taken once replace a pass
  over every score per replicate.
  :func:`auroc_ap`, the same formula with every sample counted once, gives every point estimate
  (metrics.json, paired differences, the stored ROC/PR curves' legends), so a point estimate and
  its replicates can never disagree on how ties or AP's steps are counted.
* Intervals are percentile intervals of the replicates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["auroc_ap", "bootstrap_counts", "percentile_interval", "stratified_counts", "subject_counts_note",
           "weighted_auroc_ap"]

_CHUNK_CELLS = 8_000_000  # replicates x score groups evaluated at once (~64 MB of float64)
_UNIT_PATH_FACTOR = 100  # per-unit path when units x (units + positive groups) < this x score groups


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
    ``sample_weight``); NaN where a row weighs no positive (AUROC also where it weighs no negative).

    ``unit`` maps each sample to a resampling unit (e.g. pixel -> image) and ``weights`` is
    then (replicates x units); without it, weights are per sample.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    unit = np.arange(scores.size) if unit is None else np.asarray(unit).astype(np.int64)
    weights = np.atleast_2d(weights).astype(float)
    rank = np.unique(scores, return_inverse=True)[1].ravel()  # dense ascending score rank
    n_groups, n_pos_groups = int(rank.max(initial=-1)) + 1, np.unique(rank[labels]).size
    # Per-unit counts cost units x (units + positive score groups) per replicate in BLAS products,
    # the sweep every score group in slower element-wise passes. Measured on 2 cores: the former
    # is ~80x faster for pooled pixels (263 images, ~4k lesion scores, 200k scores), both are
    # even near a cost ratio of 300, and the sweep wins when every sample is its own unit.
    if weights.shape[1] * (weights.shape[1] + n_pos_groups) < _UNIT_PATH_FACTOR * n_groups:
        return _by_units(rank, labels, unit, weights)
    return _by_score_groups(rank, n_groups, labels, unit, weights)


def _by_score_groups(rank: np.ndarray, n_groups: int, labels: np.ndarray, unit: np.ndarray,
                     weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replicates x score-groups sweep: weighted positives and negatives per group, cumulated."""
    shape = (weights.shape[1], n_groups)
    pos = sp.csr_matrix((labels.astype(float), (unit, rank)), shape=shape)
    neg = sp.csr_matrix(((~labels).astype(float), (unit, rank)), shape=shape)
    chunk = max(1, _CHUNK_CELLS // max(1, n_groups))
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


def _negatives_below(rank: np.ndarray, labels: np.ndarray, unit: np.ndarray, n_units: int,
                     pos_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pos groups x units) counts of each unit's negatives scoring below / at most each positive
    score, and each unit's negative total: one searchsorted over negatives keyed (unit, rank)."""
    stride = int(rank.max(initial=0)) + 1
    keys = np.sort(unit[~labels] * stride + rank[~labels])
    starts = np.searchsorted(keys, np.arange(n_units + 1) * stride)
    queries = np.arange(n_units)[None, :] * stride + pos_ranks[:, None]
    below = np.searchsorted(keys, queries, side="left") - starts[:-1].astype(float)
    upto = np.searchsorted(keys, queries, side="right") - starts[:-1].astype(float)
    return below, upto, np.diff(starts).astype(float)


def _by_units(rank: np.ndarray, labels: np.ndarray, unit: np.ndarray,
              weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit counts, exact: every replicate's AUROC and AP are quadratic and linear forms in
    its unit weights, so the samples are visited once instead of once per replicate.

    AUROC numerator = w' C w with C[i, j] = sum over unit i's positives of unit j's negatives
    below it (+ half the tied ones); AP sums, over the positive score groups g, the weighted
    positives at g times the precision at g, whose true and false positives at or above g are
    linear in w.
    """
    n_units = weights.shape[1]
    pos_ranks, pos_group = np.unique(rank[labels], return_inverse=True)  # ascending
    n_pos = pos_ranks.size
    at = np.bincount(unit[labels] * n_pos + pos_group.ravel(), minlength=n_units * n_pos)
    at = at.reshape(n_units, n_pos).astype(float)  # unit's positives at each positive group
    below, upto, neg_total = _negatives_below(rank, labels, unit, n_units, pos_ranks)
    pairs = at @ (below + upto) / 2.0  # units x units: C above
    tp_units = np.cumsum(at[:, ::-1], axis=1)[:, ::-1]  # positives >= each group
    fp_units = neg_total[:, None] - below.T  # negatives >= each group
    p_tot, n_tot = weights @ at.sum(axis=1), weights @ neg_total
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = ((weights @ pairs) * weights).sum(axis=1) / (p_tot * n_tot)
        ap = _weighted_precision_sum(weights, tp_units, fp_units) / p_tot
    return auroc, ap


def _weighted_precision_sum(weights: np.ndarray, tp_units: np.ndarray, fp_units: np.ndarray) -> np.ndarray:
    """Per replicate, sum over positive score groups of (weighted positives at the group) x
    (precision at it), in replicate chunks of bounded memory."""
    chunk = max(1, _CHUNK_CELLS // max(1, tp_units.shape[1]))
    out = []
    for start in range(0, weights.shape[0], chunk):
        w = weights[start:start + chunk]
        tp, fp = w @ tp_units, w @ fp_units
        at_group = tp - np.concatenate([tp[:, 1:], np.zeros((tp.shape[0], 1))], axis=1)
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
        out.append((at_group * precision).sum(axis=1))
    return np.concatenate(out)


def auroc_ap(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """AUROC and step-wise AP of one score vector (higher = positive), ties counted as
    scikit-learn's ``roc_auc_score`` and ``average_precision_score`` count them."""
    auroc, ap = weighted_auroc_ap(scores, labels, np.ones((1, np.size(scores))))
    return float(auroc[0]), float(ap[0])


def percentile_interval(replicates: np.ndarray, ci: float) -> tuple[float | None, float | None]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return None, None
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)
