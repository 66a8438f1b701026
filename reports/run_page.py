"""One run -> the context of its page (tables as markdown) and its figures on disk."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.results import STRATUM_PREFIX
from reports import figures
from reports.eda_section import eda_blocks
from reports.escape import MyST, escape_text, fence, slug
from reports.reader import RunData
from reports.tables import (DASH, DETECTION, PIXEL, MetricIndex, fmt, fmt_ci, fmt_metric, is_number,
                            md_table)

__all__ = ["SHOWS_RESULTS", "run_context", "identity_rows"]

SHOWS_RESULTS = ("complete", "failed")  # "failed": some method failed; the others have results
_AT_THRESHOLD = ("sensitivity", "specificity", "balanced_accuracy")
_BOOTSTRAP_UNITS = {"subject": " (the bootstrap resamples whole subjects: slices of one subject are not independent)",
                    "image": " (the bootstrap resamples images: the dataset names no subjects)"}
DOMAINS = {"tumor": "Tumor", "no_tumor": "No tumor"}
FEATURE_SPACES = ("mri-resnet18", "inception-v3")


def _when(value: Any) -> Any:
    """ISO timestamp -> ``YYYY-mm-dd HH:MM:SS UTC+..`` (kept as given when not ISO)."""
    return str(value).replace("T", " ") if value else None


def identity_rows(data: RunData) -> list[list[Any]]:
    run = data.run
    dataset = run.get("dataset") if isinstance(run.get("dataset"), dict) else {}
    split = run.get("split") if isinstance(run.get("split"), dict) else {}
    rows = [
        ["Run id", data.run_id], ["Status", data.status],
        ["Harness version", run.get("harness_version")], ["Git commit", run.get("git_commit")],
        ["Created", _when(run.get("created"))], ["Finished", _when(run.get("finished"))],
        ["Command", run.get("command")], ["Profile", run.get("profile")], ["Seed", run.get("seed")],
        ["Device", run.get("device")], ["Dataset", dataset.get("name")], ["Dataset root", dataset.get("root")],
        ["Dataset fingerprint", dataset.get("fingerprint")], ["Images", dataset.get("n_images")],
        ["Skipped files", dataset.get("n_skipped")],
        ["Lesion masks", None if dataset.get("has_masks") is None else ("yes" if dataset["has_masks"] else "no")],
        ["Split hash", split.get("hash")], ["CIs resample", dataset.get("bootstrap_unit")],
        ["Duplicate groups", split.get("n_duplicate_groups")],
        ["Cross-label duplicates", split.get("n_cross_label_duplicates")],
    ]
    return [[MyST(f"**{k}**"), v if isinstance(v, MyST) else (None if v is None else str(v))] for k, v in rows]


def _timings(data: RunData) -> MyST | None:
    """Wall time per stage: the run's own stages, then each method's."""
    rows: list[list[Any]] = []
    run_timings = data.run.get("timings") if isinstance(data.run.get("timings"), dict) else {}
    for stage, secs in run_timings.items():
        rows.append(["run", stage, fmt(secs, 1)])
    for name, info in data.methods.items():
        timings = info.get("timings") if isinstance(info, dict) and isinstance(info.get("timings"), dict) else {}
        for stage, secs in timings.items():
            if is_number(secs):
                rows.append([name, stage, fmt(secs, 1)])
    return md_table(["", "stage", "seconds"], rows) if rows else None


def _split_counts(data: RunData) -> MyST | None:
    split = data.run.get("split") if isinstance(data.run.get("split"), dict) else {}
    counts = split.get("counts")
    if not isinstance(counts, dict) or not counts:
        return None
    labels: list[str] = []
    for per_label in counts.values():
        if isinstance(per_label, dict):
            labels += [k for k in per_label if k not in labels]
    return md_table(["split"] + labels, [[name] + [per_label.get(k) if isinstance(per_label, dict) else None
                                                  for k in labels] for name, per_label in counts.items()])


def _subject_counts(data: RunData) -> MyST | None:
    """Subjects per split (with a tumor slice, without) and per stratum, when the run names them."""
    split = data.run.get("split") if isinstance(data.run.get("split"), dict) else {}
    counts = split.get("subjects")
    if not isinstance(counts, dict) or not counts or not all(isinstance(v, dict) for v in counts.values()):
        return None
    names: list[str] = []
    for row in counts.values():
        names += [n for n in (row.get("strata") or {}) if n not in names]
    rows = [[name, row.get("with_tumor"), row.get("without")] + [(row.get("strata") or {}).get(n) for n in names]
            for name, row in counts.items()]
    return md_table(["split", "with tumor", "without"] + names, rows)


def _methods_table(data: RunData, index: MetricIndex) -> tuple[MyST | None, list[MyST]]:
    """Detection metrics per method (test split, 95% CIs) and the notes of unavailable values."""
    names = list(dict.fromkeys(list(data.methods) + index.methods()))
    if not names:
        return None, []
    columns = list(DETECTION) + [c for c in PIXEL if index.has(c[0])]
    header = ["Method", "Status"] + [title for _, title in columns] + ["Threshold (from val)"]
    rows, notes = [], defaultdict(list)  # (method, note) -> the metrics it explains
    for name in names:
        info = data.methods.get(name, {})
        status = info.get("status") if isinstance(info, dict) else None
        row: list[Any] = [MyST(f"**{escape_text(name)}**"), status or "unknown"]
        for metric, _ in columns:
            found = index.get(name, metric)
            text = fmt_ci(found)
            if metric == "ap" and (chance := index.get(name, "ap_chance")) and is_number(chance.get("value")):
                text = MyST(f"{text} (chance {fmt(chance['value'])})")
            row.append(text)
            note = found.get("note") if found is not None else None
            if note and not (metric in _AT_THRESHOLD and str(note).startswith("threshold=")):
                notes[(name, str(note))].append(metric)  # the threshold has its own column
        row.append(fmt(info.get("threshold"), 4) if isinstance(info, dict) else DASH)
        rows.append(row)
    notes_md = [MyST(f"{escape_text(name)}, {escape_text(', '.join(metrics))}: {escape_text(note)}")
                for (name, note), metrics in notes.items()]
    return md_table(header, rows), notes_md


def _strata_table(index: MetricIndex) -> tuple[MyST | None, list[MyST]]:
    """Method x stratum: test images, tumor share, AUROC and AP with CIs, sensitivity and
    specificity at the validation threshold; and the notes of values not computed."""
    strata = index.strata()
    if not strata:
        return None, []
    header = ["Method", "Stratum", "Test images", "Tumor share", "AUROC", "AP", "Sensitivity", "Specificity"]
    rows, notes = [], []
    for method in index.methods():
        for stratum in strata:
            domain = STRATUM_PREFIX + stratum
            found = {m: index.get(method, m, domain) for m in ("auroc", "ap", "ap_chance", "sensitivity",
                                                             "specificity")}
            if found["auroc"] is None:
                continue
            chance = found["ap_chance"] or {}
            rows.append([MyST(f"**{escape_text(method)}**"), stratum, found["auroc"].get("n"),
                         fmt(chance.get("value"), 2)] + [fmt_ci(found[m]) for m in ("auroc", "ap", "sensitivity",
                                                                                   "specificity")])
            if found["auroc"].get("note"):
                notes.append(MyST(f"{escape_text(method)}, {escape_text(stratum)}: "
                                  f"{escape_text(found['auroc']['note'])}"))
    return (md_table(header, rows) if rows else None), notes


def _failures(data: RunData) -> list[dict[str, Any]]:
    out = []
    for name, info in data.methods.items():
        if isinstance(info, dict) and info.get("status") not in (None, "complete"):
            out.append({"name": escape_text(name), "status": escape_text(info.get("status")),
                        "error": fence(info.get("error") or "no error message recorded")})
    return out


def _generative(index: MetricIndex) -> list[dict[str, Any]]:
    """Per method and feature space: Domain | FID | IS | KID | reference FID | relative FID | notes."""
    tables = []
    for method in index.methods():
        spaces = index.generative_spaces(method)
        for space in sorted(spaces, key=lambda s: (FEATURE_SPACES.index(s) if s in FEATURE_SPACES else 9, s)):
            rows, notes = [], defaultdict(list)  # note -> the cells it explains
            for domain in index.generative_domains(method):
                cells: list[Any] = [DOMAINS.get(domain, domain)]
                for metric in ("fid", "isc", "kid", "fid_reference", "fid_relative"):
                    found = index.get(method, metric, domain, space)
                    cells.append(fmt_metric(metric, found))
                    if found is not None and found.get("note"):
                        notes[str(found["note"])].append(f"{DOMAINS.get(domain, domain)} {metric}")
                n_row = index.get(method, "fid", domain, space)
                cells.append(n_row.get("n") if n_row else None)
                rows.append(cells)
            header = ["Domain", "FID", "IS (mean ± std)", "KID (mean ± std)", "Reference FID (real vs real)",
                      "Relative FID", "n"]
            tables.append({"method": escape_text(method), "space": escape_text(space),
                           "table": md_table(header, rows),
                           "notes": [escape_text(f"{'All values' if len(cells) == 5 * len(rows) else ', '.join(cells)}: {note}")
                                     for note, cells in notes.items()]})
    return tables


def _scores_by_method(data: RunData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    grouped: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in data.scores:
        if row["split"] == "test":
            grouped[row["method"]].append((row["label"], row["score"]))
    return {m: (np.array([l for l, _ in v]), np.array([s for _, s in v], dtype=float))
            for m, v in sorted(grouped.items())}


def _figure(rel: str, caption: Any, alt: str) -> MyST:
    return MyST(f":::{{figure}} {rel}\n:alt: {escape_text(alt)}\n\n{escape_text(caption)}\n:::")


def run_context(data: RunData, out_dir: Path) -> dict[str, Any]:
    """The page context of a run; figures are written to ``out_dir/<slug>/`` (cleared first)."""
    name = slug(data.run_id)
    fig_dir = out_dir / name
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    shows = data.status in SHOWS_RESULTS
    ctx: dict[str, Any] = {
        "run_id": escape_text(data.run_id), "status": data.status, "shows_results": shows,
        "identity": md_table(["", ""], identity_rows(data)), "timings": _timings(data),
        "split_counts": _split_counts(data), "subject_counts": _subject_counts(data),
        "notes": [escape_text(n) for n in data.run.get("notes") or []],
        "problems": [escape_text(p) for p in data.problems], "packages": None,
        "eda_figures": [], "eda_blocks": [], "methods_table": None, "metric_notes": [], "failures": [],
        "strata_table": None, "strata_notes": [], "bootstrap_unit": MyST(""),
        "generative": [], "curves": [], "curve_notes": [], "training": [], "grids": [],
    }
    packages = data.run.get("packages")
    if isinstance(packages, dict) and packages:
        ctx["packages"] = md_table(["package", "version"], sorted(packages.items()))
    for png in data.eda_images:
        target = fig_dir / "eda" / f"{slug(png.stem)}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        ctx["eda_figures"].append(_figure(f"{name}/eda/{target.name}", png.stem.replace("_", " "), png.stem))
    ctx["eda_blocks"] = [(escape_text(h), b) for h, b in eda_blocks(data.eda)]
    if not shows:
        return ctx
    index = MetricIndex(data.metrics)
    ctx["methods_table"], ctx["metric_notes"] = _methods_table(data, index)
    ctx["strata_table"], ctx["strata_notes"] = _strata_table(index)
    dataset = data.run.get("dataset") if isinstance(data.run.get("dataset"), dict) else {}
    ctx["bootstrap_unit"] = MyST(_BOOTSTRAP_UNITS.get(dataset.get("bootstrap_unit"), ""))
    ctx["failures"] = _failures(data)
    ctx["generative"] = _generative(index)
    per_method = _scores_by_method(data)
    if per_method:
        notes = figures.detection_curves(per_method, fig_dir / "roc.png", fig_dir / "pr.png")
        ctx["curve_notes"] = [escape_text(n) for n in notes]
        if (fig_dir / "roc.png").exists():
            ctx["curves"] = [_figure(f"{name}/roc.png", "ROC curves of all methods (test split)", "ROC curves"),
                             _figure(f"{name}/pr.png", "Precision-recall curves (test split); the dotted line "
                                     "is AP's chance level, the share of tumor images", "PR curves")]
    for method, curves in data.curves.items():
        path = figures.training_curves(curves, fig_dir / f"training-{slug(method)}.png", f"{method}: training curves")
        if path is not None:
            ctx["training"].append({"method": escape_text(method),
                                    "figure": _figure(f"{name}/{path.name}", f"{method}: per-epoch training curves",
                                                      f"{method} training curves")})
    for method, npz_path in data.examples.items():
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            ctx["problems"].append(escape_text(f"examples/{npz_path.name} unreadable: {exc}"))
            continue
        for domain, label in DOMAINS.items():
            path = figures.example_grid(arrays, domain, fig_dir / f"grid-{slug(method)}-{domain}.png",
                                        f"{method}: {label} images")
            if path is not None:
                ctx["grids"].append({"method": escape_text(method), "domain": label,
                                     "figure": _figure(f"{name}/{path.name}",
                                                       f"{method}, {label} images: best- and worst-scored cases",
                                                       f"{method} {label} grid")})
    return ctx
