"""Exploratory data analysis with a shortcut audit: what a dataset holds, and whether a classifier
could tell its labels apart without looking at anatomy.

Public brain-tumor sets differ by class in file format, size, channel count and brightness
because their classes were collected from different sources. A model that learns those
differences scores well and detects nothing, so the EDA measures them before any method runs.

``run_eda(source, split, out_dir)`` writes ``out_dir/eda.json`` (atomically) and PNG figures,
and returns the same dict. Its keys (stable; ``null`` where a value cannot be computed):

- ``eda_version``: 1.
- ``dataset``: ``name``, ``root``, ``fingerprint``, ``n_images``, ``n_skipped``.
- ``labels``: sorted label names present.
- ``counts``: ``per_label`` {label: n}; ``per_split`` {split: {label: n}} or null without a split;
  ``per_given_split`` {given split or "none": {label: n}} (a dataset's own Testing/ folder).
- ``resolution``: ``width`` and ``height`` as {min, median, max}; ``n_distinct`` resolutions;
  ``most_common`` [[width, height, count], ...] (top 10); ``per_label`` {label: {width, height}}.
- ``aspect``: width / height as {min, median, max}, and ``per_label`` {label: {min, median, max}}.
- ``modes``, ``channels``, ``formats``: {label: {value: count}} from the scan-time metadata.
- ``brightness``: {label: {n, mean, std, min, max}} of the per-image mean brightness (metadata;
  population std).
- ``intensity``: pixel intensities of a seeded sample of at most ``INTENSITY_SAMPLE`` decoded images
  per label: ``bin_edges`` (``INTENSITY_BINS`` bins on [0, 1]) and ``per_label`` {label: {n_images,
  hist (mean per-image pixel fraction per bin), mean, p01, p50, p99, dark_fraction (< 0.02),
  bright_fraction (>= 0.98)}}. Bright fractions reveal the white borders some public sets have.
- ``load_failures``: [{id, error}] for sampled images that could not be decoded (recorded, skipped).
- ``sample_ids``: {label: [id, ...]} the images shown in ``samples_<label>.png``, in grid order.
- ``skipped``: ``count``, ``by_reason`` {reason kind: n} (a reason's text before its first ":" or
  " ("; "truncated file (...)" counts as "truncated file"),
  ``files`` [{path, reason}] (all of them).
- ``notices``: the source's notices.
- ``duplicates``: null without a split, else ``split_hash``, ``n_groups``, ``groups``,
  ``n_cross_label``, ``cross_label`` (lists of record ids).
- ``masks``: ``n_with_mask`` and ``per_label`` {label: n}.
- ``shortcut_audit``: see ``shortcut_audit`` below.
- ``input_audit``: the same audit on the images as methods receive them (after loading and
  per-image scaling, inside the brain mask: median, IQR, brain area, sharpness, noise, axial
  position), per feature also ``by_stratum`` when the images carry two or more acquisition
  strata, plus ``n``, ``splits`` {split: n}, ``image_size``, ``flagged_within_stratum``; see
  :mod:`harness.data.input_audit`. Without loaded images its ``verdict`` says "not computed"
  (a run fills it in with :func:`add_input_audit` once it has loaded its splits).
- ``figures``: the PNG file names written into ``out_dir``.

How to read the shortcut audit: each non-anatomical feature (width, height, aspect, file_size,
channels, mean_brightness; and each value of format and mode, one-hot as ``format=JPEG``) gets the
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

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score

from harness.atomic import atomic_write_bytes
from harness.data.types import DataSource, Record
from harness.progress import progress as progress_bar

if TYPE_CHECKING:
    from harness.api import ImageSet
    from harness.data.splits import Split

EDA_VERSION = 1
SHORTCUT_THRESHOLD = 0.70
NO_FILE_FLAG = "no file property flagged"
POSITIVE_LABEL = "tumor"
NUMERIC_FEATURES = ("width", "height", "aspect", "file_size", "channels", "mean_brightness")
CATEGORICAL_FEATURES = ("format", "mode")
INTENSITY_SAMPLE = 200
INTENSITY_BINS = 64
GRID_SIZE = 16
_PIXELS_PER_IMAGE = 2048
_BIN_EDGES = np.linspace(0.0, 1.0, INTENSITY_BINS + 1)


@dataclass(frozen=True)
class ImageStats:
    """What the intensity summary needs from one decoded image (the image itself is not kept)."""

    hist: np.ndarray  # fraction of pixels per bin
    pixels: np.ndarray  # seeded subsample for percentiles
    mean: float
    dark: float
    bright: float


@dataclass
class ImageSample:
    """A seeded sample, per label in sampling order: statistics of every decoded image, the first
    ``GRID_SIZE`` images themselves (for the grids), and the failures. Memory stays bounded."""

    stats: dict[str, list[ImageStats]] = field(default_factory=dict)
    grid: dict[str, list[np.ndarray]] = field(default_factory=dict)
    grid_ids: dict[str, list[str]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)


def run_eda(source: DataSource, split: Split | None, out_dir: Path, progress: bool = True,
            *, seed: int = 0, inputs: Mapping[str, ImageSet] | None = None) -> dict:
    """Summarise ``source`` (and ``split``), audit shortcuts in the files and, given the loaded
    splits ``inputs``, in what the methods see; write eda.json and figures."""
    from harness.data import eda_figures
    from harness.data.input_audit import axial_positions  # it builds on this module

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = sorted(source.records, key=lambda r: r.id)
    sample = sample_images(source, records, INTENSITY_SAMPLE, seed=seed, progress=progress)
    report = summarize(source, records, split)
    report["intensity"] = intensity_summary(sample)
    report["load_failures"] = sample.failures
    report["sample_ids"] = sample.grid_ids
    report["shortcut_audit"] = shortcut_audit(records)
    report["input_audit"] = _input_audit(inputs, axial_positions(records), {r.id: r.stratum for r in records})
    report["figures"] = eda_figures.write_figures(report, records, sample, out_dir)
    report = _jsonable(report)
    write_json_atomic(out_dir / "eda.json", report)
    return report


def summarize(source: DataSource, records: Sequence[Record], split: Split | None) -> dict[str, Any]:
    """Everything the EDA reports that comes from metadata alone (no image decoding)."""
    labels = sorted({r.label for r in records})
    by_label = {lab: [r for r in records if r.label == lab] for lab in labels}
    return {
        "eda_version": EDA_VERSION,
        "dataset": {
            "name": source.name,
            "root": str(source.root),
            "fingerprint": source.fingerprint(),
            "n_images": len(records),
            "n_skipped": len(source.skipped),
        },
        "labels": labels,
        "counts": {
            "per_label": {lab: len(rs) for lab, rs in by_label.items()},
            "per_split": _split_counts(split),
            "per_given_split": _nested_counts(records, lambda r: r.given_split or "none"),
        },
        "resolution": _resolution(records, by_label),
        "aspect": {**_stats([_aspect(r) for r in records]),
                   "per_label": {lab: _stats([_aspect(r) for r in rs]) for lab, rs in by_label.items()}},
        "modes": {lab: _value_counts(r.meta.get("mode") for r in rs) for lab, rs in by_label.items()},
        "channels": {lab: _value_counts(r.meta.get("channels") for r in rs) for lab, rs in by_label.items()},
        "formats": {lab: _value_counts(r.meta.get("format") for r in rs) for lab, rs in by_label.items()},
        "brightness": {lab: _brightness(rs) for lab, rs in by_label.items()},
        "skipped": {
            "count": len(source.skipped),
            "by_reason": dict(sorted(Counter(_reason_kind(s.reason) for s in source.skipped).items())),
            "files": [{"path": s.path, "reason": s.reason} for s in source.skipped],
        },
        "notices": list(source.notices),
        "duplicates": _duplicates(split),
        "masks": {
            "n_with_mask": sum(r.has_mask for r in records),
            "per_label": {lab: sum(r.has_mask for r in rs) for lab, rs in by_label.items()},
        },
    }


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


def _input_audit(inputs: Mapping[str, ImageSet] | None, positions: Mapping[str, float],
                 strata: Mapping[str, str] | None) -> dict[str, Any]:
    from harness.data.input_audit import input_audit

    if inputs is None:
        return {"threshold": SHORTCUT_THRESHOLD, "features": [], "flagged": [],
                "verdict": "not computed: the images were not loaded (a run adds it once its splits are loaded)"}
    return input_audit(inputs, positions, strata)


def add_input_audit(eda_json: Path, inputs: Mapping[str, ImageSet], positions: Mapping[str, float],
                    strata: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Put the input audit of the loaded splits into eda.json (a run writes the EDA before it
    loads the images); returns the audit."""
    report = json.loads(Path(eda_json).read_text(encoding="utf-8")) if Path(eda_json).is_file() else {}
    report["input_audit"] = _jsonable(_input_audit(inputs, positions, strata))
    write_json_atomic(Path(eda_json), report)
    return report["input_audit"]


def sample_images(source: DataSource, records: Sequence[Record], per_label: int, *, seed: int,
                  progress: bool = True) -> ImageSample:
    """Decode a seeded sample of at most ``per_label`` images per label (bounded EDA cost).

    An image that fails to decode, or decodes to something other than a finite 2-D array, is
    recorded in ``failures`` and skipped; the EDA goes on.
    """
    rng = np.random.default_rng(seed)
    sample = ImageSample()
    chosen: list[Record] = []
    for label in sorted({r.label for r in records}):
        of_label = [r for r in records if r.label == label]
        order = rng.permutation(len(of_label))[:per_label]
        chosen.extend(of_label[i] for i in order)
        sample.stats[label], sample.grid[label], sample.grid_ids[label] = [], [], []
    for record in progress_bar(chosen, desc="eda: decoding sample", enabled=progress, unit="img"):
        try:
            image = np.asarray(source.load_image(record), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - any decoder error is recorded, never raised
            sample.failures.append({"id": record.id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if image.ndim != 2 or image.size == 0 or not np.isfinite(image).all():
            error = f"unusable image array: shape {image.shape}, non-finite or empty"
            sample.failures.append({"id": record.id, "error": error})
            continue
        image = np.clip(image, 0.0, 1.0)
        sample.stats[record.label].append(_image_stats(image, rng))
        if len(sample.grid[record.label]) < GRID_SIZE:
            sample.grid[record.label].append(image)
            sample.grid_ids[record.label].append(record.id)
    return sample


def intensity_summary(sample: ImageSample) -> dict[str, Any]:
    """Pixel-intensity histograms and percentiles per label from the decoded sample.

    Each image's histogram is normalised before averaging so large images do not dominate;
    percentiles come from a seeded subsample of pixels per image.
    """
    per_label: dict[str, Any] = {}
    for label, stats in sample.stats.items():
        if not stats:
            per_label[label] = {"n_images": 0, "hist": None, "mean": None, "p01": None, "p50": None,
                                "p99": None, "dark_fraction": None, "bright_fraction": None}
            continue
        p01, p50, p99 = np.percentile(np.concatenate([s.pixels for s in stats]), [1, 50, 99])
        per_label[label] = {
            "n_images": len(stats),
            "hist": np.mean([s.hist for s in stats], axis=0).tolist(),
            "mean": float(np.mean([s.mean for s in stats])),
            "p01": float(p01), "p50": float(p50), "p99": float(p99),
            "dark_fraction": float(np.mean([s.dark for s in stats])),
            "bright_fraction": float(np.mean([s.bright for s in stats])),
        }
    return {"bin_edges": _BIN_EDGES.tolist(), "per_label": per_label}


def _image_stats(image: np.ndarray, rng: np.random.Generator) -> ImageStats:
    flat = image.ravel()
    return ImageStats(
        hist=np.histogram(flat, bins=_BIN_EDGES)[0] / flat.size,
        pixels=rng.choice(flat, size=min(_PIXELS_PER_IMAGE, flat.size), replace=False),
        mean=float(flat.mean()),
        dark=float((flat < 0.02).mean()),
        bright=float((flat >= 0.98).mean()),
    )


def write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file in the same folder, then rename: a reader never sees half a report."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


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
        return _aspect(record)
    value = record.meta.get(name)
    if value is None or isinstance(value, (bool, str)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _aspect(record: Record) -> float | None:
    w, h = feature_value(record, "width"), feature_value(record, "height")
    return None if w is None or h is None or h <= 0 else w / h


def _stats(values: Iterable[float | None]) -> dict[str, float | None]:
    arr = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


def _resolution(records: Sequence[Record], by_label: dict[str, list[Record]]) -> dict[str, Any]:
    dims = ((feature_value(r, "width"), feature_value(r, "height")) for r in records)
    sizes = Counter((int(w), int(h)) for w, h in dims if w is not None and h is not None)
    return {
        "width": _stats(feature_value(r, "width") for r in records),
        "height": _stats(feature_value(r, "height") for r in records),
        "n_distinct": len(sizes),
        "most_common": [[w, h, n] for (w, h), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))][:10],
        "per_label": {lab: {"width": _stats(feature_value(r, "width") for r in rs),
                            "height": _stats(feature_value(r, "height") for r in rs)}
                      for lab, rs in by_label.items()},
    }


def _brightness(records: Sequence[Record]) -> dict[str, Any]:
    arr = np.array([v for v in (feature_value(r, "mean_brightness") for r in records) if v is not None])
    if arr.size == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(arr.size), "mean": float(arr.mean()), "std": float(arr.std()),
            "min": float(arr.min()), "max": float(arr.max())}


def _value_counts(values: Iterable[Any]) -> dict[str, int]:
    counts = Counter("unknown" if v is None else str(v) for v in values)
    return dict(sorted(counts.items()))


def _nested_counts(records: Sequence[Record], key: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in records:
        row = out.setdefault(str(key(r)), {})
        row[r.label] = row.get(r.label, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}


def _reason_kind(reason: str) -> str:
    """The reason without its file-specific detail: text before the first ":" or " (" ."""
    return reason.split(" (", 1)[0].split(":", 1)[0].strip() or reason


def _split_counts(split: Split | None) -> dict[str, dict[str, int]] | None:
    if split is None:
        return None
    return {str(name): {str(lab): int(n) for lab, n in row.items()} for name, row in split.counts().items()}


def _duplicates(split: Split | None) -> dict[str, Any] | None:
    if split is None:
        return None
    groups = [list(map(str, g)) for g in split.duplicate_groups]
    cross = [list(map(str, g)) for g in split.cross_label_duplicates]
    return {"split_hash": split.hash, "n_groups": len(groups), "groups": groups,
            "n_cross_label": len(cross), "cross_label": cross}


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars become Python numbers, non-finite floats null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj
