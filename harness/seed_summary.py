"""The spread of results across seeds: runs that differ only in their seed, summarised per method.

Why: with a few validation subjects, one seed's test AUROC moves by several points, and a
comparison between methods is only as good as that spread; so the harness reports mean, standard
deviation and range over seeds next to the single runs. Runs are grouped when everything but the
seed (and the output folder) is equal: the resolved config, the harness version and the commit.

Paired differences (``auroc_delta``, ``ap_delta`` rows of :mod:`harness.metrics.paired`) get the
same treatment plus the count of seeds on which the difference has the sign of its mean: "A beats
B by 0.05 ± 0.03, on 5 of 5 seeds" is a finding; "on 3 of 5" is not, whatever one seed's p says.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SeedSpread", "PairedSpread", "group_key", "seed_groups", "spread", "paired_spread", "format_spread",
           "format_paired", "paired_table"]

SUMMARY_METRICS = ("auroc", "ap", "pixel_auroc", "dice")  # dice: at the validation-fixed threshold
PAIRED_METRICS = ("auroc_delta", "ap_delta")


@dataclass(frozen=True)
class SeedSpread:
    """One method's metric over the seeds of a group; ``values`` in the order of ``seeds``."""

    method: str
    metric: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation; None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class PairedSpread(SeedSpread):
    """A paired difference ``method`` - ``other`` over the seeds of a group."""

    other: str

    @property
    def agree(self) -> int:
        """Seeds whose difference has the sign of the mean (none when the mean is 0)."""
        sign = (self.mean > 0) - (self.mean < 0)
        return sum(1 for v in self.values if sign and (v > 0) - (v < 0) == sign)


def group_key(run: dict[str, Any]) -> str:
    """Runs with the same key differ only in seed (and output folder)."""
    config = dict(run.get("config") or {})
    config.pop("seed", None)
    config.pop("output", None)
    blob = json.dumps([config, run.get("harness_version"), run.get("git_commit")], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def seed_groups(runs: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]],
                ) -> dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """Complete runs (run.json, metrics rows) by :func:`group_key`, keeping groups of two or more
    distinct seeds; within a group the latest run of each seed counts, seeds in ascending order."""
    latest: dict[str, dict[int, tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for run, rows in runs:
        if run.get("status") != "complete" or not isinstance(run.get("seed"), int):
            continue
        per_seed = latest.setdefault(group_key(run), {})
        current = per_seed.get(run["seed"])
        if current is None or str(run.get("created") or "") >= str(current[0].get("created") or ""):
            per_seed[run["seed"]] = (run, rows)
    return {key: [per_seed[s] for s in sorted(per_seed)] for key, per_seed in latest.items() if len(per_seed) > 1}


def spread(group: list[tuple[dict[str, Any], list[dict[str, Any]]]],
           metrics: tuple[str, ...] = SUMMARY_METRICS) -> list[SeedSpread]:
    """Per method and metric (overall test rows), the values over the group's seeds. A method
    missing a value in some seed is summarised over the seeds that have one."""
    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for run, rows in group:
        for row in rows:
            if (row.get("split") or "test") != "test" or (row.get("domain") or "all") != "all":
                continue
            if row.get("metric") in metrics and isinstance(row.get("value"), (int, float)):
                found.setdefault((row["method"], row["metric"]), []).append((run["seed"], float(row["value"])))
    out = []
    for (method, metric), pairs in sorted(found.items(), key=lambda kv: (kv[0][0], metrics.index(kv[0][1]))):
        pairs.sort()
        out.append(SeedSpread(method, metric, tuple(s for s, _ in pairs), tuple(v for _, v in pairs)))
    return out


def paired_spread(group: list[tuple[dict[str, Any], list[dict[str, Any]]]],
                  metrics: tuple[str, ...] = PAIRED_METRICS) -> list[PairedSpread]:
    """Per pair of methods and paired metric, the differences over the group's seeds, one entry
    per unordered pair, oriented so that its mean is >= 0 (the winner first)."""
    found: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    for run, rows in group:
        for row in rows:
            if (row.get("split") or "test") != "test" or (row.get("domain") or "all") != "all":
                continue
            if row.get("metric") in metrics and row.get("other") and isinstance(row.get("value"), (int, float)):
                found.setdefault((row["method"], row["other"], row["metric"]), []).append((run["seed"], float(row["value"])))
    out = []
    for (method, other, metric), pairs in found.items():
        pairs.sort()
        item = PairedSpread(method, metric, tuple(s for s, _ in pairs), tuple(v for _, v in pairs), other)
        mirror = (other, method, metric) in found
        if not mirror or item.mean > 0 or (item.mean == 0 and method < other):
            out.append(item)
    return sorted(out, key=lambda i: (i.method, i.other, metrics.index(i.metric)))


def format_paired(item: PairedSpread, digits: int = 3) -> str:
    """``+mean ± sd, same sign on k/n seeds``."""
    sd = "" if item.sd is None else f" ± {item.sd:.{digits}f}"
    return f"{item.mean:+.{digits}f}{sd}, same sign on {item.agree}/{len(item.values)} seeds"


def paired_table(items: list[PairedSpread]) -> str:
    """Plain-text table of the paired differences across seeds (for ``run --seeds``)."""
    if not items:
        return "paired differences across seeds: none (fewer than two methods completed)"
    lines = [["method", "minus", "metric", "seeds", "mean ± sd, sign agreement", "per seed"]]
    for item in items:
        lines.append([item.method, item.other, item.metric, ",".join(map(str, item.seeds)), format_paired(item),
                      " ".join(f"{v:+.3f}" for v in item.values)])
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(["paired differences across seeds (test split, same images per seed):", fmt.format(*lines[0]),
                      fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in lines[1:])])


def format_spread(item: SeedSpread, digits: int = 3) -> str:
    """``mean ± sd (min-max)``, or the single value."""
    if item.sd is None:
        return f"{item.mean:.{digits}f}"
    return f"{item.mean:.{digits}f} ± {item.sd:.{digits}f} ({min(item.values):.{digits}f}-{max(item.values):.{digits}f})"
