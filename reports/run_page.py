"""One run -> the context of its page (tables as markdown), its figures and downloads on disk.

The page reads results first: a headline table (each method's AUROC, AP, pixel AUROC and Dice
with CIs, in compact cells) and a forest plot, then the detail tables and figures, then what ran
and the dataset. Rows of a metric the page does not know still appear (under "Other metrics").
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.results import FLOOR_METHOD, ROW_KEYS, STRATUM_PREFIX
from reports import figures
from reports.eda_section import eda_sections
from reports.escape import MyST, escape_text, fence, slug
from reports.grid_cases import distinct_subject_rows
from reports.reader import RunData
from reports.run_state import run_state
from reports.tables import (DASH, GENERATIVE, PIXEL, SUPERVISION, MetricIndex, fmt, fmt_compact, fmt_metric,
                            is_number, md_table, short_hash)

__all__ = ["SHOWS_RESULTS", "run_context", "identity_rows", "metrics_csv", "method_label", "ordered_methods",
           "supervision_label"]

SHOWS_RESULTS = ("complete", "failed")  # "failed": some method failed; the others have results
PAIRED = ("auroc_delta", "ap_delta")
_AT_THRESHOLD = ("sensitivity", "specificity", "balanced_accuracy")
_BOOTSTRAP_UNITS = {"subject": "whole subjects (slices of one subject are not independent)",
                    "image": "images (the dataset names no subjects)"}
DOMAINS = {"tumor": "Tumor", "no_tumor": "No tumor"}
FEATURE_SPACES = ("mri-resnet18", "inception-v3")
_GENERATIVE_TITLES = {"fid": "FID", "fid_reference": "Reference FID (real vs real)", "fid_relative": "Relative FID",
                      "kid": "KID", "is": "IS", "isc": "IS", "target_rate": "Target rate",
                      "target_rate_real": "Target rate of real images (ceiling)"}
# every metric some table of the page shows; the rest go to "Other metrics"
_SHOWN = ({"auroc", "ap", "ap_chance", "dice", "dice_oracle", *_AT_THRESHOLD, *PAIRED}
          | {m for m, _ in PIXEL})


def method_label(name: str) -> MyST:
    """A method's name as the tables show it (the shortcut floor is not a method: in italics)."""
    if name == FLOOR_METHOD:
        return MyST("*shortcut floor*")
    return MyST(f"**{escape_text(name)}**")


def ordered_methods(data: RunData, index: MetricIndex) -> list[str]:
    """The run's methods in run.json order, then any others with rows, the shortcut floor last."""
    names = list(dict.fromkeys([*data.methods, *index.methods()]))
    return [n for n in names if n != FLOOR_METHOD] + [n for n in names if n == FLOOR_METHOD]


def supervision_label(data: RunData, name: str) -> str | None:
    """How the method learns (run.json ``supervision``), as the tables name it."""
    info = data.methods.get(name)
    value = info.get("supervision") if isinstance(info, dict) else None
    if name == FLOOR_METHOD:
        return "image labels"  # one input feature and a direction, chosen on labelled validation images
    return SUPERVISION.get(str(value), str(value)) if value else None


def _when(value: Any) -> Any:
    """ISO timestamp -> ``YYYY-mm-dd HH:MM:SS+..`` (kept as given when not ISO)."""
    return str(value).replace("T", " ") if value else None


def identity_rows(data: RunData) -> list[list[Any]]:
    run = data.run
    dataset = run.get("dataset") if isinstance(run.get("dataset"), dict) else {}
    split = run.get("split") if isinstance(run.get("split"), dict) else {}
    rows = [
        ["Run id", data.run_id], ["Status", data.status],
        ["Harness version", run.get("harness_version")], ["Git commit", short_hash(run.get("git_commit"))],
        ["Created", _when(run.get("created"))], ["Finished", _when(run.get("finished"))],
        ["Command", run.get("command")], ["Profile", run.get("profile")], ["Seed", run.get("seed")],
        ["Device", run.get("device")], ["Dataset", dataset.get("name")], ["Dataset root", dataset.get("root")],
        ["Dataset fingerprint", short_hash(dataset.get("fingerprint"))], ["Images", dataset.get("n_images")],
        ["Skipped files", dataset.get("n_skipped")],
        ["Lesion masks", None if dataset.get("has_masks") is None else ("yes" if dataset["has_masks"] else "no")],
        ["Split hash", short_hash(split.get("hash"))], ["CIs resample", dataset.get("bootstrap_unit")],
        ["Duplicate groups", split.get("n_duplicate_groups")],
        ["Cross-label duplicates", split.get("n_cross_label_duplicates")],
    ]
    return [[MyST(f"**{k}**"), v if isinstance(v, MyST) else (None if v is None else str(v))] for k, v in rows]


def _summary(data: RunData) -> MyST:
    """One line under the title: what data, which profile and seed, when, which harness."""
    run = data.run
    dataset = run.get("dataset") if isinstance(run.get("dataset"), dict) else {}
    parts = [escape_text(str(dataset.get("name") or "unknown dataset"))]
    if run.get("profile"):
        parts.append(escape_text(f"{run['profile']} profile"))
    if run.get("seed") is not None:
        parts.append(escape_text(f"seed {run['seed']}"))
    if run.get("created"):
        parts.append(escape_text(str(run["created"])[:16].replace("T", " ")))
    version = run.get("harness_version")
    commit = run.get("git_commit")
    if version or commit:
        parts.append(MyST(f"harness {escape_text(version or '?')}" + (f" ({short_hash(commit, 8)})" if commit else "")))
    return MyST(" · ".join(parts))


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


def _chance(index: MetricIndex, names: list[str]) -> tuple[str, dict[str, str]]:
    """AP's chance level: in the column title when every method shares it, else per cell."""
    levels = {n: fmt(row.get("value")) for n in names if (row := index.get(n, "ap_chance")) and is_number(row.get("value"))}
    if levels and len(set(levels.values())) == 1:
        return f"AP (chance {next(iter(levels.values()))})", {}
    return "AP", levels


def _headline(data: RunData, index: MetricIndex, names: list[str]) -> MyST | None:
    """Method | Supervision | AUROC | AP | Pixel AUROC | Dice: the numbers a reader came for."""
    if not names:
        return None
    ap_title, per_cell_chance = _chance(index, names)
    columns: list[tuple[str, str]] = [("auroc", "AUROC"), ("ap", ap_title)]
    if index.has("pixel_auroc"):
        columns.append(("pixel_auroc", "Pixel AUROC"))
    if index.has("dice"):
        columns.append(("dice", "Dice"))
    elif index.has("dice_oracle"):  # older runs' best_dice is read as dice_oracle (harness.results)
        columns.append(("dice_oracle", "Dice (oracle threshold)"))
    rows = []
    for name in names:
        info = data.methods.get(name)
        status = info.get("status") if isinstance(info, dict) else None
        label = method_label(name)
        if status not in (None, "complete", "input feature"):
            label = MyST(f"{label} ({escape_text(status)})")
        row: list[Any] = [label, supervision_label(data, name)]
        for metric, _ in columns:
            cell = fmt_compact(index.get(name, metric))
            if metric == "ap" and name in per_cell_chance and cell != DASH:
                cell = MyST(f"{cell} [chance {per_cell_chance[name]}]{{.ci}}")
            row.append(cell)
        rows.append(row)
    return md_table(["Method", "Supervision"] + [title for _, title in columns], rows)


def _best(index: MetricIndex, names: list[str]) -> str | None:
    """The method with the highest test AUROC (the shortcut floor is a reference, not a contender)."""
    scored = [(row["value"], n) for n in names if n != FLOOR_METHOD
              and (row := index.get(n, "auroc")) and is_number(row.get("value"))]
    return max(scored)[1] if scored else None


def _paired_rows(data: RunData, metric: str, best: str | None, with_floor: bool) -> list[dict[str, Any]]:
    """The paired rows worth reading, largest first: the best method minus each other method and,
    with ``with_floor``, every other method minus the shortcut floor (does it beat the shortcut?).
    All ordered pairs stay in metrics.csv."""
    rows = [r for r in data.metrics if r.get("metric") == metric and r.get("other") and is_number(r.get("value"))
            and (r.get("split") or "test") == "test" and r.get("domain", "all") == "all"]
    kept = [r for r in rows if r["method"] == best
            or (with_floor and r["other"] == FLOOR_METHOD and r["method"] not in (best, FLOOR_METHOD))]
    return sorted(kept, key=lambda r: (r["method"] != best, -r["value"]))


def _forest(data: RunData, index: MetricIndex, names: list[str], fig_dir: Path) -> tuple[Path | None, bool]:
    """The forest plot, and whether it has the panel of paired differences."""
    methods = [figures.Interval(name, row["value"], row.get("ci_low"), row.get("ci_high"))
               for name in names if (row := index.get(name, "auroc")) and is_number(row.get("value"))]
    methods.sort(key=lambda r: -r.value)
    deltas = [figures.Interval(f"{row['method']} − {row['other']}", row["value"], row.get("ci_low"),
                               row.get("ci_high"))
              for row in _paired_rows(data, "auroc_delta", _best(index, names), with_floor=False)]
    return figures.forest_plot(methods, deltas, fig_dir / "forest.png"), bool(deltas)


def _p(row: dict[str, Any] | None) -> MyST:
    p = (row or {}).get("p_value")
    if not is_number(p):
        return DASH
    return MyST("< 0.001") if p < 0.001 else fmt(p, 3)


def _paired_table(data: RunData, index: MetricIndex, names: list[str]) -> MyST | None:
    """Paired differences (method − other) on the same test images: CI and p-value per pair."""
    auroc = _paired_rows(data, "auroc_delta", _best(index, names), with_floor=True)
    if not auroc:
        return None
    ap = {(r["method"], r["other"]): r for r in data.metrics if r.get("metric") == "ap_delta" and r.get("other")}
    rows = []
    for row in auroc:
        ap_row = ap.get((row["method"], row["other"]))
        rows.append([method_label(str(row["method"])), method_label(str(row["other"])), fmt_compact(row), _p(row),
                     fmt_compact(ap_row), _p(ap_row)])
    return md_table(["Method", "minus", "Δ AUROC", "p", "Δ AP", "p"], rows)


def _threshold_table(data: RunData, index: MetricIndex, names: list[str]) -> tuple[MyST | None, list[MyST]]:
    """Rates at the validation threshold, the pixel metrics, and the notes of unavailable values."""
    columns = [("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("balanced_accuracy", "Balanced acc.")]
    columns += [(m, t) for m, t in (("pixel_ap", "Pixel AP"), ("dice", "Dice (val threshold)"),
                                    ("dice_oracle", "Dice (threshold chosen on test: oracle)")) if index.has(m)]
    rows, notes = [], defaultdict(list)  # (method, note) -> the metrics it explains
    for name in names:
        info = data.methods.get(name, {})
        threshold = info.get("threshold") if isinstance(info, dict) else None
        row: list[Any] = [method_label(name), fmt(threshold, 4)]
        for metric, _ in columns:
            found = index.get(name, metric)
            row.append(fmt_compact(found))
        rows.append(row)
        for metric in ("auroc", "ap", "pixel_auroc", *[m for m, _ in columns]):
            found = index.get(name, metric)
            note = found.get("note") if found is not None else None
            if note and not (metric in _AT_THRESHOLD and str(note).startswith("threshold=")):
                notes[(name, str(note))].append(metric)  # the threshold has its own column
    if not any(any(c != DASH for c in row[1:]) for row in rows):
        return None, []
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)  # one line per note and metrics
    for (name, note), metrics in notes.items():
        grouped[(note, tuple(metrics))].append(name)
    notes_md = [MyST(f"{escape_text(', '.join(names))} ({escape_text(', '.join(metrics))}): {escape_text(note)}")
                for (note, metrics), names in grouped.items()]
    return md_table(["Method", "Threshold (from val)"] + [t for _, t in columns], rows), notes_md


def _other_metrics(data: RunData) -> MyST | None:
    """Rows of metrics no other table shows, as they are: the page never drops a result."""
    rows = [r for r in data.metrics if not r.get("feature_space") and str(r.get("domain") or "all") == "all"
            and r.get("metric") not in _SHOWN and (r.get("split") or "test") == "test"]
    if not rows:
        return None
    return md_table(["Method", "Metric", "Value", "n", "Note"],
                    [[method_label(str(r["method"])), r["metric"], fmt_metric(str(r["metric"]), r), r.get("n"),
                      r.get("note")] for r in rows])


def _strata_table(index: MetricIndex, names: list[str]) -> tuple[MyST | None, list[MyST]]:
    """Method x stratum: test images, tumor share, AUROC and AP with CIs, sensitivity and
    specificity at the validation threshold; and the notes of values not computed."""
    strata = index.strata()
    if not strata:
        return None, []
    header = ["Method", "Stratum", "Test images", "Tumor share", "AUROC", "AP", "Sensitivity", "Specificity"]
    rows, notes = [], []
    for method in names:
        for stratum in strata:
            domain = STRATUM_PREFIX + stratum
            found = {m: index.get(method, m, domain) for m in ("auroc", "ap", "ap_chance", "sensitivity",
                                                             "specificity")}
            if found["auroc"] is None:
                continue
            chance = found["ap_chance"] or {}
            rows.append([method_label(method), stratum, found["auroc"].get("n"), fmt(chance.get("value"), 2)]
                        + [fmt_compact(found[m]) for m in ("auroc", "ap", "sensitivity", "specificity")])
            if found["auroc"].get("note"):
                notes.append(MyST(f"{escape_text(method)}, {escape_text(stratum)}: "
                                  f"{escape_text(found['auroc']['note'])}"))
    return (md_table(header, rows) if rows else None), notes


def _failures(data: RunData) -> list[dict[str, Any]]:
    out = []
    for name, info in data.methods.items():
        if isinstance(info, dict) and info.get("status") == "failed":
            out.append({"name": escape_text(name), "status": escape_text(info.get("status")),
                        "error": fence(info.get("error") or "no error message recorded")})
    return out


def _generative(index: MetricIndex) -> list[dict[str, Any]]:
    """Per method and feature space: Domain | the generative metrics present | n, and notes."""
    tables = []
    for method in index.methods():
        for space in sorted(index.generative_spaces(method),
                            key=lambda s: (FEATURE_SPACES.index(s) if s in FEATURE_SPACES else 9, s)):
            domains = index.generative_domains(method)
            present = {k[3] for k in index.rows if k[0] == method and k[4] == space}
            metrics = [m for m in GENERATIVE if m in present] + sorted(present - set(GENERATIVE))
            rows, notes = [], defaultdict(list)  # note -> the cells it explains
            for domain in domains:
                cells: list[Any] = [DOMAINS.get(domain, domain)]
                n = None
                for metric in metrics:
                    found = index.get(method, metric, domain, space)
                    cells.append(fmt_metric(metric, found))
                    n = n or (found or {}).get("n")
                    if found is not None and found.get("note"):
                        notes[str(found["note"])].append(f"{DOMAINS.get(domain, domain)} {metric}")
                rows.append(cells + [n])
            header = ["Into domain"] + [_GENERATIVE_TITLES.get(m, m) for m in metrics] + ["n"]
            total = len(metrics) * len(rows)
            tables.append({"method": escape_text(method), "space": escape_text(space), "table": md_table(header, rows),
                           "notes": [escape_text(f"{'All values' if len(cells) == total else ', '.join(cells)}: {note}")
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


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """Every metrics row as one flat CSV table (schema keys first, then any extra keys)."""
    keys = list(dict.fromkeys([*ROW_KEYS, *(k for r in rows for k in r)]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in keys})
    return buffer.getvalue()


def _downloads(data: RunData, fig_dir: Path, name: str) -> MyST:
    """Links to metrics.csv (written here) and the run's scores.csv, copied beside the figures."""
    out = []
    if data.metrics:
        fig_dir.mkdir(parents=True, exist_ok=True)
        (fig_dir / "metrics.csv").write_text(metrics_csv(data.metrics), encoding="utf-8")
        out.append(("metrics.csv", f"{name}/metrics.csv"))
    if (data.path / "scores.csv").is_file():
        fig_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data.path / "scores.csv", fig_dir / "scores.csv")
        out.append(("scores.csv", f"{name}/scores.csv"))
    links = ", ".join(f"{{download}}`{label} <{path}>`" for label, path in out)
    return MyST(f" · Download: {links}" if links else "")


def _eda(data: RunData, fig_dir: Path, name: str) -> list[tuple[MyST, MyST]]:
    """The dataset section, with the EDA's figures copied beside the page."""
    rels = {}
    for png in data.eda_images:
        target = fig_dir / "eda" / f"{slug(png.stem)}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        rels[png.stem] = f"{name}/eda/{target.name}"
    return [(escape_text(h), b) for h, b in eda_sections(data.eda, rels)]


def _grids(data: RunData, fig_dir: Path, name: str, ctx: dict[str, Any]) -> None:
    """Image grids of every method, its domains side by side: one case per subject (see
    reports.grid_cases)."""
    for method, npz_path in data.examples.items():
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            ctx["problems"].append(escape_text(f"examples/{npz_path.name} unreadable: {exc}"))
            continue
        shown = []
        for domain, label in DOMAINS.items():
            ids = [str(v) for v in arrays.get(f"{domain}_ids", [])]
            rows, dropped = distinct_subject_rows(ids, [str(v) for v in arrays.get(f"{domain}_kind", [])],
                                                  data.subjects)
            path = figures.example_grid(arrays, domain, fig_dir / f"grid-{slug(method)}-{domain}.png",
                                        f"{method}: {label} images", rows if ids else None)
            if path is None:
                continue
            caption = f"{method}, {label} images: best- and worst-scored cases, one per subject"
            if dropped:
                caption += f" ({dropped} more saved cases of subjects already shown are left out)"
            shown.append(_figure(f"{name}/{path.name}", caption, f"{method} {label} grid"))
        if shown:
            ctx["grids"].append({"method": escape_text(method), "figures": shown})


def run_context(data: RunData, out_dir: Path) -> dict[str, Any]:
    """The page context of a run; figures are written to ``out_dir/<slug>/`` (cleared first)."""
    name = slug(data.run_id)
    fig_dir = out_dir / name
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    state = run_state(data)
    dataset = data.run.get("dataset") if isinstance(data.run.get("dataset"), dict) else {}
    ctx: dict[str, Any] = {
        "run_id": escape_text(data.run_id), "state": state.kind, "cause": escape_text(state.cause or ""),
        "summary": _summary(data), "shows_results": state.has_results,
        "completed": MyST(", ".join(escape_text(m) for m in state.completed)),
        "identity": md_table(["", ""], identity_rows(data)), "timings": _timings(data),
        "split_counts": _split_counts(data), "subject_counts": _subject_counts(data),
        "notes": [escape_text(n) for n in data.run.get("notes") or []],
        "problems": [escape_text(p) for p in data.problems], "packages": None,
        "downloads": _downloads(data, fig_dir, name), "eda_sections": _eda(data, fig_dir, name),
        "headline": None, "forest": None, "paired_table": None, "threshold_table": None, "metric_notes": [],
        "other_metrics": None, "failures": _failures(data), "strata_table": None, "strata_notes": [],
        "bootstrap_unit": escape_text(_BOOTSTRAP_UNITS.get(dataset.get("bootstrap_unit"), "")),
        "generative": [], "curves": [], "curve_notes": [], "training": [], "grids": [],
    }
    packages = data.run.get("packages")
    if isinstance(packages, dict) and packages:
        ctx["packages"] = md_table(["package", "version"], sorted(packages.items()))
    if not state.has_results:
        return ctx
    index = MetricIndex([r for r in data.metrics if not r.get("other")])
    names = ordered_methods(data, index)
    ctx["headline"] = _headline(data, index, names)
    forest, has_deltas = _forest(data, index, names, fig_dir)
    if forest is not None:
        paired = f"; right: {_best(index, names)} minus each other method, paired on the same test images" \
            if has_deltas else ""
        ctx["forest"] = _figure(f"{name}/{forest.name}", f"{'Left: test' if paired else 'Test'} AUROC of every method "
                                f"with its 95% CI{paired}", "forest plot of AUROC")
    ctx["paired_table"] = _paired_table(data, index, names)
    ctx["threshold_table"], ctx["metric_notes"] = _threshold_table(data, index, names)
    ctx["other_metrics"] = _other_metrics(data)
    ctx["strata_table"], ctx["strata_notes"] = _strata_table(index, names)
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
    _grids(data, fig_dir, name, ctx)
    return ctx
