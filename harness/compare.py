"""``python -m harness compare RUN_A RUN_B``: the comparison of two runs, as a results file.

Deltas are only meaningful on the same test images, so the file says whether the two runs share
their split hash. On the same split each method of both runs is paired image by image
(:func:`harness.metrics.paired.paired_runs`: B - A with a CI from the same subject resamples and
a subject permutation p-value, its test named in the note); on different splits the file says
why it cannot be. Beside that, every metric both runs report with its B - A delta and whether
the two 95% CIs overlap (only a rough guide: non-overlap implies a difference, overlap does not
imply sameness).

The harness computes and writes the comparison (``<runs>/compares/<A>-vs-<B>.json``, see
docs/results-schema.md); the report only renders it, so the report site needs no statistics.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.metric_info import infos_to_document, merge_infos
from harness.metrics.paired import PairedRuns, paired_runs
from harness.results import FLOOR_METHODS, SCHEMA_VERSION, RunData, RunReadError, atomic_write_json, read_run

__all__ = ["COMPARABLE", "COMPARES_DIR", "compare_runs", "comparison", "resolve_run", "usable_rows"]

COMPARABLE = ("complete", "failed")  # a "failed" run's completed methods have results
COMPARES_DIR = "compares"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def resolve_run(name: str, runs_dir: Path) -> Path:
    """A run id inside ``runs_dir`` or a path to a run folder."""
    for candidate in (runs_dir / name, Path(name)):
        if (candidate / "run.json").is_file():
            return candidate
    raise FileNotFoundError(f"no run {name!r}: neither {runs_dir / name} nor {name} holds a run.json")


def _load(name: str, runs_dir: Path) -> RunData:
    try:
        data = read_run(resolve_run(name, runs_dir))
    except RunReadError as exc:
        raise ValueError(f"run {name!r}: {exc}") from exc
    if data.status not in COMPARABLE:
        raise ValueError(f"run {data.run_id!r} is {data.status}: it has no results to compare yet")
    return data


def usable_rows(data: RunData) -> list[dict[str, Any]]:
    """Test-split rows of methods that completed (a failed method's rows are not results), and
    not the within-run paired rows (one per other method: they are not a run-vs-run quantity)."""
    done = {m for m, info in data.methods.items() if isinstance(info, dict) and info.get("status") == "complete"}
    done.update(FLOOR_METHODS)
    return [r for r in data.metrics if (r.get("split") or "test") == "test" and not r.get("other")
            and (not data.methods or r["method"] in done)]


def _get(run: dict[str, Any], *path: str) -> Any:
    """A nested run.json value, None where any level is missing."""
    value: Any = run
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _identity(data: RunData) -> dict[str, Any]:
    run = data.run
    return {"run_id": data.run_id, "path": str(data.path.resolve()), "status": data.status,
            "harness_version": run.get("harness_version"), "git_commit": run.get("git_commit"),
            "created": run.get("created"), "profile": run.get("profile"), "seed": run.get("seed"),
            "device": run.get("device"), "dataset": _get(run, "dataset", "name"),
            "dataset_fingerprint": _get(run, "dataset", "fingerprint"), "split_hash": _get(run, "split", "hash"),
            "bootstrap_unit": _get(run, "dataset", "bootstrap_unit")}


def _key(row: dict[str, Any]) -> tuple[str, str, str, str | None]:
    return str(row["method"]), str(row.get("domain") or "all"), str(row["metric"]), row.get("feature_space")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    if not a or not b or not all(_is_number(r.get(k)) for r in (a, b) for k in ("ci_low", "ci_high")):
        return None
    return bool(a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"])


def _metric_rows(a: RunData, b: RunData) -> list[dict[str, Any]]:
    """One entry per (method, domain, metric, feature space) either run reports: by method, then
    in the order the runs' metrics.json lists the metrics (so no list of metric names here)."""
    rows_a = {_key(r): r for r in usable_rows(a)}
    rows_b = {_key(r): r for r in usable_rows(b)}
    rank: dict[str, int] = {}
    for key in [*rows_a, *rows_b]:
        rank.setdefault(key[2], len(rank))
    keys = sorted(set(rows_a) | set(rows_b), key=lambda k: (k[0], rank[k[2]], k[1], str(k[3])))
    out = []
    for key in keys:
        ra, rb = rows_a.get(key), rows_b.get(key)
        va, vb = (ra or {}).get("value"), (rb or {}).get("value")
        method, domain, metric, space = key
        out.append({"method": method, "domain": domain, "metric": metric, "feature_space": space, "a": ra, "b": rb,
                    "delta": vb - va if _is_number(va) and _is_number(vb) else None,
                    "ci_overlap": _overlap(ra, rb)})
    return out


def comparison(a: RunData, b: RunData, paired: PairedRuns) -> dict[str, Any]:
    """The comparison file's content (docs/results-schema.md, "compares/")."""
    ia, ib = _identity(a), _identity(b)
    return {
        "schema_version": SCHEMA_VERSION, "a": ia, "b": ib,
        "same_split": ia["split_hash"] is not None and ia["split_hash"] == ib["split_hash"],
        "same_ci_unit": ia["bootstrap_unit"] == ib["bootstrap_unit"],
        "metrics": infos_to_document(merge_infos(a.infos, b.infos).values()),  # how to show each metric id
        "rows": _metric_rows(a, b),
        "paired": {"reason": paired.reason,
                   "methods": {m: [asdict(d) for d in deltas] for m, deltas in paired.deltas.items()}},
    }


def compare_runs(run_a: str, run_b: str, runs_dir: Path) -> Path:
    """Compare two runs (ids inside ``runs_dir`` or paths) and write the comparison file
    ``runs_dir/compares/<A>-vs-<B>.json``; returns its path."""
    a, b = _load(run_a, runs_dir), _load(run_b, runs_dir)
    name = "-vs-".join(_UNSAFE.sub("_", d.run_id) for d in (a, b))
    path = runs_dir / COMPARES_DIR / f"{name}.json"
    atomic_write_json(path, comparison(a, b, paired_runs(a.path, b.path)))
    print(f"compare: wrote {path}")
    return path
