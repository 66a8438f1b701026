"""An example plugin metric suite: how much a method's tumor and no-tumor test scores overlap.

AUROC says how often a tumor image outscores a healthy one; it does not say whether one threshold
can separate them. The overlapping coefficient of the two score densities does: the area under
the smaller of the two, 0 when the classes never share a score, 1 when their scores are
distributed alike. The densities are Gaussian kernel estimates (Silverman's bandwidth per class),
so the value does not change when a method's scores are shifted or scaled. Its point is to show
the whole plugin-suite surface: needs, a MetricInfo, rows with a subject-bootstrap CI.
"""

from __future__ import annotations

import numpy as np

from harness.metrics.suite import (MethodEvaluation, MetricInfo, MetricSuite, bootstrap_counts, metric_row,
                                   percentile_interval, subject_counts_note)

__all__ = ["ScoreOverlap", "overlap_coefficient"]

GRID_POINTS = 512


def _bandwidth(scores: np.ndarray, span: float) -> float:
    """Silverman's rule of thumb; a class whose scores barely vary gets a narrow kernel of 1% of
    all scores' span (its density is then a spike)."""
    sd = float(np.std(scores, ddof=1)) if scores.size > 1 else 0.0
    iqr = float(np.subtract(*np.percentile(scores, [75, 25]))) / 1.34
    h = 0.9 * (min(sd, iqr) if iqr > 0 else sd) * scores.size ** -0.2
    return max(h, 0.01 * span)


def overlap_coefficient(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The overlapping coefficient of the label-1 and label-0 score densities, once per row of
    ``weights`` (bootstrap counts, replicates x samples; None: every sample once). The kernels
    stay those of the full sample, so a replicate only reweights them. NaN for a replicate
    that lost a class."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    w = np.ones((1, scores.size)) if weights is None else np.atleast_2d(weights).astype(float)
    span = float(scores.max() - scores.min())
    if span == 0:
        return np.where((w @ labels > 0) & (w @ ~labels > 0), 1.0, np.nan)
    h = {c: _bandwidth(scores[labels == c], span) for c in (True, False)}
    pad = 4 * max(h.values())
    grid = np.linspace(scores.min() - pad, scores.max() + pad, GRID_POINTS)
    densities = []
    for c in (True, False):
        members = labels == c
        z = (grid[:, None] - scores[members][None, :]) / h[c]
        kernels = np.exp(-0.5 * z ** 2) / (h[c] * np.sqrt(2 * np.pi))  # grid x members
        mass = w[:, members].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            densities.append((kernels @ w[:, members].T) / mass)  # grid x replicates
    smaller = np.minimum(*densities)
    return (smaller[:-1] + smaller[1:]).sum(axis=0) / 2 * (grid[1] - grid[0])  # trapezoids on the even grid


class ScoreOverlap(MetricSuite):
    """Registered by the entry point ``score-overlap`` (pyproject.toml); runs for every method."""

    needs = frozenset({"scores"})
    infos = (MetricInfo("score_overlap", "Score overlap", "score distribution", higher_is_better=False,
                        summarised=True),)

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        labels, scores = ev.test.labels.numpy().astype(int), np.asarray(ev.test_out.scores, dtype=float)
        n = int(labels.size)
        why = ("not computed: non-finite test scores" if not np.all(np.isfinite(scores)) else
               "not computed: the test split holds one class" if np.unique(labels).size < 2 else None)
        if why is not None:
            return [metric_row(ev.method, "score_overlap", None, n=n, note=why)]
        value = float(overlap_coefficient(scores, labels)[0])
        low = high = None
        if ev.settings.bootstrap > 0:
            counts = bootstrap_counts(labels, ev.subjects, ev.settings.bootstrap, np.random.default_rng(ev.seed))
            low, high = percentile_interval(overlap_coefficient(scores, labels, counts), ev.settings.ci)
        note = "Gaussian KDE per class (Silverman bandwidth)"
        resampled = subject_counts_note(labels, ev.subjects)
        return [metric_row(ev.method, "score_overlap", value, ci_low=low, ci_high=high, n=n,
                           note=f"{note}; {resampled}" if resampled else note)]
