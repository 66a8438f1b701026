"""Grids (``runs/grids/<grid_id>/grid.json``, written by ``python -m harness grid``) on the index.

Why: a grid's cells are ordinary runs, each with its own page, but a grid is read as one result:
each method's summarised metrics over the seeds (AUROC, AP and the others the cells' metric infos
mark summarised), the paired differences between methods, and which cells did not finish. A
grid.json is read defensively (it may be half-written, hand-edited or from a newer harness): one
that does not have the shape harness/grid.py writes becomes a notice on the index, never a failed
report. Mean ± sd, sign agreement and the split and training SDs are recomputed from the
per-seed values with :mod:`harness.seed_summary`, so they read exactly as the *Across seeds*
tables and the CLI; the across-seed tests and the floor-to-ceiling shares (scipy, on the harness
side: :mod:`harness.seed_inference`) are shown as grid.json holds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.metric_info import MetricInfo, infos_from_document, summarised_infos
from harness.results import FLOOR_METHODS
from harness.seed_summary import PairedSpread, SeedSpread, format_spread
from reports.escape import MyST, escape_text, slug
from reports.run_page import method_label
from reports.tables import DASH, fmt, info_of, md_table

__all__ = ["Grid", "GridCell", "GridReadError", "PairTest", "Share", "grid_sections", "parse_grid", "read_grids"]

SCHEMA_VERSION = 1
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
    train_seed: int | None  # one of ``--train-seeds``; None: the seed's ordinary run
    run_id: str | None
    status: str | None  # None: not collected yet
    error: str | None
    logs: tuple[str, ...]  # the run's log.txt, then submitit's job log


@dataclass(frozen=True)
class PairTest:
    """A pair's tests across seeds as grid.json holds them (an older grid.json has none)."""

    n: int
    wilcoxon_p: float | None
    wilcoxon_p_holm: float | None
    t_p: float | None
    floor_note: str | None
    note: str | None


@dataclass(frozen=True)
class Share:
    """A method's share of the floor-to-ceiling gap: mean over ``n`` seeds and its CI;
    ``excluded``: the seeds left out because the ceiling did not beat the floor there."""

    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int
    excluded: int


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
    paired: tuple[tuple[str, PairedSpread, PairTest | None], ...]
    warnings: tuple[str, ...]
    infos: dict[str, MetricInfo]  # the cells' metric infos (the schema-1 built-ins for an older grid.json)
    shares: dict[tuple[str, str, str], Share]  # (dataset, method, metric) -> its share of the gap
    gap: tuple[str, str, float] | None  # the gap's floor and ceiling methods and the CI level


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
                    role=_get(item, "role", str, where, "cell"), train_seed=_get(item, "train_seed", int, where, None),
                    run_id=_get(item, "run_id", str, where, None),
                    status=_get(item, "status", str, where, None), error=_get(item, "error", str, where, None),
                    logs=tuple(log for log in logs if log))


def _spread(item: dict[str, Any], where: str) -> tuple[str, SeedSpread]:
    """A table entry -> (dataset, the method's values of one metric over the seeds, and each
    seed's trainings when grid.json has them)."""
    seeds, values = _list(item, "seeds", int, where), _list(item, "values", (int, float), where)
    if len(seeds) != len(values) or not seeds:
        raise GridReadError(f"{where}seeds and values differ in length or are empty")
    trainings = _list(item, "trainings", list, where, [])
    for k, runs in enumerate(trainings):
        if not runs or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in runs):
            raise GridReadError(f"{where}trainings[{k}] is {repr(runs)[:40]}")
    if trainings and len(trainings) != len(seeds):
        raise GridReadError(f"{where}trainings and seeds differ in length")
    return _get(item, "dataset", str, where), SeedSpread(_get(item, "method", str, where),
                                                         _get(item, "metric", str, where), tuple(seeds),
                                                         tuple(map(float, values)),
                                                         trainings=tuple(tuple(map(float, t)) for t in trainings))


def _p(item: dict[str, Any], key: str, where: str) -> float | None:
    return _get(item, key, (int, float), where, None)


def _paired(item: dict[str, Any], where: str) -> tuple[str, PairedSpread, PairTest | None]:
    """A paired entry -> (dataset, ``method`` - ``other`` over the seeds, its tests across seeds)."""
    dataset, s = _spread(item, where)
    pair = PairedSpread(s.method, s.metric, s.seeds, s.values, other=_get(item, "other", str, where),
                        exploratory=bool(item.get("exploratory")))
    test = None if item.get("n") is None else PairTest(
        n=_get(item, "n", int, where), wilcoxon_p=_p(item, "wilcoxon_p", where),
        wilcoxon_p_holm=_p(item, "wilcoxon_p_holm", where), t_p=_p(item, "t_p", where),
        floor_note=_get(item, "floor_note", str, where, None), note=_get(item, "note", str, where, None))
    return dataset, pair, test


def _shares(doc: dict[str, Any]) -> dict[tuple[str, str, str], Share]:
    """The table entries' ``share`` of the floor-to-ceiling gap (none in an older grid.json)."""
    out = {}
    for where, item in _dicts(doc, "table"):
        share = _get(item, "share", dict, where, None)
        if share is not None:
            key = (_get(item, "dataset", str, where), _get(item, "method", str, where), _get(item, "metric", str, where))
            out[key] = Share(mean=float(_get(share, "mean", (int, float), f"{where}share.")),
                             ci_low=_p(share, "ci_low", f"{where}share."), ci_high=_p(share, "ci_high", f"{where}share."),
                             n=len(_list(share, "values", (int, float), f"{where}share.")),
                             excluded=len(_list(share, "excluded", int, f"{where}share.", [])))
    return out


def _gap(doc: dict[str, Any]) -> tuple[str, str, float] | None:
    gap = _get(doc, "gap", dict, "", None)
    if gap is None:
        return None
    return (_get(gap, "floor", str, "gap."), _get(gap, "ceiling", str, "gap."),
            float(_get(gap, "ci", (int, float), "gap.")))


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
                warnings=tuple(_list(doc, "warnings", str, "", [])), infos=infos_from_document(doc),
                shares=_shares(doc), gap=_gap(doc))


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


def _seed_cell(values: dict[str, float], metrics: list[MetricInfo], cell: GridCell | None, pages: set[str]) -> MyST:
    """One (method, seed): e.g. ``AUROC / AP`` linked to the cell's page; its status when it has no values."""
    if values:
        text = " / ".join(fmt(values.get(m.id), m.digits) for m in metrics)
    elif cell is not None:
        text = cell.status or "not collected"
    else:
        return DASH
    return _linked(text, cell.run_id if cell else None, pages)


def _share_text(share: Share | None) -> MyST:
    """``mean [low, high] (n=seeds, k without a gap)``, as the CLI prints it."""
    if share is None:
        return DASH
    ci = "" if share.ci_low is None or share.ci_high is None else f" [{share.ci_low:.2f}, {share.ci_high:.2f}]"
    left_out = f", {share.excluded} without a gap" if share.excluded else ""
    return escape_text(f"{share.mean:.2f}{ci} (n={share.n}{left_out})")


def _spread_text(spread: SeedSpread | None, digits: int) -> MyST:
    """``mean ± sd (min-max)``, then ``split / train sd`` where a seed was trained more than once."""
    if spread is None:
        return DASH
    text = format_spread(spread, digits)
    if spread.train_sd is not None:
        text += f"; split / train sd {spread.split_sd:.{digits}f} / {spread.train_sd:.{digits}f}"
    return escape_text(text)


def _method_table(grid: Grid, dataset: str, pages: set[str]) -> MyST:
    """Methods (rows) x {each summarised metric over the seeds (with split and training noise
    when a seed was trained more than once), the share of the floor-to-ceiling gap, then each
    seed's values (the mean of its trainings), linked to the seed's ordinary run}."""
    spreads = {(s.method, s.metric): s for d, s in grid.table if d == dataset}
    metrics = [i for i in summarised_infos(grid.infos) if any(m == i.id for _, m in spreads)]
    shared = [m for m in metrics if any(k[0] == dataset and k[2] == m.id for k in grid.shares)]
    cells = {(c.method, c.seed): c for c in grid.cells
             if c.dataset == dataset and c.role == "cell" and c.train_seed is None}
    names = list(dict.fromkeys([*grid.methods, *(m for m, _ in spreads)]))
    names = [n for n in names if n not in FLOOR_METHODS] + [n for n in FLOOR_METHODS if n in names]
    rows = []
    for name in names:
        row: list[Any] = [method_label(name)]
        row += [_spread_text(spreads.get((name, m.id)), m.digits) for m in metrics]
        row += [_share_text(grid.shares.get((dataset, name, m.id))) for m in shared]
        for seed in grid.seeds:
            values = {m.id: dict(zip(spreads[name, m.id].seeds, spreads[name, m.id].values)).get(seed)
                      for m in metrics if (name, m.id) in spreads}
            row.append(_seed_cell({m: v for m, v in values.items() if v is not None}, metrics,
                                  cells.get((name, seed)), pages))
        rows.append(row)
    floor, ceiling, ci = grid.gap or ("floor", "ceiling", 0.95)
    header = ["Method", *(f"{m.title} mean ± sd (min-max)" for m in metrics),
              *(f"{m.title} share of the {floor} → {ceiling} gap [{ci:.0%} CI]" for m in shared),
              *(f"Seed {s}" for s in grid.seeds)]
    return md_table(header, rows)


def _p_text(value: float | None) -> str:
    return "—" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def _paired_table(items: list[tuple[PairedSpread, PairTest | None]], infos: dict[str, MetricInfo]) -> MyST:
    """Method minus other, per paired metric: mean ± sd over seeds, on how many the sign holds, and
    the tests across seeds (Wilcoxon signed-rank with its Holm adjustment, one-sample t)."""
    rows = []
    for item, test in items:
        sd = "" if item.sd is None else f" ± {item.sd:.3f}"
        compared = info_of(infos, item.metric).paired_of or item.metric
        tests = [DASH] * 4 if test is None else [str(test.n), _p_text(test.wilcoxon_p), _p_text(test.wilcoxon_p_holm),
                                                 _p_text(test.t_p)]
        rows.append([method_label(item.method), method_label(item.other), info_of(infos, compared).title,
                     f"{item.mean:+.3f}{sd}", f"{item.agree}/{len(item.values)} seeds", *tests,
                     ", ".join(f"{v:+.3f} (seed {s})" for s, v in zip(item.seeds, item.values))])
    return md_table(["Method", "Minus", "Δ of", "Mean ± sd", "Same sign", "Seeds", "Wilcoxon p", "Holm p", "t p",
                     "Per seed"], rows)


def _test_notes(items: list[tuple[PairedSpread, PairTest | None]]) -> list[MyST]:
    """What limits the tests: the smallest p n seeds allow, then each pair's own notes."""
    floors = dict.fromkeys(t.floor_note for _, t in items if t is not None and t.floor_note)
    own = [f"{p.method} − {p.other}: {t.note}" for p, t in items if t is not None and t.note]
    return [escape_text(n) for n in [*floors, *own]]


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
            reference = [(p, t) for d, p, t in grid.paired if d == dataset and not p.exploratory]
            exploratory = [(p, t) for d, p, t in grid.paired if d == dataset and p.exploratory]
            parts.append({"dataset": escape_text(dataset), "table": _method_table(grid, dataset, pages),
                          "paired": _paired_table(reference, grid.infos) if reference else None,
                          "exploratory": _paired_table(exploratory, grid.infos) if exploratory else None,
                          "notes": _test_notes(reference + exploratory)})
        out.append({"id": escape_text(grid.grid_id), "summary": _summary(grid), "collected": bool(grid.collected),
                    "datasets": parts, "warnings": [escape_text(w) for w in grid.warnings],
                    "unfinished": _unfinished(grid, pages) if grid.collected else []})
    return out
