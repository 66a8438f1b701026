"""The compare page: renders a comparison file that ``python -m harness compare`` wrote
(:mod:`harness.compare`; ``<runs>/compares/<A>-vs-<B>.json``, see docs/results-schema.md).

Everything on the page was computed by the harness; this module only formats it, so it needs
no statistics library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.metric_info import MetricInfo, infos_from_document
from reports.escape import MyST, escape_text, slug
from reports.render import environment, render_all, write_if_changed
from reports.tables import fmt, fmt_metric, info_of, is_number, md_table, short_hash

__all__ = ["compare_page", "render_comparison"]

# (row title, key of a run's identity in the comparison file)
_IDENTITY = (("Run", "run_id"), ("Status", "status"), ("Harness version", "harness_version"),
             ("Git commit", "git_commit"), ("Created", "created"), ("Profile", "profile"), ("Seed", "seed"),
             ("Device", "device"), ("Dataset", "dataset"), ("Dataset fingerprint", "dataset_fingerprint"),
             ("Split hash", "split_hash"), ("CIs resample", "bootstrap_unit"))


def _metrics_table(rows: list[dict[str, Any]], infos: dict[str, MetricInfo]) -> MyST | None:
    cells = [[r["method"], None if r["domain"] == "all" else r["domain"], r["feature_space"], r["metric"],
              fmt_metric(r["a"], info_of(infos, r["metric"])), fmt_metric(r["b"], info_of(infos, r["metric"])),
              fmt(r["delta"], 4) if is_number(r["delta"]) else None,
              None if r["ci_overlap"] is None else ("yes" if r["ci_overlap"] else "no")] for r in rows]
    if not cells:
        return None
    return md_table(["Method", "Domain", "Features", "Metric", "A", "B", "Δ (B − A)", "95% CIs overlap"], cells)


def _p_value(p: float | None) -> MyST | None:
    if p is None:
        return None
    return MyST("< 0.001") if p < 0.001 else fmt(p, 3)


def _paired_table(methods: dict[str, list[dict[str, Any]]]) -> MyST | None:
    rows = []
    for method, deltas in methods.items():
        for d in deltas:
            ci = f" [{fmt(d['ci_low'], 4)}, {fmt(d['ci_high'], 4)}]" if is_number(d["ci_low"]) and is_number(d["ci_high"]) else ""
            rows.append([method, d["metric"].upper(), fmt(d["a"]), fmt(d["b"]),
                         MyST(f"{fmt(d['delta'], 4)}{ci}") if is_number(d["delta"]) else d["note"],
                         _p_value(d["p_value"]), d["n"]])
    if not rows:
        return None
    return md_table(["Method", "Metric", "A", "B", "Δ (B − A) [95% CI]", "p", "Test images"], rows)


def _identity(a: dict[str, Any], b: dict[str, Any]) -> MyST:
    rows = [[MyST(f"**{title}**"), short_hash(a.get(key)), short_hash(b.get(key)),  # 64-hex values: full on hover
             "same" if a.get(key) == b.get(key) else "differs"] for title, key in _IDENTITY]
    return md_table(["", "A", "B", ""], rows)


def compare_page(doc: dict[str, Any], linked: tuple[bool, bool]) -> str:
    """The compare page's text from a comparison file's content; ``linked`` says which runs have
    a page in the report to link to."""
    a, b = doc["a"], doc["b"]

    def title(run: dict[str, Any], link: bool) -> MyST:
        name = escape_text(run["run_id"])
        return MyST(f"[{name}]({slug(run['run_id'])}.md)") if link else name

    paired = doc["paired"]
    return environment().get_template("compare.md.j2").render(
        a=escape_text(a["run_id"]), b=escape_text(b["run_id"]), a_title=title(a, linked[0]),
        b_title=title(b, linked[1]), identity=_identity(a, b), table=_metrics_table(doc["rows"], infos_from_document(doc)),
        same_split=doc["same_split"], paired_table=_paired_table(paired["methods"]),
        paired_notes=[escape_text(n) for n in dict.fromkeys(d["note"] for deltas in paired["methods"].values()
                                                            for d in deltas if d["note"] and is_number(d["delta"]))],
        paired_reason=escape_text(paired["reason"]) if paired["reason"] else None,
        same_ci_unit=doc["same_ci_unit"],
        failed=[escape_text(run["run_id"]) for run in (a, b) if run["status"] != "complete"])


def render_comparison(path: Path, runs_dir: Path, out: Path) -> int:
    """Render the comparison file ``path`` into ``out`` as ``compare-<A>-vs-<B>.md``, then the
    index (which lists it); a run inside ``runs_dir`` is linked to its page."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    inside = tuple(Path(doc[k]["path"]).parent == Path(runs_dir).resolve() for k in ("a", "b"))
    page = out / f"compare-{slug(doc['a']['run_id'])}-vs-{slug(doc['b']['run_id'])}.md"
    write_if_changed(page, compare_page(doc, inside))  # before the index, which lists it
    render_all(runs_dir, out)
    print(f"compare: wrote {page}")
    return 0
