"""Audit of what the model sees: simple features of the images as methods receive them, and how
well each alone tells tumor from no_tumor.

The file audit of :mod:`harness.data.file_audit` looks at width, format and raw brightness; after the
per-image percentile scaling those are gone, yet the scaled images can still differ by class in
ways that have nothing to do with finding the lesion (a lesion shifts the in-brain median; a
tumor cohort may come from other scanners, other slice levels). So the same AUROC audit runs on
the loaded :class:`~harness.data.types.ImageSet`, inside its brain mask:

- ``median``, ``iqr``: median and interquartile range of the in-brain intensities;
- ``brain_area``: share of the frame inside the brain mask;
- ``sharpness``: variance of the 4-neighbour Laplacian over the brain's interior;
- ``noise``: Immerkaer's (1996) noise sigma, the mean absolute response to a kernel that cancels
  smooth image structure, times sqrt(pi/2)/6, over the brain's interior;
- ``axial_position``: the slice height where the dataset records it (``meta["z"]`` of a
  record: the embedded cohort's MNI z index), else "not available".

Where the images carry lesion masks, every intensity feature (median, iqr, sharpness, noise) is
computed on the brain **minus the lesion mask dilated by** :data:`LESION_MARGIN_PX`: a lesion's
own pixels are what a detector should find, so letting them move a "shortcut" feature would make
the floor a weak lesion detector and flag the lesion itself as a shortcut. What the lesion still
changes outside that margin (mass effect; the per-image scaling at load, which a bright lesion
lowers for the whole slice) stays in, as it stays in the model's input. ``brain_area`` is the
brain mask's area as before.

Strength is max(AUROC, 1 - AUROC) and a feature is flagged at ``SHORTCUT_THRESHOLD`` (0.70), as in
the file audit. What it cannot see: any cue that none of these numbers summarise (texture,
shape, a scanner's artefact pattern, annotations burnt into the image), and combinations of
features; a clean audit is not a proof that no shortcut exists.

:func:`choose_feature` picks the feature behind the run's **shortcut floor**
(:func:`harness.metrics.comparison_suite.shortcut_floor`): the one that best separates the labels on
validation. The combinations are the **logistic-regression floor**'s
(:mod:`harness.metrics.lr_floor`), fitted on every feature of the train split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from harness.data.file_audit import POSITIVE_LABEL, SHORTCUT_THRESHOLD, auroc_entry
from harness.data.loading import load_imageset
from harness.data.splits import SPLITS, Split
from harness.data.types import DataSource, ImageSet, Record

__all__ = ["FEATURES", "AUDIT_SIZE", "LESION_MARGIN_PX", "axial_positions", "audit_region", "choose_feature", "input_features", "input_audit",
           "load_inputs"]

FEATURES = ("median", "iqr", "brain_area", "sharpness", "noise", "axial_position")
AUDIT_SIZE = 128  # the size `data eda` loads at (the quick profile's); a run audits its own size
_NOISE_SCALE = math.sqrt(math.pi / 2.0) / 6.0
# Pixels (at the loaded size) a lesion mask is grown by before its region leaves the audit: the
# antialiased resize at load spreads a lesion's edge over about one output pixel while its mask
# is resized nearest (up to half a pixel off), and the soft outline of a lesion (oedema fading
# out, the 0.5-membership cut of the ground truth) leaves a partial-volume rim outside the mask.
# Two pixels cover both; a wider margin would remove more healthy tissue from tumor images only,
# which itself makes the region differ by label.
LESION_MARGIN_PX = 2


def axial_positions(records: Iterable[Record]) -> dict[str, float]:
    """Slice height of each record that records one (``meta["z"]``, a finite number)."""
    out = {}
    for record in records:
        z = record.meta.get("z")
        if isinstance(z, (int, float)) and not isinstance(z, bool) and math.isfinite(z):
            out[record.id] = float(z)
    return out


def _interior(brain: np.ndarray) -> np.ndarray:
    """Pixels whose whole 3x3 neighbourhood is inside the brain, so that neither derivative
    below sees the brain's edge against the background."""
    padded = np.pad(brain, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    h, w = brain.shape[1:]
    out = np.ones_like(brain)
    for dy in range(3):
        for dx in range(3):
            out &= padded[:, dy:dy + h, dx:dx + w]
    return out


def _masked(values: np.ndarray, mask: np.ndarray, reduce) -> np.ndarray:
    return np.array([reduce(v[m]) if m.any() else np.nan for v, m in zip(values, mask)], dtype=float)


def audit_region(images: ImageSet) -> np.ndarray:
    """Bool (N, H, W): the brain minus each lesion mask dilated by :data:`LESION_MARGIN_PX` (the
    brain itself where the set has no masks), the pixels the intensity features read."""
    brain = images.brain.detach().cpu().numpy()[:, 0].astype(bool)
    if images.masks is None:
        return brain
    lesions = images.masks.detach().cpu().numpy()[:, 0].astype(bool)
    grown = ndimage.binary_dilation(lesions, structure=_disk(LESION_MARGIN_PX)[None])  # per image: depth 1
    return brain & ~grown


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return yy * yy + xx * xx <= radius * radius


def input_features(images: ImageSet, positions: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Each feature of :data:`FEATURES` for every image (NaN where it cannot be computed); the
    intensity features read :func:`audit_region` only."""
    x = images.images[:, 0].detach().cpu().numpy().astype(np.float64)
    brain = images.brain.detach().cpu().numpy().reshape(x.shape).astype(bool)
    region = audit_region(images)
    inner = _interior(region)[:, 1:-1, 1:-1]
    core = x[:, 1:-1, 1:-1]
    laplacian = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4.0 * core
    diagonals = x[:, :-2, :-2] + x[:, :-2, 2:] + x[:, 2:, :-2] + x[:, 2:, 2:]
    immerkaer = diagonals - 2.0 * (x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:]) + 4.0 * core
    positions = positions or {}
    return {
        "median": _masked(x, region, np.median),
        "iqr": _masked(x, region, lambda v: float(np.subtract(*np.percentile(v, [75, 25])))),
        "brain_area": brain.mean(axis=(1, 2)),
        "sharpness": _masked(laplacian, inner, np.var),
        "noise": _masked(np.abs(immerkaer), inner, np.mean) * _NOISE_SCALE,
        "axial_position": np.array([positions.get(i, np.nan) for i in images.ids], dtype=float),
    }


def load_inputs(source: DataSource, split: Split, size: int = AUDIT_SIZE,
                progress: bool = True) -> dict[str, ImageSet]:
    """Every split of ``source`` loaded as the runner loads it (for ``data eda``)."""
    return {which: load_imageset(source, split, which, size, progress) for which in SPLITS}


def _by_stratum(name: str, labels: np.ndarray, x: np.ndarray, strata: np.ndarray) -> dict[str, dict]:
    """The feature's audit row within each named stratum (e.g. MRI sequence)."""
    out = {}
    for stratum in sorted(set(strata.tolist()) - {""}):
        members = (strata == stratum) & np.isfinite(x)
        entry = auroc_entry(name, labels[members], x[members])
        out[stratum] = {k: entry[k] for k in ("n", "auroc", "strength", "flagged")}
    return out


def input_audit(sets: Mapping[str, ImageSet], positions: Mapping[str, float] | None = None,
                strata: Mapping[str, str] | None = None) -> dict:
    """The ``input_audit`` section of eda.json: per feature, the AUROC of the label over every
    image of ``sets`` pooled, its strength, flag and the median per label; with ``strata`` (image
    id -> acquisition stratum, two or more of them) the same per stratum, because a cue that
    pooling over sequences dilutes is still there for a model that can tell the sequence."""
    sets = {name: s for name, s in sets.items() if len(s)}
    labels = np.concatenate([s.labels.numpy() for s in sets.values()]) if sets else np.zeros(0, int)
    audit: dict = {"threshold": SHORTCUT_THRESHOLD, "positive_label": POSITIVE_LABEL, "n": int(labels.size),
                   "splits": {name: len(s) for name, s in sets.items()},
                   "image_size": int(next(iter(sets.values())).images.shape[-1]) if sets else None,
                   "features": [], "flagged": [],
                   # intensity features leave out each lesion mask grown by this many pixels (None: no masks)
                   "lesion_margin_px": LESION_MARGIN_PX if any(s.masks is not None for s in sets.values()) else None}
    if np.unique(labels).size < 2:
        audit["verdict"] = "not applicable: needs images of both labels"
        return audit
    per_set = [input_features(s, positions) for s in sets.values()]
    ids = [i for s in sets.values() for i in s.ids]
    stratum_of = np.array([(strata or {}).get(i, "") for i in ids], dtype=str)
    split_by_stratum = len(set(stratum_of.tolist()) - {""}) >= 2
    within: list[tuple[float, str]] = []
    for name in FEATURES:
        x = np.concatenate([f[name] for f in per_set])
        keep = np.isfinite(x)
        entry = auroc_entry(name, labels[keep], x[keep])
        entry["by_label"] = {"median": {label: (float(np.median(x[keep & (labels == value)]))
                                                if np.any(keep & (labels == value)) else None)
                                        for value, label in ((0, "no_tumor"), (1, POSITIVE_LABEL))}}
        missing = int((~keep).sum())
        if 0 < missing < x.size:
            entry["note"] = f"missing for {missing} images" if not entry["note"] else f"{entry['note']}; missing for {missing} images"
        if split_by_stratum:
            entry["by_stratum"] = _by_stratum(name, labels, x, stratum_of)
            within += [(e["strength"], f"{name} in {stratum} (AUROC {e['auroc']:.2f})")
                       for stratum, e in entry["by_stratum"].items() if e["flagged"]]
        audit["features"].append(entry)
    audit["flagged_within_stratum"] = [text for _, text in sorted(within, key=lambda t: -t[0])]
    flagged = sorted((f for f in audit["features"] if f["flagged"]), key=lambda f: -f["strength"])
    audit["flagged"] = [f["feature"] for f in flagged]
    if flagged:
        listed = ", ".join(f"{f['feature']} (AUROC {f['auroc']:.2f})" for f in flagged)
        audit["verdict"] = f"{len(flagged)} input feature{'s' if len(flagged) > 1 else ''} flagged: {listed}"
    else:
        audit["verdict"] = "no input feature flagged"
    if audit["flagged_within_stratum"]:
        audit["verdict"] += "; within one stratum: " + ", ".join(audit["flagged_within_stratum"])
    return audit


def choose_feature(labels: np.ndarray, features: Mapping[str, np.ndarray]) -> tuple[str, float] | None:
    """The feature of ``features`` that best separates ``labels`` (largest strength; the first of
    :data:`FEATURES` on a tie) among those finite and not constant on every image, with its
    AUROC; None when there is none or only one label. Call it on validation, never on test."""
    labels = np.asarray(labels)
    if np.unique(labels).size < 2:
        return None
    best = None
    for name in (n for n in FEATURES if n in features):
        x = features[name]
        if not np.all(np.isfinite(x)) or np.all(x == x[0]):
            continue
        auc = float(roc_auc_score(labels, x))
        if best is None or max(auc, 1 - auc) > max(best[1], 1 - best[1]):
            best = (name, auc)
    return best
