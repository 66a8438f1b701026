"""ROC and precision-recall points of every method's test scores, for the run folder.

The report draws curves but computes nothing (it builds without scikit-learn), so the run
stores the points (``curves/detection.json``, see docs/results-schema.md). The points come from
scikit-learn's ``roc_curve`` and ``precision_recall_curve``; the AUROC and AP beside them come from
:func:`harness.metrics.bootstrap.auroc_ap`, the implementation behind metrics.json, so a legend
shows the number of the tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from harness.metrics.bootstrap import auroc_ap

__all__ = ["CURVES_SPLIT", "curve_points", "detection_curves"]

CURVES_SPLIT = "test"


def curve_points(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """One method's entry: ``n`` (finite scores used), ``positives``, ``auroc``, ``ap``, ``roc``
    {fpr, tpr} from (0, 0), ``pr`` {recall, precision} from the lowest threshold up, ending at
    recall 0 and precision 1, and ``note`` (non-finite scores left out, or why there is no curve,
    in which case the other keys are None)."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    finite = np.isfinite(scores)
    labels, scores = labels[finite], scores[finite]
    dropped = int((~finite).sum())
    entry: dict[str, Any] = {"n": int(labels.size), "positives": int(labels.sum()), "auroc": None, "ap": None,
                             "roc": None, "pr": None,
                             "note": f"{dropped} non-finite scores left out of the curves" if dropped else None}
    if np.unique(labels).size < 2:
        entry["note"] = "test scores hold one class only; no curve"
        return entry
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    entry["auroc"], entry["ap"] = auroc_ap(scores, labels)
    entry["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    entry["pr"] = {"recall": recall.tolist(), "precision": precision.tolist()}
    return entry


def detection_curves(scores: pd.DataFrame) -> dict[str, Any]:
    """The content of ``curves/detection.json`` from scores.csv rows (method, split, id, label,
    score): an entry per method with test scores, in the order the methods first appear (include
    the shortcut floor's rows in ``scores`` to store its curve too)."""
    test = scores[scores["split"] == CURVES_SPLIT]
    methods = {method: curve_points(rows["label"].to_numpy(int), rows["score"].to_numpy(float))
               for method, rows in test.groupby("method", sort=False)}
    return {"split": CURVES_SPLIT, "methods": methods}
