"""ROC and precision-recall curves with numpy, matching scikit-learn's conventions.

The report site must build without scikit-learn (``tox -e docs`` installs no ML stack), yet its
curves and the AUROC/AP in their legends must equal what the harness computed with sklearn.
So ties are handled as sklearn does: every distinct score is one threshold, and tied scores
move the curve diagonally (AUROC counts a tie as half a win).
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_curve", "roc_auc", "precision_recall_curve", "average_precision"]


def _counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative true and false positives at each distinct score, highest score first."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # index where each distinct score ends
    tps = np.cumsum(y)[last_of_tie].astype(float)
    fps = (last_of_tie + 1) - tps
    return tps, fps


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate), starting at (0, 0); both classes required."""
    tps, fps = _counts(labels, scores)
    if tps[-1] == 0 or fps[-1] == 0:
        raise ValueError("ROC needs both classes")
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids: a tie counts half), as ``roc_auc_score``."""
    fpr, tpr = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) from the lowest threshold up, ending at (1, 0), as ``precision_recall_curve``."""
    tps, fps = _counts(labels, scores)
    if tps[-1] == 0:
        raise ValueError("precision-recall needs positives")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise area under the PR curve, sum of (R_n - R_n-1) P_n, as ``average_precision_score``."""
    precision, recall = precision_recall_curve(labels, scores)
    return float(-np.sum(np.diff(recall) * precision[:-1]))
