"""Grids (``runs/grids/<grid_id>/grid.json``, written by ``python -m harness grid``) on the index.

Why: a grid's cells are ordinary runs, each with its own page, but a grid is read as one result:
each method's AUROC and AP over the seeds, the paired differences between methods, and which
cells did not finish. A grid.json is read defensively (it may be half-written, hand-edited or from
a newer harness): one that does not have the shape harness/grid.py writes becomes a notice on the
index, never a failed report. Mean ± sd and sign agreement are recomputed from the per-seed values
with :mod:`harness.seed_summary`, so they read exactly as the *Across seeds* tables and the CLI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results import FLOOR_METHOD
from harness.seed_summary import PairedSpread, SeedSpread, format_spread
from reports.escape import MyST, escape_text, slug
from reports.run_page import method_label
from reports.tables import DASH, fmt, md_table

__all__ = ["Grid", "GridCell", "GridReadError", "grid_sections", "parse_grid", "read_grids"]

SCHEMA_VERSION = 1
_METRICS = ("auroc", "ap")
_PAIRED = {"auroc_delta": "AUROC", "ap_delta": "AP"}
_REQUIRED = object()


class GridReadError(Exception):
    """A grid.json without the shape harness/grid.py writes (the reason names the bad field)."""


@dataclass(frozen=True)
class GridCell:
    key: str
    method: str
    seed: int
    dataset: str
    role: str  # "cell" or "extractor" (the MRI feature method for translating cells; not in the table)
    run_id: str | None
    status: str | None  # None: not collected yet
    error: str | None
    logs: tuple[str, ...]  # the run's log.txt, then submitit's job log


@dataclass(frozen=True)
class Grid:
    grid_id: str
    created: str
    collected: str | None
    profile: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    cells: tuple[GridCell, ...]
    table: tuple[tuple[str, SeedSpread], ...]  # (dataset, spread of one method's metric)
    paired: tuple[tuple[str, PairedSpread], ...]
    warnings: tuple[str, ...]


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _REQUIRED) -> Any:
    """``obj[key]`` when it has type ``kind``; absent or null gives ``default`` when there is one."""
    value = obj.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GridReadError(f"{where}{key} is {'missing' if value is None else repr(value)[:40]}")
    return value


def _list(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str,
          default: Any = _REQUIRED) -> list[Any]:
    """A list whose every item has type ``kind``."""
    items = _get(obj, key, list, where, default)
    for i, item in enumerate(items):
        if not isinstance(item, kind) or isinstance(item, bool):
            raise GridReadError(f"{where}{key}[{i}] is {repr(item)[:40]}")
    return items


def _dicts(doc: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The entries of a list of objects, each with the path an error message names it by."""
    return [(f"{key}[{i}].", item) for i, item in enumerate(_list(doc, key, dict, "", default=[]))]


def _cell(item: dict[str, Any], where: str) -> GridCell:
    logs = (_get(item, "run_log", str, where, None), _get(item, "log", str, where, None))
    return GridCell(key=_get(item, "key", str, where), method=_get(item, "method", str, where),
                    seed=_get(item, "seed", int, where), dataset=_get(item, "dataset", str, where),
                    role=_get(item, "role", str, where, "cell"), run_id=_get(item, "run_id", str, where, None),
                    status=_get(item, "status", str, where, None), error=_get(item, "error", str, where, None),
                    logs=tuple(log for log in logs if log))


def _spread(item: dict[str, Any], where: str) -> tuple[str, SeedSpread]:
    """A table entry -> (dataset, the method's values of one metric over the seeds)."""
    seeds, values = _list(item, "seeds", int, where), _list(item, "values", (int, float), where)
    if len(seeds) != len(values) or not seeds:
        raise GridReadError(f"{where}seeds and values differ in length or are empty")
    return _get(item, "dataset", str, where), SeedSpread(_get(item, "method", str, where),
                                                         _get(item, "metric", str, where), tuple(seeds),
                                                         tuple(map(float, values)))


def _paired(item: dict[str, Any], where: str) -> tuple[str, PairedSpread]:
    """A paired entry -> (dataset, ``method`` - ``other`` over the seeds)."""
    dataset, s = _spread(item, where)
    return dataset, PairedSpread(s.method, s.metric, s.seeds, s.values, other=_get(item, "other", str, where))


def parse_grid(doc: Any, grid_id: str) -> Grid:
    """A grid.json document -> :class:`Grid`, or :class:`GridReadError` naming what is wrong."""
    if not isinstance(doc, dict):
        raise GridReadError("not a JSON object")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise GridReadError(f"schema_version {doc.get('schema_version')!r}; this report reads {SCHEMA_VERSION}")
    spec = _get(doc, "spec", dict, "")
    return Grid(grid_id=grid_id, created=_get(doc, "created", str, "", ""),
                collected=_get(doc, "collected", str, "", None), profile=_get(spec, "profile", str, "spec."),
                methods=tuple(_list(spec, "methods", str, "spec.")), seeds=tuple(_list(spec, "seeds", int, "spec.")),
                overrides=tuple(_list(spec, "overrides", str, "spec.", [])),
                cells=tuple(_cell(item, where) for where, item in _dicts(doc, "cells")),
                table=tuple(_spread(item, where) for where, item in _dicts(doc, "table")),
                paired=tuple(_paired(item, where) for where, item in _dicts(doc, "paired")),
                warnings=tuple(_list(doc, "warnings", str, "", [])))


def read_grids(runs_dir: Path) -> tuple[list[Grid], list[tuple[str, str]]]:
    """Every ``runs_dir/grids/*/grid.json``, newest first, and (folder, reason) for unreadable ones."""
    grids, unreadable = [], []
    for path in sorted((runs_dir / "grids").glob("*/grid.json")):
        try:
            grids.append(parse_grid(json.loads(path.read_text(encoding="utf-8")), path.parent.name))
        except OSError as exc:
            unreadable.append((path.parent.name, f"cannot read grid.json: {exc.strerror or exc}"))
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            unreadable.append((path.parent.name, f"grid.json is not valid JSON: {exc}"))
        except GridReadError as exc:
            unreadable.append((path.parent.name, f"grid.json: {exc}"))
    grids.sort(key=lambda g: (g.created, g.grid_id), reverse=True)
    return grids, unreadable


# ---------------------------------------------------------------- the index section of one grid

def _linked(text: str, run_id: str | None, pages: set[str]) -> MyST:
    """``text`` linked to the run's page when that page was rendered (a dangling link fails -W)."""
    body = escape_text(text)
    return MyST(f"[{body}]({slug(run_id)}.md)") if run_id is not None and run_id in pages else body


def _seed_cell(values: dict[str, float], cell: GridCell | None, pages: set[str]) -> MyST:
    """One (method, seed): ``AUROC / AP`` linked to the cell's page; its status when it has no values."""
    if values:
        text = " / ".join(fmt(values.get(m)) for m in _METRICS)
    elif cell is not None:
        text = cell.status or "not collected"
    else:
        return DASH
    return _linked(text, cell.run_id if cell else None, pages)


def _method_table(grid: Grid, dataset: str, pages: set[str]) -> MyST:
    """Methods (rows) x {AUROC and AP over the seeds, then each seed's values}."""
    spreads = {(s.method, s.metric): s for d, s in grid.table if d == dataset}
    cells = {(c.method, c.seed): c for c in grid.cells if c.dataset == dataset and c.role == "cell"}
    names = list(dict.fromkeys([*grid.methods, *(m for m, _ in spreads)]))
    names = [n for n in names if n != FLOOR_METHOD] + [n for n in names if n == FLOOR_METHOD]
    rows = []
    for name in names:
        row: list[Any] = [method_label(name)]
        row += [format_spread(spreads[name, m]) if (name, m) in spreads else DASH for m in _METRICS]
        for seed in grid.seeds:
            values = {m: dict(zip(spreads[name, m].seeds, spreads[name, m].values)).get(seed)
                      for m in _METRICS if (name, m) in spreads}
            row.append(_seed_cell({m: v for m, v in values.items() if v is not None}, cells.get((name, seed)), pages))
        rows.append(row)
    header = ["Method", "AUROC mean ± sd (min-max)", "AP mean ± sd (min-max)", *(f"Seed {s}" for s in grid.seeds)]
    return md_table(header, rows)


def _paired_table(items: list[PairedSpread]) -> MyST:
    """Method minus other, per paired metric: mean ± sd over seeds and on how many the sign holds."""
    rows = []
    for item in items:
        sd = "" if item.sd is None else f" ± {item.sd:.3f}"
        rows.append([method_label(item.method), method_label(item.other), _PAIRED.get(item.metric, item.metric),
                     f"{item.mean:+.3f}{sd}", f"{item.agree}/{len(item.values)} seeds",
                     ", ".join(f"{v:+.3f} (seed {s})" for s, v in zip(item.seeds, item.values))])
    return md_table(["Method", "Minus", "Δ of", "Mean ± sd", "Same sign", "Per seed"], rows)


def _unfinished(grid: Grid, pages: set[str]) -> list[MyST]:
    """Each cell without a complete run: what it is, its error, its run page and where its logs are."""
    out = []
    for c in grid.cells:
        if c.status == "complete":
            continue
        role = ", extractor" if c.role != "cell" else ""
        line = f"{escape_text(c.key)} ({escape_text(c.method)}, seed {c.seed}, {escape_text(c.dataset)}{role}): " \
               f"**{escape_text(c.status or 'not collected')}**"
        if c.error:
            line += f": {escape_text(c.error)}"
        if c.run_id:
            line += f"; run {_linked(c.run_id, c.run_id, pages)}"
        if c.logs:
            line += "; log: " + ", ".join(escape_text(log) for log in c.logs)
        out.append(MyST(line))
    return out


def _summary(grid: Grid) -> MyST:
    datasets = list(dict.fromkeys(c.dataset for c in grid.cells))
    done = sum(c.status == "complete" for c in grid.cells)
    extractors = sum(c.role != "cell" for c in grid.cells)
    parts = [f"Profile {grid.profile}" + (f" with {' '.join(grid.overrides)}" if grid.overrides else ""),
             f"{len(grid.methods)} method(s) x {len(grid.seeds)} seed(s) "
             f"({', '.join(map(str, grid.seeds))}) x {len(datasets)} dataset(s)",
             f"{done} of {len(grid.cells)} cells complete"
             + (f" ({extractors} of them extractor cells, not in the table)" if extractors else ""),
             f"created {grid.created[:16].replace('T', ' ') or '?'}"]
    if grid.collected:
        parts.append(f"collected {grid.collected[:16].replace('T', ' ')}")
    return escape_text("; ".join(parts) + ".")


def grid_sections(grids: list[Grid], pages: set[str]) -> list[dict[str, Any]]:
    """The index's context of each grid; ``pages`` are the run ids whose pages were rendered."""
    out = []
    for grid in grids:
        datasets = list(dict.fromkeys([*(c.dataset for c in grid.cells if c.role == "cell"),
                                       *(d for d, _ in grid.table)]))
        parts = []
        for dataset in datasets if grid.collected else []:
            paired = [p for d, p in grid.paired if d == dataset]
            parts.append({"dataset": escape_text(dataset), "table": _method_table(grid, dataset, pages),
                          "paired": _paired_table(paired) if paired else None})
        out.append({"id": escape_text(grid.grid_id), "summary": _summary(grid), "collected": bool(grid.collected),
                    "datasets": parts, "warnings": [escape_text(w) for w in grid.warnings],
                    "unfinished": _unfinished(grid, pages) if grid.collected else []})
    return out
