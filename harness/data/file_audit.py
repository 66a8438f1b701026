"""The file audit: could a classifier tell the labels apart from file properties alone?

Public brain-tumor sets differ by class in file format, size, channel count and brightness
because their classes were collected from different sources; this audit measures that from the
scan-time metadata, before any image is decoded. :mod:`harness.data.input_audit` runs the same
AUROC test (:func:`auroc_entry`) on the images as the methods receive them.

How to read the shortcut audit: each non-anatomical feature (width, height, aspect, file_size,
channels, mean_brightness; and each value of format, mode and, in a cohort of several sources,
source, one-hot as ``format=JPEG`` or ``source=ixi``) gets the
AUROC of the positive label (tumor) ranked by that feature alone, and ``strength = max(auc, 1 - auc)``
because a classifier can exploit either direction. A feature is ``flagged`` at strength >=
``SHORTCUT_THRESHOLD`` (0.70): one metadata number alone then separates the classes about as well as
a weak real detector (published brain-MRI anomaly detectors score image AUROC 0.75-0.92), so method
rankings on such data may reflect the shortcut and not the anatomy. A constant feature gets AUROC
0.5 with the note "constant"; a feature no record has is listed with AUROC null and the note
"not available". ``verdict`` is "no file property flagged" or "N feature(s) flagged: name (AUROC x), ...";
it is never called clean, because these properties are not what a model sees: the input audit is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from harness.data.types import TUMOR, Record

__all__ = ["CATEGORICAL_FEATURES", "NO_FILE_FLAG", "NUMERIC_FEATURES", "POSITIVE_LABEL", "SHORTCUT_THRESHOLD",
           "aspect", "auroc_entry", "feature_value", "shortcut_audit"]

SHORTCUT_THRESHOLD = 0.70
NO_FILE_FLAG = "no file property flagged"
POSITIVE_LABEL = TUMOR
NUMERIC_FEATURES = ("width", "height", "aspect", "file_size", "channels", "mean_brightness")
CATEGORICAL_FEATURES = ("format", "mode", "source")
# listed only when some record has it: ``source`` names the --data source of a cohort of several
# (healthy images from one dataset and tumor images from another make it predict the label)
OPTIONAL_FEATURES = frozenset({"source"})


def shortcut_audit(records: Sequence[Record], positive_label: str = POSITIVE_LABEL) -> dict[str, Any]:
    """AUROC of the label against each non-anatomical feature; flags strength >= threshold."""
    labels = sorted({r.label for r in records})
    audit: dict[str, Any] = {"threshold": SHORTCUT_THRESHOLD, "positive_label": positive_label,
                             "n": len(records), "features": [], "flagged": []}
    if len(labels) != 2:
        audit["verdict"] = f"not applicable: needs exactly two labels, found {labels}"
        return audit
    positive = positive_label if positive_label in labels else labels[-1]
    audit["positive_label"] = positive
    y = np.array([r.label == positive for r in records], dtype=int)
    label_of = np.array([r.label for r in records])
    for name in NUMERIC_FEATURES:
        values = [feature_value(r, name) for r in records]
        audit["features"].append(_numeric_entry(name, y, label_of, values))
    for name in CATEGORICAL_FEATURES:
        values = [r.meta.get(name) for r in records]
        if name in OPTIONAL_FEATURES and all(v is None for v in values):
            continue
        audit["features"].extend(_categorical_entries(name, y, label_of, values))
    flagged = sorted((f for f in audit["features"] if f["flagged"]), key=lambda f: -f["strength"])
    audit["flagged"] = [f["feature"] for f in flagged]
    if not flagged:
        audit["verdict"] = NO_FILE_FLAG
    else:
        noun = "feature" if len(flagged) == 1 else "features"
        listed = ", ".join(f"{f['feature']} (AUROC {f['auroc']:.2f})" for f in flagged)
        audit["verdict"] = f"{len(flagged)} {noun} flagged: {listed}"
    return audit


def _numeric_entry(name: str, y: np.ndarray, label_of: np.ndarray,
                   values: list[float | None]) -> dict[str, Any]:
    keep = np.array([v is not None for v in values], dtype=bool)
    x = np.array([v if k else 0.0 for v, k in zip(values, keep)], dtype=float)[keep]
    by_label = {lab: (float(np.median(x[label_of[keep] == lab])) if np.any(label_of[keep] == lab) else None)
                for lab in sorted(set(label_of.tolist()))}
    entry = auroc_entry(name, y[keep], x)
    entry["by_label"] = {"median": by_label}
    missing = int((~keep).sum())
    if 0 < missing < len(values):
        entry["note"] = _join_notes(entry["note"], f"missing for {missing} images")
    return entry


def _categorical_entries(name: str, y: np.ndarray, label_of: np.ndarray,
                         values: list[Any]) -> list[dict[str, Any]]:
    keep = np.array([v is not None for v in values], dtype=bool)
    cats = np.array([str(v) for v, k in zip(values, keep) if k], dtype=object)
    labels = sorted(set(label_of.tolist()))
    categories = sorted(set(cats.tolist()))
    if len(categories) <= 1:
        entry = auroc_entry(name, y[keep], np.zeros(len(cats)))
        if categories:
            entry["note"] = f"constant (all {categories[0]})"
        entry["by_label"] = None
        return [entry]
    entries = []
    for cat in categories:
        is_cat = (cats == cat).astype(float)
        entry = auroc_entry(f"{name}={cat}", y[keep], is_cat)
        entry["by_label"] = {"share": {lab: (float(is_cat[label_of[keep] == lab].mean())
                                             if np.any(label_of[keep] == lab) else None) for lab in labels}}
        missing = int((~keep).sum())
        if missing:
            entry["note"] = _join_notes(entry["note"], f"missing for {missing} images")
        entries.append(entry)
    return entries


def auroc_entry(name: str, y: np.ndarray, x: np.ndarray) -> dict[str, Any]:
    """One audit row: the AUROC of label ``y`` ranked by feature ``x``, its strength and flag
    (shared by the file audit here and the input audit of :mod:`harness.data.input_audit`)."""
    entry: dict[str, Any] = {"feature": name, "n": int(len(x)), "auroc": None, "strength": None,
                             "flagged": False, "note": None}
    if len(x) == 0:
        entry["note"] = "not available"
    elif len(set(y.tolist())) < 2:
        entry["note"] = "only one label among images with this feature"
    elif np.all(x == x[0]):
        entry.update(auroc=0.5, strength=0.5, note="constant")
    else:
        auc = float(roc_auc_score(y, x))
        strength = max(auc, 1.0 - auc)
        entry.update(auroc=round(auc, 4), strength=round(strength, 4),
                     flagged=bool(strength >= SHORTCUT_THRESHOLD))
    return entry


def _join_notes(a: str | None, b: str) -> str:
    return b if not a else f"{a}; {b}"


def feature_value(record: Record, name: str) -> float | None:
    """A numeric metadata value, or None when absent or not a finite number."""
    if name == "aspect":
        return aspect(record)
    value = record.meta.get(name)
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def aspect(record: Record) -> float | None:
    w, h = feature_value(record, "width"), feature_value(record, "height")
    return None if w is None or h is None or h <= 0 else w / h
