"""``python -m harness compare RUN_A RUN_B``: a page of metric deltas (B - A) between two runs.

Deltas are only meaningful on the same test images, so the page says first whether the two runs
share their dataset fingerprint and split hash. On the same split each method of both runs is
paired image by image (:func:`harness.metrics.paired.paired_runs`: a CI and p-value for B - A from
the same subject resamples); on different splits the page says why it cannot be. Whether the 95%
CIs overlap is only a rough guide (non-overlap implies a difference; overlap does not imply sameness).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.metrics.paired import PairedRuns, paired_runs
from harness.results import FLOOR_METHOD
from reports.escape import MyST, escape_text, slug
from reports.reader import RunData, RunReadError, read_run
from reports.render import environment, render_all, write_if_changed
from reports.run_page import SHOWS_RESULTS
from reports.tables import (DETECTION, GENERATIVE, PIXEL, MetricIndex, fmt, fmt_metric, is_number, md_table,
                            short_hash)

__all__ = ["compare_command", "compare_page"]

_ORDER = [m for m, _ in DETECTION] + ["ap_chance"] + [m for m, _ in PIXEL] + GENERATIVE


def _resolve(name: str, runs_dir: Path) -> Path:
    """A run id inside ``runs_dir`` or a path to a run folder."""
    for candidate in (runs_dir / name, Path(name)):
        if (candidate / "run.json").is_file():
            return candidate
    raise FileNotFoundError(f"no run {name!r}: neither {runs_dir / name} nor {name} holds a run.json")


def _load(name: str, runs_dir: Path) -> RunData:
    path = _resolve(name, runs_dir)
    try:
        data = read_run(path)
    except RunReadError as exc:
        raise ValueError(f"run {name!r}: {exc}") from exc
    if data.status not in SHOWS_RESULTS:
        raise ValueError(f"run {data.run_id!r} is {data.status}: it has no results to compare yet")
    return data


def _usable_rows(data: RunData) -> list[dict[str, Any]]:
    """Test-split rows of methods that completed (a failed method's rows are not results), and
    not the within-run paired rows (one per other method: they are not a run-vs-run quantity)."""
    done = {m for m, info in data.methods.items() if isinstance(info, dict) and info.get("status") == "complete"}
    done.add(FLOOR_METHOD)
    return [r for r in data.metrics if (r.get("split") or "test") == "test" and not r.get("other")
            and (not data.methods or r["method"] in done)]


def _overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str | None:
    if not a or not b or not all(is_number(r.get(k)) for r in (a, b) for k in ("ci_low", "ci_high")):
        return None
    return "yes" if a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"] else "no"


def _metrics_table(a: RunData, b: RunData) -> MyST | None:
    index_a, index_b = MetricIndex(_usable_rows(a)), MetricIndex(_usable_rows(b))
    keys = set(index_a.rows) | set(index_b.rows)
    order = {m: i for i, m in enumerate(_ORDER)}
    keys_sorted = sorted(keys, key=lambda k: (k[0], order.get(k[3], len(order)), k[3], k[2], str(k[4])))
    rows = []
    for key in keys_sorted:
        method, _, domain, metric, space = key
        ra, rb = index_a.rows.get(key), index_b.rows.get(key)
        va, vb = (ra or {}).get("value"), (rb or {}).get("value")
        delta = fmt(vb - va, 4) if is_number(va) and is_number(vb) else None
        rows.append([method, None if domain == "all" else domain, space, metric,
                     fmt_metric(metric, ra), fmt_metric(metric, rb), delta, _overlap(ra, rb)])
    if not rows:
        return None
    return md_table(["Method", "Domain", "Features", "Metric", "A", "B", "Δ (B − A)", "95% CIs overlap"], rows)


def _p_value(p: float | None) -> MyST | None:
    if p is None:
        return None
    return MyST("< 0.001") if p < 0.001 else fmt(p, 3)


def _paired_table(paired: PairedRuns) -> MyST | None:
    rows = []
    for method, deltas in paired.deltas.items():
        for d in deltas:
            ci = f" [{fmt(d.ci_low, 4)}, {fmt(d.ci_high, 4)}]" if is_number(d.ci_low) and is_number(d.ci_high) else ""
            rows.append([method, d.metric.upper(), fmt(d.a), fmt(d.b),
                         MyST(f"{fmt(d.delta, 4)}{ci}") if is_number(d.delta) else d.note, _p_value(d.p_value), d.n])
    if not rows:
        return None
    return md_table(["Method", "Metric", "A", "B", "Δ (B − A) [95% CI]", "p", "Test images"], rows)


def _get(data: RunData, *path: str) -> Any:
    """A nested run.json value, None where any level is missing."""
    value: Any = data.run
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _identity(a: RunData, b: RunData) -> MyST:
    fields = [("Run", ("run_id",)), ("Status", ("status",)), ("Harness version", ("harness_version",)),
              ("Git commit", ("git_commit",)), ("Created", ("created",)), ("Profile", ("profile",)),
              ("Seed", ("seed",)), ("Device", ("device",)), ("Dataset", ("dataset", "name")),
              ("Dataset fingerprint", ("dataset", "fingerprint")), ("Split hash", ("split", "hash")),
              ("CIs resample", ("dataset", "bootstrap_unit"))]
    rows = []
    for title, path in fields:
        va, vb = _get(a, *path), _get(b, *path)
        rows.append([MyST(f"**{title}**"), short_hash(va), short_hash(vb),  # 64-hex values: full on hover
                     "same" if va == vb else "differs"])
    return md_table(["", "A", "B", ""], rows)


def compare_page(a: RunData, b: RunData, linked: tuple[bool, bool], paired: PairedRuns | None = None) -> str:
    """The compare page's text; ``linked`` says which runs have a page in the report to link to;
    ``paired`` holds the methods paired on the shared test images (or why they cannot be)."""
    def title(data: RunData, link: bool) -> MyST:
        name = escape_text(data.run_id)
        return MyST(f"[{name}]({slug(data.run_id)}.md)") if link else name

    same_split = (all(isinstance(_get(d, "split"), dict) for d in (a, b))
                  and _get(a, "split", "hash") == _get(b, "split", "hash"))
    return environment().get_template("compare.md.j2").render(
        a=escape_text(a.run_id), b=escape_text(b.run_id), a_title=title(a, linked[0]), b_title=title(b, linked[1]),
        identity=_identity(a, b), table=_metrics_table(a, b), same_split=same_split,
        paired_table=_paired_table(paired) if paired else None,
        paired_reason=escape_text(paired.reason) if paired and paired.reason else None,
        same_ci_unit=_get(a, "dataset", "bootstrap_unit") == _get(b, "dataset", "bootstrap_unit"),
        failed=[escape_text(d.run_id) for d in (a, b) if d.status != "complete"])


def compare_command(args: argparse.Namespace) -> int:
    runs_dir, out = Path(args.runs), Path(args.out)
    a, b = _load(args.run_a, runs_dir), _load(args.run_b, runs_dir)
    inside = tuple(d.path.resolve().parent == runs_dir.resolve() for d in (a, b))
    page = out / f"compare-{slug(a.run_id)}-vs-{slug(b.run_id)}.md"
    write_if_changed(page, compare_page(a, b, inside, paired_runs(a.path, b.path)))  # before the index, which lists it
    render_all(runs_dir, out)
    print(f"compare: wrote {page}")
    return 0
