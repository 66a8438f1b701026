"""One run -> the context of its page (tables as markdown), its figures and downloads on disk.

The page reads results first: a headline table (each method's AUROC, AP, pixel AUROC and Dice
with CIs, in compact cells) and a forest plot, then the detail tables and figures, then what ran
and the dataset. Methods keep the run's order everywhere and the paired tables subtract the
references fixed in advance (``PAIRED_REFERENCES``): a page that sorted or picked a "best" by its
test numbers would test the winner of a selection made on the same data. Titles, digits and
directions come from the run's metric infos (metrics.json ``metrics``); a metric family the
page does not lay out (a plugin suite's) gets a table of its own, and rows of a metric the run
does not describe still appear (under "Other metrics").
"""

from __future__ import annotations

import csv
import io
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.metric_info import MetricInfo, paired_infos
from harness.results import FLOOR_METHOD, PAIRED_REFERENCES, ROW_KEYS, STRATUM_PREFIX
from reports import figures
from reports.eda_section import eda_sections
from reports.escape import MyST, escape_text, fence, slug
from reports.grid_cases import distinct_subject_rows
from reports.reader import RunData
from reports.run_state import run_state
from reports.tables import (DASH, SUPERVISION, MetricIndex, fmt, fmt_compact, fmt_metric, info_of, is_number,
                            md_table, short_hash)

__all__ = ["SHOWS_RESULTS", "run_context", "identity_rows", "metrics_csv", "method_label", "ordered_methods",
           "supervision_label"]

SHOWS_RESULTS = ("complete", "failed")  # "failed": some method failed; the others have results
_AT_THRESHOLD = ("sensitivity", "specificity", "balanced_accuracy")
_BOOTSTRAP_UNITS = {"subject": "whole subjects (slices of one subject are not independent)",
                    "image": "images (the dataset names no subjects)"}
DOMAINS = {"tumor": "Tumor", "no_tumor": "No tumor"}
FEATURE_SPACES = ("mri-resnet18", "inception-v3")
# The metrics the page's own tables lay out (headline, threshold, strata; paired differences have
# theirs, rows with a feature space the generative tables). Any other metric the run describes
# gets a table of its family; one it does not describe goes to "Other metrics": nothing is dropped.
# Titles, digits and directions come from the run's infos (metrics.json ``metrics``).
_LAID_OUT = {"auroc", "ap", "ap_chance", "pixel_auroc", "pixel_ap", "dice", "dice_oracle", *_AT_THRESHOLD}
_ARROWS = {True: " ↑", False: " ↓", None: ""}


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


def _chance(data: RunData, index: MetricIndex, names: list[str]) -> tuple[str, dict[str, str]]:
    """AP's chance level: in the column title when every method shares it, else per cell."""
    levels = {n: fmt(row.get("value")) for n in names if (row := index.get(n, "ap_chance")) and is_number(row.get("value"))}
    title = info_of(data.infos, "ap").title
    if levels and len(set(levels.values())) == 1:
        return f"{title} (chance {next(iter(levels.values()))})", {}
    return title, levels


def _headline(data: RunData, index: MetricIndex, names: list[str]) -> MyST | None:
    """Method | Supervision | AUROC | AP | Pixel AUROC | Dice: the numbers a reader came for."""
    if not names:
        return None
    ap_title, per_cell_chance = _chance(data, index, names)
    columns: list[tuple[str, str]] = [("auroc", info_of(data.infos, "auroc").title), ("ap", ap_title)]
    if index.has("pixel_auroc"):
        columns.append(("pixel_auroc", info_of(data.infos, "pixel_auroc").title))
    if index.has("dice"):
        columns.append(("dice", info_of(data.infos, "dice").title))
    elif index.has("dice_oracle"):  # older runs' best_dice is read as dice_oracle (harness.results)
        columns.append(("dice_oracle", info_of(data.infos, "dice_oracle").title))
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


def _reference_title(reference: str) -> str:
    """How the page names a reference of the paired tests."""
    names = {FLOOR_METHOD: "the shortcut floor", "intensity": "the intensity floor (intensity)"}
    return names.get(reference, reference)


def _against(data: RunData, metric: str | None, reference: str, names: list[str]) -> list[dict[str, Any]]:
    """Each method minus ``reference`` (a reference fixed in advance, never the best on test), in
    the page's method order: the comparisons the harness tested and Holm-adjusted as one family.
    The shortcut floor is no method, so it is never shown minus another reference."""
    rows = {r["method"]: r for r in data.metrics if r.get("metric") == metric and r.get("other") == reference
            and (r.get("split") or "test") == "test" and r.get("domain", "all") == "all"}
    return [rows[n] for n in names if n in rows and n not in (reference, FLOOR_METHOD)]


def _forest(data: RunData, index: MetricIndex, names: list[str], fig_dir: Path) -> tuple[Path | None, str | None]:
    """The forest plot in the page's method order, and the reference its panel of paired
    differences subtracts (the first of :data:`PAIRED_REFERENCES` the run paired), if any."""
    methods = [figures.Interval(name, row["value"], row.get("ci_low"), row.get("ci_high"))
               for name in names if (row := index.get(name, "auroc")) and is_number(row.get("value"))]
    metric = _delta_of(data, "auroc")
    reference = next((r for r in PAIRED_REFERENCES if _against(data, metric, r, names)), None)
    deltas = [figures.Interval(f"{row['method']} − {row['other']}", row["value"], row.get("ci_low"),
                               row.get("ci_high"))
              for row in _against(data, metric, reference, names) if is_number(row.get("value"))] if reference else []
    return figures.forest_plot(methods, deltas, fig_dir / "forest.png"), reference if deltas else None


def _delta_of(data: RunData, metric: str) -> str | None:
    """The run's paired-difference metric of ``metric`` (e.g. auroc_delta for auroc), if any."""
    return next((i.id for i in paired_infos(data.infos) if i.paired_of == metric), None)


def _p(row: dict[str, Any] | None, key: str = "p_value") -> MyST:
    p = (row or {}).get(key)
    if not is_number(p):
        return DASH
    return MyST("< 0.001") if p < 0.001 else fmt(p, 3)


def _paired_tables(data: RunData, names: list[str]) -> list[dict[str, Any]]:
    """One table per fixed reference the run paired: each method minus it, per paired metric the
    difference with its CI, the raw p-value and the Holm-adjusted one (both from metrics.json),
    and the rows' notes (which test, on how many subjects, which Holm family) once each."""
    metrics = [i for i in paired_infos(data.infos) if any(r.get("metric") == i.id for r in data.metrics)]
    tables = []
    for reference in PAIRED_REFERENCES:
        shown = {i.id: {r["method"]: r for r in _against(data, i.id, reference, names)} for i in metrics}
        methods = [n for n in names if any(n in rows for rows in shown.values())]
        if not methods:
            continue
        rows = []
        for name in methods:
            cells: list[Any] = [method_label(name), supervision_label(data, name)]
            for info in metrics:
                found = shown[info.id].get(name)
                cells += [fmt_compact(found, info.digits), _p(found), _p(found, "p_holm")]
            rows.append(cells)
        header = ["Method", "Supervision"] + [h for i in metrics for h in (i.title, "p", "p (Holm)")]
        notes = dict.fromkeys(str(r["note"]) for rows_of in shown.values() for r in rows_of.values() if r.get("note"))
        tables.append({"reference": escape_text(_reference_title(reference)), "table": md_table(header, rows),
                       "notes": [escape_text(n) for n in notes]})
    return tables


def _unadjusted(data: RunData) -> bool:
    """A run from before the permutation test (schema 1): paired p-values, none Holm-adjusted."""
    paired = [r for r in data.metrics if r.get("other")]
    return any(is_number(r.get("p_value")) for r in paired) and not any(is_number(r.get("p_holm")) for r in paired)


def _threshold_table(data: RunData, index: MetricIndex, names: list[str]) -> tuple[MyST | None, list[MyST]]:
    """Rates at the validation threshold, the pixel metrics, and the notes of unavailable values."""
    title = {m: info_of(data.infos, m).title for m in (*_AT_THRESHOLD, "pixel_ap", "dice", "dice_oracle")}
    columns = [(m, title[m]) for m in _AT_THRESHOLD]
    columns += [(m, t) for m, t in (("pixel_ap", title["pixel_ap"]), ("dice", f"{title['dice']} (val threshold)"),
                                    ("dice_oracle", title["dice_oracle"])) if index.has(m)]
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


def _overall(data: RunData) -> list[dict[str, Any]]:
    """The overall test rows outside the generative tables and the paired differences."""
    return [r for r in data.metrics if not r.get("feature_space") and not r.get("other")
            and str(r.get("domain") or "all") == "all" and (r.get("split") or "test") == "test"]


def _family_tables(data: RunData, names: list[str]) -> list[dict[str, Any]]:
    """One table per family of the metrics the run describes that no table above lays out (a
    plugin suite's): Method | Supervision | a column per metric, titled with its direction."""
    index = MetricIndex(_overall(data))
    families: dict[str, list[MetricInfo]] = {}
    for info in data.infos.values():
        if info.id not in _LAID_OUT and info.paired_of is None and index.has(info.id):
            families.setdefault(info.family, []).append(info)
    tables = []
    for family, infos in families.items():
        rows, notes = [], defaultdict(list)  # note -> the cells it explains
        for name in [n for n in names if any(index.get(n, i.id) for i in infos)]:
            rows.append([method_label(name), supervision_label(data, name)]
                        + [fmt_compact(index.get(name, i.id), i.digits) for i in infos])
            for info in infos:
                note = (index.get(name, info.id) or {}).get("note")
                if note:
                    notes[str(note)].append(f"{name} {info.title}")
        header = ["Method", "Supervision"] + [f"{i.title}{_ARROWS[i.higher_is_better]}" for i in infos]
        tables.append({"title": escape_text(family[:1].upper() + family[1:]), "table": md_table(header, rows),
                       "notes": [escape_text(f"{', '.join(cells)}: {note}") for note, cells in notes.items()]})
    return tables


def _other_metrics(data: RunData) -> MyST | None:
    """Rows of metrics the run does not describe, as they are: the page never drops a result."""
    rows = [r for r in _overall(data) if r.get("metric") not in _LAID_OUT and r.get("metric") not in data.infos]
    if not rows:
        return None
    return md_table(["Method", "Metric", "Value", "n", "Note"],
                    [[method_label(str(r["method"])), r["metric"], fmt_metric(r, info_of(data.infos, str(r["metric"]))),
                      r.get("n"), r.get("note")] for r in rows])


def _strata_table(data: RunData, index: MetricIndex, names: list[str]) -> tuple[MyST | None, list[MyST]]:
    """Method x stratum: test images, tumor share, AUROC and AP with CIs, sensitivity and
    specificity at the validation threshold; and the notes of values not computed."""
    strata = index.strata()
    if not strata:
        return None, []
    header = ["Method", "Stratum", "Test images", "Tumor share"] + [
        info_of(data.infos, m).title for m in ("auroc", "ap", "sensitivity", "specificity")]
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


def _generative(data: RunData, index: MetricIndex) -> list[dict[str, Any]]:
    """Per method and feature space: Domain | the generative metrics present | n, and notes."""
    tables = []
    for method in index.methods():
        for space in sorted(index.generative_spaces(method),
                            key=lambda s: (FEATURE_SPACES.index(s) if s in FEATURE_SPACES else 9, s)):
            domains = index.generative_domains(method)
            present = {k[3] for k in index.rows if k[0] == method and k[4] == space}
            metrics = [m for m in data.infos if m in present] + sorted(present - set(data.infos))
            rows, notes = [], defaultdict(list)  # note -> the cells it explains
            for domain in domains:
                cells: list[Any] = [DOMAINS.get(domain, domain)]
                n = None
                for metric in metrics:
                    found = index.get(method, metric, domain, space)
                    cells.append(fmt_metric(found, info_of(data.infos, metric)))
                    n = n or (found or {}).get("n")
                    if found is not None and found.get("note"):
                        notes[str(found["note"])].append(f"{DOMAINS.get(domain, domain)} {metric}")
                rows.append(cells + [n])
            header = ["Into domain"] + [info_of(data.infos, m).title for m in metrics] + ["n"]
            total = len(metrics) * len(rows)
            tables.append({"method": escape_text(method), "space": escape_text(space), "table": md_table(header, rows),
                           "notes": [escape_text(f"{'All values' if len(cells) == total else ', '.join(cells)}: {note}")
                                     for note, cells in notes.items()]})
    return tables


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
        "headline": None, "forest": None, "paired_tables": [], "unadjusted": False, "threshold_table": None,
        "metric_notes": [],
        "families": [], "other_metrics": None, "failures": _failures(data), "strata_table": None, "strata_notes": [],
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
    forest, reference = _forest(data, index, names, fig_dir)
    if forest is not None:
        paired = f"; right: each method minus {_reference_title(reference)}, a reference fixed in advance, paired " \
                 "on the same test images" if reference else ""
        ctx["forest"] = _figure(f"{name}/{forest.name}", f"{'Left: test' if paired else 'Test'} AUROC of every method "
                                f"with its 95% CI, in the run's method order{paired}", "forest plot of AUROC")
    ctx["paired_tables"], ctx["unadjusted"] = _paired_tables(data, names), _unadjusted(data)
    ctx["threshold_table"], ctx["metric_notes"] = _threshold_table(data, index, names)
    ctx["families"] = _family_tables(data, names)
    ctx["other_metrics"] = _other_metrics(data)
    ctx["strata_table"], ctx["strata_notes"] = _strata_table(data, index, names)
    ctx["generative"] = _generative(data, index)
    if data.detection_curves is None:  # a run from before the harness stored ROC/PR points
        ctx["curve_notes"] = [escape_text("No ROC or PR curves: this run stored no curve points (curves/detection.json).")]
    else:
        notes = figures.detection_curves(data.detection_curves.get("methods") or {}, fig_dir / "roc.png",
                                         fig_dir / "pr.png")
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
