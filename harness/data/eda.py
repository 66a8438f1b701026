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
  ``per_given_split`` {given split or "none": {label: n}} (a dataset's own Testing/ folder);
  ``per_source`` {source: {label: n}} for a cohort of several ``--data NAME=PATH`` sources, else null.
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
- ``shortcut_audit``: the file audit, see :mod:`harness.data.file_audit`.
- ``input_audit``: the same audit on the images as methods receive them (after loading and
  per-image scaling, inside the brain mask: median, IQR, brain area, sharpness, noise, axial
  position), per feature also ``by_stratum`` when the images carry two or more acquisition
  strata, plus ``n``, ``splits`` {split: n}, ``image_size``, ``flagged_within_stratum``; see
  :mod:`harness.data.input_audit`. Without loaded images its ``verdict`` says "not computed"
  (a run fills it in with :func:`add_input_audit` once it has loaded its splits).
- ``figures``: the PNG file names written into ``out_dir``.

Imports run one way: this module assembles the report from :mod:`harness.data.file_audit`,
:mod:`harness.data.eda_sample`, :mod:`harness.data.input_audit` and
:mod:`harness.data.eda_figures`, none of which imports it.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import atomic_write_bytes
from harness.data.eda_figures import write_figures
from harness.data.eda_sample import intensity_summary, sample_images
from harness.data.file_audit import SHORTCUT_THRESHOLD, aspect, feature_value, shortcut_audit
from harness.data.input_audit import axial_positions, input_audit
from harness.data.splits import Split
from harness.data.types import DataSource, ImageSet, Record

__all__ = ["EDA_VERSION", "INTENSITY_SAMPLE", "add_input_audit", "run_eda", "summarize", "write_json_atomic"]

EDA_VERSION = 1
INTENSITY_SAMPLE = 200  # decoded images per label (bounded EDA cost)


def run_eda(source: DataSource, split: Split | None, out_dir: Path, progress: bool = True,
            *, seed: int = 0, inputs: Mapping[str, ImageSet] | None = None) -> dict:
    """Summarise ``source`` (and ``split``), audit shortcuts in the files and, given the loaded
    splits ``inputs``, in what the methods see; write eda.json and figures."""
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
    report["figures"] = write_figures(report, records, sample, out_dir)
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
            "per_source": (_nested_counts(records, lambda r: r.meta.get("source", "none"))
                           if any("source" in r.meta for r in records) else None),
        },
        "resolution": _resolution(records, by_label),
        "aspect": {**_stats([aspect(r) for r in records]),
                   "per_label": {lab: _stats([aspect(r) for r in rs]) for lab, rs in by_label.items()}},
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


def _input_audit(inputs: Mapping[str, ImageSet] | None, positions: Mapping[str, float],
                 strata: Mapping[str, str] | None) -> dict[str, Any]:
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


def write_json_atomic(path: Path, obj: Any) -> None:
    """Temp file in the same folder, then rename: a reader never sees half a report."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


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
