"""One run -> the context of its page (tables as markdown), its figures and downloads on disk.

The page reads results first: a headline table (each method's AUROC, AP, pixel AUROC and Dice
with CIs, in compact cells; the methods and the shortcut floors), the variants' table (each
``<method>+<suffix>`` beside its method's values: a variant scores the same model another way,
e.g. with a map chosen on validation lesion masks, so it is no headline row) and a forest plot of
the headline rows, then the detail tables and figures, then what ran and the dataset. Methods keep the run's order everywhere and the paired tables subtract the
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.metric_info import MetricInfo, paired_infos
from harness.registry import split_variant
from harness.results import FLOOR_METHOD, FLOOR_METHODS, LR_FLOOR_METHOD, PAIRED_REFERENCES, ROW_KEYS, STRATUM_PREFIX
from reports import figures
from reports.eda_section import eda_sections
from reports.escape import MyST, escape_note, escape_text, fence, slug
from reports.footnotes import NotedTable, clauses, footnoted
from reports.grid_cases import distinct_subject_rows
from reports.reader import RunData
from reports.run_state import run_state
from reports.tables import (DASH, SUPERVISION, MetricIndex, fmt, fmt_compact, fmt_metric, info_of, is_number,
                            md_table, short_hash)

__all__ = ["SHOWS_RESULTS", "run_context", "identity_rows", "metrics_csv", "method_label", "ordered_methods",
           "supervision_label", "variant_of"]

SHOWS_RESULTS = ("complete", "failed")  # "failed": some method failed; the others have results
_AT_THRESHOLD = ("sensitivity", "specificity", "balanced_accuracy")
_BOOTSTRAP_UNITS = {"subject": "whole subjects (slices of one subject are not independent)",
                    "image": "images (the dataset names no subjects)"}
DOMAINS = {"tumor": "Tumor", "no_tumor": "No tumor"}
# The metrics the page's own tables lay out (headline, threshold, strata; paired differences have
# theirs, rows with a feature space the generative tables). Any other metric the run describes
# gets a table of its family; one it does not describe goes to "Other metrics": nothing is dropped.
# Titles, digits and directions come from the run's infos (metrics.json ``metrics``).
_LAID_OUT = {"auroc", "ap", "ap_chance", "pixel_auroc", "pixel_ap", "dice", "dice_oracle", *_AT_THRESHOLD}
_ARROWS = {True: " ↑", False: " ↓", None: ""}


def method_label(name: str) -> MyST:
    """A method's name as the tables show it (the shortcut floors are not methods: in italics; a
    variant, ``<method>+<suffix>``, says so wherever it shares a table with the methods)."""
    if name == FLOOR_METHOD:
        return MyST("*shortcut floor*")
    if name == LR_FLOOR_METHOD:
        return MyST("*shortcut floor (LR)*")
    if split_variant(name)[1]:
        return MyST(f"**{escape_text(name)}** *(variant)*")
    return MyST(f"**{escape_text(name)}**")


def variant_of(data: RunData, name: str) -> str | None:
    """The method whose fitted model variant ``name`` scores (run.json ``variant_of``; else the
    part of the name before ``+``, which no method name contains); None for a method or a floor."""
    info = data.methods.get(name)
    base = info.get("variant_of") if isinstance(info, dict) else None
    if isinstance(base, str) and base:
        return base
    base, suffix = split_variant(name)
    return base if suffix else None


def ordered_methods(data: RunData, index: MetricIndex) -> list[str]:
    """The run's methods in run.json order, then any others with rows, the shortcut floors last."""
    names = list(dict.fromkeys([*data.methods, *index.methods()]))
    return [n for n in names if n not in FLOOR_METHODS] + [n for n in FLOOR_METHODS if n in names]


def supervision_label(data: RunData, name: str) -> str | None:
    """How the method learns (run.json ``supervision``), as the tables name it."""
    info = data.methods.get(name)
    value = info.get("supervision") if isinstance(info, dict) else None
    if name == FLOOR_METHOD:
        return "image labels"  # one input feature and a direction, chosen on labelled validation images
    if name == LR_FLOOR_METHOD:
        return "image labels (train)"  # a logistic regression fitted on the train split's labels
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


def _with_status(data: RunData, name: str, label: MyST) -> MyST:
    """``label``, followed by the method's status where it did not complete."""
    info = data.methods.get(name)
    status = info.get("status") if isinstance(info, dict) else None
    return label if status in (None, "complete", "input feature") else MyST(f"{label} ({escape_text(status)})")


def _pixel_columns(data: RunData, index: MetricIndex) -> list[tuple[str, str]]:
    """(metric, title) of the pixel columns the run has: pixel AUROC, then Dice (the validation
    threshold's; an older run's best_dice is read as dice_oracle, harness.results)."""
    columns = [("pixel_auroc", info_of(data.infos, "pixel_auroc").title)] if index.has("pixel_auroc") else []
    dice = next((m for m in ("dice", "dice_oracle") if index.has(m)), None)
    return columns + ([(dice, info_of(data.infos, dice).title)] if dice else [])


def _headline(data: RunData, index: MetricIndex, names: list[str]) -> NotedTable | None:
    """Method | Supervision | AUROC | AP | Pixel AUROC | Dice of the methods and the floors: the
    numbers a reader came for (the variants have their own table, :func:`_variants_table`)."""
    if not names:
        return None
    ap_title, per_cell_chance = _chance(data, index, names)
    columns = [("auroc", info_of(data.infos, "auroc").title), ("ap", ap_title), *_pixel_columns(data, index)]
    table = NotedTable(["Method", "Supervision"] + [title for _, title in columns])
    for name in names:
        row: list[Any] = [_with_status(data, name, method_label(name)), supervision_label(data, name)]
        for metric, _ in columns:
            cell = fmt_compact(index.get(name, metric))
            if metric == "ap" and name in per_cell_chance and cell != DASH:
                cell = MyST(f"{cell} [chance {per_cell_chance[name]}]{{.ci}}")
            row.append(cell)
        r = table.add_row(row, name)
        _attach_all(table, r, [(2 + i, index.get(name, metric)) for i, (metric, _) in enumerate(columns)])
    return table


def _chosen(data: RunData, name: str) -> str | None:
    """The map and aggregate the variant chose (run.json ``selected``), e.g. ``ssim, top1``."""
    info = data.methods.get(name)
    selected = info.get("selected") if isinstance(info, dict) else None
    if not isinstance(selected, dict):
        return None
    return ", ".join(str(selected[k]) for k in ("map", "aggregate") if isinstance(selected.get(k), str)) or None


def _variants_table(data: RunData, index: MetricIndex, variants: list[str]) -> NotedTable | None:
    """Variant | Supervision | Map, aggregate | per metric (AUROC, pixel AUROC, Dice) its base
    method's value, then the variant's with its CI: what scoring the same model another way
    (e.g. tuned on validation lesion masks) changes. The base's CIs and notes are in the headline."""
    if not variants:
        return None
    columns = [("auroc", info_of(data.infos, "auroc").title), *_pixel_columns(data, index)]
    chosen = any(_chosen(data, n) for n in variants)
    first = ["Variant", "Supervision"] + (["Map, aggregate"] if chosen else [])
    table = NotedTable(first + [t for _, title in columns for t in (f"{title} (base)", title)])
    for name in variants:
        base = variant_of(data, name) or name
        row: list[Any] = [_with_status(data, name, MyST(f"**{escape_text(name)}**")), supervision_label(data, name)]
        row += [_chosen(data, name)] if chosen else []
        for metric, _ in columns:
            row += [fmt((index.get(base, metric) or {}).get("value")), fmt_compact(index.get(name, metric))]
        r = table.add_row(row, name)
        _attach_all(table, r, [(len(first) + 1 + 2 * i, index.get(name, metric)) for i, (metric, _) in enumerate(columns)])
    return table


def _variants_caption(data: RunData, variants: list[str]) -> MyST:
    """The variants table's title ("Tuned variants" where every suffix is "tuned") and how they
    differ from their methods (lesion masks where every supervision ends in ``+val_masks``)."""
    title = "Tuned variants" if all(split_variant(n)[1] == "tuned" for n in variants) else "Variants"
    masks = all(str((data.methods.get(n) or {}).get("supervision") or "").endswith("+val_masks") for n in variants)
    how = "map and aggregate chosen on validation lesion masks" if masks else "each scored another way"
    why = "; no headline rows, since no headline row saw a lesion mask" if masks else ""
    return MyST(f"**{title}: the same models, {how}.** Each variant beside its base method's value "
                f"(with its CI in the table above){why}.")


def _attach_all(table: NotedTable, row: int, cells: list[tuple[int, dict[str, Any] | None]],
                drop: Callable[[str], bool] | None = None) -> None:
    """Attach each shown metrics row's note to its cell (``drop``: clauses a column shows itself)."""
    for col, found in cells:
        if found is not None:
            table.attach(row, col, [c for c in clauses(found.get("note")) if not (drop and drop(c))])


def _reference_title(reference: str) -> str:
    """How the page names a reference of the paired tests."""
    names = {FLOOR_METHOD: "the shortcut floor", LR_FLOOR_METHOD: "the logistic-regression shortcut floor",
             "intensity": "the intensity floor (intensity)"}
    return names.get(reference, reference)


def _against(data: RunData, metric: str | None, reference: str, names: list[str]) -> list[dict[str, Any]]:
    """Each method minus ``reference`` (a reference fixed in advance, never the best on test), in
    the page's method order: the comparisons the harness tested and Holm-adjusted as one family.
    The shortcut floors are no methods, so they are never shown minus another reference."""
    rows = {r["method"]: r for r in data.metrics if r.get("metric") == metric and r.get("other") == reference
            and (r.get("split") or "test") == "test" and r.get("domain", "all") == "all"}
    return [rows[n] for n in names if n in rows and n not in (reference, *FLOOR_METHODS)]


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
    difference with its CI, the raw p-value and the Holm-adjusted one (both from metrics.json);
    the rows' notes (which test, on how many subjects, which Holm family) as the section's
    footnotes, each once."""
    metrics = [i for i in paired_infos(data.infos) if any(r.get("metric") == i.id for r in data.metrics)]
    references, tables = [], []
    for reference in PAIRED_REFERENCES:
        shown = {i.id: {r["method"]: r for r in _against(data, i.id, reference, names)} for i in metrics}
        methods = [n for n in names if any(n in rows for rows in shown.values())]
        if not methods:
            continue
        table = NotedTable(["Method", "Supervision"] + [h for i in metrics for h in (i.title, "p", "p (Holm)")])
        for name in methods:
            cells: list[Any] = [method_label(name), supervision_label(data, name)]
            for info in metrics:
                found = shown[info.id].get(name)
                cells += [fmt_compact(found, info.digits), _p(found), _p(found, "p_holm")]
            r = table.add_row(cells, name)
            _attach_all(table, r, [(2 + 3 * k, shown[info.id].get(name)) for k, info in enumerate(metrics)])
        references.append(reference)
        tables.append(table)
    return [{"reference": escape_text(_reference_title(reference)), "table": md, "notes": notes}
            for reference, (md, notes) in zip(references, footnoted(tables, "paired"))]


def _unadjusted(data: RunData) -> bool:
    """A run from before the permutation test (schema 1): paired p-values, none Holm-adjusted."""
    paired = [r for r in data.metrics if r.get("other")]
    return any(is_number(r.get("p_value")) for r in paired) and not any(is_number(r.get("p_holm")) for r in paired)


def _threshold_table(data: RunData, index: MetricIndex, names: list[str]) -> tuple[MyST | None, list[MyST]]:
    """Rates at the validation threshold and the pixel metrics, with their notes as footnotes."""
    title = {m: info_of(data.infos, m).title for m in (*_AT_THRESHOLD, "pixel_ap", "dice", "dice_oracle")}
    columns = [(m, title[m]) for m in _AT_THRESHOLD]
    columns += [(m, t) for m, t in (("pixel_ap", title["pixel_ap"]), ("dice", f"{title['dice']} (val threshold)"),
                                    ("dice_oracle", title["dice_oracle"])) if index.has(m)]
    table = NotedTable(["Method", "Threshold (from val)"] + [t for _, t in columns])
    for name in names:
        info = data.methods.get(name, {})
        threshold = info.get("threshold") if isinstance(info, dict) else None
        r = table.add_row([method_label(name), fmt(threshold, 4)] + [fmt_compact(index.get(name, m)) for m, _ in columns],
                          name)
        _attach_all(table, r, [(2 + i, index.get(name, m)) for i, (m, _) in enumerate(columns)
                               if m in _AT_THRESHOLD], drop=_threshold_shown(threshold))
        _attach_all(table, r, [(2 + i, index.get(name, m)) for i, (m, _) in enumerate(columns)
                               if m not in _AT_THRESHOLD])
    if not any(any(c != DASH for c in row[1:]) for row in table.rows):
        return None, []
    ((md, notes),) = footnoted([table], "threshold")
    return md, notes


def _threshold_shown(threshold: Any) -> Callable[[str], bool]:
    """Drops a rate's "threshold=..." clause where the method's validation threshold is in the
    threshold table: the column says it once, not a note per rate and stratum."""
    return lambda clause: is_number(threshold) and clause.startswith("threshold=")


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
    for k, (family, infos) in enumerate(families.items()):
        table = NotedTable(["Method", "Supervision"] + [f"{i.title}{_ARROWS[i.higher_is_better]}" for i in infos],
                           columns=["Method", "Supervision"] + [i.title for i in infos])
        for name in [n for n in names if any(index.get(n, i.id) for i in infos)]:
            r = table.add_row([method_label(name), supervision_label(data, name)]
                              + [fmt_compact(index.get(name, i.id), i.digits) for i in infos], name)
            _attach_all(table, r, [(2 + j, index.get(name, i.id)) for j, i in enumerate(infos)])
        ((md, notes),) = footnoted([table], f"family{k}")
        tables.append({"title": escape_text(family[:1].upper() + family[1:]), "table": md, "notes": notes})
    return tables


def _other_metrics(data: RunData) -> MyST | None:
    """Rows of metrics the run does not describe, as they are: the page never drops a result."""
    rows = [r for r in _overall(data) if r.get("metric") not in _LAID_OUT and r.get("metric") not in data.infos]
    if not rows:
        return None
    return md_table(["Method", "Metric", "Value", "n", "Note"],
                    [[method_label(str(r["method"])), r["metric"], fmt_metric(r, info_of(data.infos, str(r["metric"]))),
                      r.get("n"), r.get("note")] for r in rows])


def _strata_table(data: RunData, index: MetricIndex, names: list[str]) -> dict[str, Any] | None:
    """Method x stratum: test images, tumor share, AUROC and AP with CIs, sensitivity and
    specificity at the validation threshold, with the notes as footnotes; a stratum where no
    method has an AUROC is one line (why) instead of a row of dashes per method."""
    strata = index.strata()
    if not strata:
        return None
    metrics = ("auroc", "ap", "sensitivity", "specificity")
    table = NotedTable(["Method", "Stratum", "Test images", "Tumor share"] + [info_of(data.infos, m).title
                                                                             for m in metrics])
    empty = []
    for stratum in strata:
        domain = STRATUM_PREFIX + stratum
        found = {n: {m: index.get(n, m, domain) for m in (*metrics, "ap_chance")} for n in names}
        if not any(is_number((f["auroc"] or {}).get("value")) for f in found.values()):
            first = next((f for f in found.values() if f["auroc"] is not None), None)
            if first is not None:
                why = [c for f in found.values() for row in f.values() if row for c in clauses(row.get("note"))]
                size = f"({first['auroc'].get('n')} test images, tumor share " \
                       f"{fmt((first['ap_chance'] or {}).get('value'), 2)})"
                empty.append(MyST(f"**{escape_text(stratum)}** {escape_text(size)}: no method has a value: "
                                  f"{escape_note('; '.join(dict.fromkeys(why)) or 'no reason recorded')}"))
            continue
        for method in names:
            if found[method]["auroc"] is None:
                continue
            chance = found[method]["ap_chance"] or {}
            r = table.add_row([method_label(method), stratum, found[method]["auroc"].get("n"), fmt(chance.get("value"), 2)]
                              + [fmt_compact(found[method][m]) for m in metrics], f"{method} {stratum}")
            threshold = (data.methods.get(method) or {}).get("threshold")
            _attach_all(table, r, [(4 + i, found[method][m]) for i, m in enumerate(metrics)],
                        drop=_threshold_shown(threshold))
    ((md, notes),) = footnoted([table], "strata")
    return {"table": md if table.rows else None, "notes": notes, "empty": empty}


def _failures(data: RunData) -> list[dict[str, Any]]:
    out = []
    for name, info in data.methods.items():
        if isinstance(info, dict) and info.get("status") == "failed":
            out.append({"name": escape_text(name), "status": escape_text(info.get("status")),
                        "error": fence(info.get("error") or "no error message recorded")})
    return out


def _generative(data: RunData, index: MetricIndex) -> list[dict[str, Any]]:
    """Per feature space (in the run's order): Method | Into domain | its metrics | n, the notes as
    footnotes of the whole section; a space where no cell has a value (weights missing) is one
    line that says why, in the rows' own words."""
    rows_of: dict[str, list[tuple[str, str]]] = {}  # space -> (method, domain) in the run's order
    for key in index.rows:
        if key[4]:
            rows_of.setdefault(key[4], [])
            if (key[0], key[2]) not in rows_of[key[4]]:
                rows_of[key[4]].append((key[0], key[2]))
    methods = ordered_methods(data, index)
    order = {"tumor": 0, "no_tumor": 1}
    spaces, tables = [], []
    for space, pairs in rows_of.items():
        pairs.sort(key=lambda p: (methods.index(p[0]) if p[0] in methods else len(methods), order.get(p[1], 2), p[1]))
        present = {k[3] for k in index.rows if k[4] == space}
        metrics = [m for m in data.infos if m in present] + sorted(present - set(data.infos))
        found = {(m, d, metric): index.get(m, metric, d, space) for m, d in pairs for metric in metrics}
        if not any(is_number((row or {}).get("value")) for row in found.values()):
            why = list(dict.fromkeys(c for row in found.values() if row for c in clauses(row.get("note"))))
            shown = ", ".join(dict.fromkeys(m for m, _ in pairs))
            spaces.append({"space": escape_text(space), "table": None, "notes": [],
                           "empty": MyST(f"No value for any method ({escape_text(shown)}): "
                                         f"{escape_note('; '.join(why) or 'no reason recorded')}")})
            continue
        table = NotedTable(["Method", "Into domain"] + [info_of(data.infos, m).title for m in metrics] + ["n"])
        for method, domain in pairs:
            cells = [fmt_compact(found[(method, domain, m)], info_of(data.infos, m).digits) for m in metrics]
            n = next((row.get("n") for m in metrics if (row := found[(method, domain, m)]) and row.get("n")), None)
            r = table.add_row([method_label(method), DOMAINS.get(domain, domain), *cells, n],
                              f"{method} into {DOMAINS.get(domain, domain).lower()}")
            _attach_all(table, r, [(2 + i, found[(method, domain, m)]) for i, m in enumerate(metrics)])
        spaces.append({"space": escape_text(space), "empty": None})
        tables.append(table)
    rendered = iter(footnoted(tables, "generative"))
    for item in spaces:
        if item["empty"] is None:
            item["table"], item["notes"] = next(rendered)
    return [item for item in spaces if item["empty"] is None] + [item for item in spaces if item["empty"]]


def _figure(rel: str, caption: Any, alt: str, vector_of: Path | None = None) -> MyST:
    """A MyST figure; with ``vector_of`` (the PNG on disk), links to its PDF and SVG where they exist."""
    return MyST(f":::{{figure}} {rel}\n:alt: {escape_text(alt)}\n\n{escape_text(caption)}"
                f"{_vector_links(rel, vector_of)}\n:::")


def _vector_links(rel: str, png: Path | None) -> str:
    """The " Vector: PDF · SVG" download links of a figure written in vector form beside its PNG
    (``figures._save(vector=True)``), for a paper's figure; empty where none was written."""
    if png is None:
        return ""
    links = [f"{{download}}`{fmt.upper()} <{rel[:-len('.png')]}.{fmt}>`" for fmt in ("pdf", "svg")
             if png.with_suffix(f".{fmt}").is_file()]
    return f" Vector: {' · '.join(links)}." if links else ""


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
        "headline": None, "headline_notes": [], "variants": None, "forest": None, "paired_tables": [], "unadjusted": False,
        "threshold_table": None, "threshold_notes": [],
        "families": [], "other_metrics": None, "failures": _failures(data), "strata": None,
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
    main = [n for n in names if variant_of(data, n) is None]
    variants = [n for n in names if n not in main]
    # one set of footnotes for both tables: a note they share is defined once, under the headline
    tables = [t for t in (_headline(data, index, main), _variants_table(data, index, variants)) if t is not None]
    rendered = footnoted(tables, "headline")
    if main:
        ctx["headline"], ctx["headline_notes"] = rendered.pop(0)
    if variants:
        table, notes = rendered.pop(0)
        ctx["variants"] = {"caption": _variants_caption(data, variants), "table": table, "notes": notes}
    forest, reference = _forest(data, index, main, fig_dir)
    if forest is not None:
        paired = f"; right: each method minus {_reference_title(reference)}, a reference fixed in advance, paired " \
                 "on the same test images" if reference else ""
        shown = " (the variants are in their table above)" if variants else ""
        ctx["forest"] = _figure(f"{name}/{forest.name}", f"{'Left: test' if paired else 'Test'} AUROC of every method "
                                f"with its 95% CI, in the run's method order{shown}{paired}", "forest plot of AUROC",
                                forest)
    ctx["paired_tables"], ctx["unadjusted"] = _paired_tables(data, names), _unadjusted(data)
    ctx["threshold_table"], ctx["threshold_notes"] = _threshold_table(data, index, names)
    ctx["families"] = _family_tables(data, names)
    ctx["other_metrics"] = _other_metrics(data)
    ctx["strata"] = _strata_table(data, index, names)
    ctx["generative"] = _generative(data, index)
    if data.detection_curves is None:  # a run from before the harness stored ROC/PR points
        ctx["curve_notes"] = [escape_text("No ROC or PR curves: this run stored no curve points (curves/detection.json).")]
    else:
        stored = data.detection_curves.get("methods") or {}
        # main rows only, as the forest plot: the variants have their own table above
        notes = figures.detection_curves({k: v for k, v in stored.items() if variant_of(data, k) is None},
                                         fig_dir / "roc.png", fig_dir / "pr.png")
        ctx["curve_notes"] = [escape_text(n) for n in notes]
        if (fig_dir / "roc.png").exists():
            ctx["curves"] = [_figure(f"{name}/roc.png", "ROC curves of every method's main row (test split)", "ROC curves",
                                     fig_dir / "roc.png"),
                             _figure(f"{name}/pr.png", "Precision-recall curves (test split); the dotted line "
                                     "is AP's chance level, the share of tumor images", "PR curves", fig_dir / "pr.png")]
    for method, curves in data.curves.items():
        path = figures.training_curves(curves, fig_dir / f"training-{slug(method)}.png", f"{method}: training curves")
        if path is not None:
            ctx["training"].append({"method": escape_text(method),
                                    "figure": _figure(f"{name}/{path.name}", f"{method}: per-epoch training curves",
                                                      f"{method} training curves")})
    _grids(data, fig_dir, name, ctx)
    return ctx
