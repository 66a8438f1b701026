"""The spread of results across seeds: runs that differ only in their seed, summarised per method.

Why: with a few validation subjects, one seed's test AUROC moves by several points, and a
comparison between methods is only as good as that spread; so the harness reports mean, standard
deviation and range over seeds next to the single runs. Runs are grouped when everything but the
seed, the train seed (and the output folder) is equal: the resolved config, the harness version
and the commit.

A seed makes a split (and, for the embedded cohort, the data); a train seed (``--train-seeds``)
trains again on the same split. The split is the unit of every across-seed number: a method's
value per seed is the mean over that split's trainings, and the spread separates the two kinds
of noise (:attr:`SeedSpread.train_sd`, :attr:`SeedSpread.split_sd`), since on a dozen test
subjects training alone can move AUROC as much as the gaps between methods.

Which metrics are summarised, and which are paired differences, the runs say themselves: their
metric infos (:mod:`harness.metric_info`, metrics.json ``metrics``). Paired differences (e.g.
``auroc_delta``) are per seed the difference of the compared metric between two methods on the
same split, with the count of seeds on which it has the sign of its mean. Against the fixed
references (:data:`harness.results.PAIRED_REFERENCES`) a pair is always method minus reference, chosen before any
number is seen; the other pairs are exploratory. Whether a difference holds across seeds is
tested on the harness side (:mod:`harness.seed_inference`), not here: this module is also the
report's, which has no scipy.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from harness.metric_info import MetricInfo, paired_infos, summarised_infos
from harness.results import FLOOR_METHODS, PAIRED_REFERENCES

__all__ = ["CEILING", "FLOOR", "SeedSpread", "PairedSpread", "group_key", "seed_groups", "spread", "paired_spread",
           "format_spread", "train_seed_of"]

FLOOR, CEILING = "intensity", "resnet18"  # the two rows a method's share of the gap between them is read against


@dataclass(frozen=True)
class SeedSpread:
    """One method's metric over the seeds of a group; ``values`` in the order of ``seeds``, each
    the mean over that seed's ``trainings`` (its runs' values in train-seed order; empty when
    not recorded, as in an older grid.json: one training per seed)."""

    method: str
    metric: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    trainings: tuple[tuple[float, ...], ...] = field(default=(), kw_only=True)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation; None for a single seed."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def train_sd(self) -> float | None:
        """Training noise: the pooled SD of the trainings around their split's mean (same data,
        other initialisation and data order); None when no split was trained twice."""
        df = sum(len(t) - 1 for t in self.trainings)
        if df == 0:
            return None
        return math.sqrt(sum((v - statistics.fmean(t)) ** 2 for t in self.trainings for v in t) / df)

    @property
    def split_sd(self) -> float | None:
        """Split noise: the SD between the seeds' means less the training noise those means still
        carry (``sd² - train_sd² · mean(1/trainings)``, floored at 0; the method of moments); 0
        when every run shares one split; None without :attr:`train_sd` (``sd`` then holds both)."""
        train = self.train_sd
        if train is None:
            return None
        if self.sd is None:
            return 0.0
        carried = train ** 2 * statistics.fmean(1 / len(t) for t in self.trainings)
        return math.sqrt(max(0.0, self.sd ** 2 - carried))


@dataclass(frozen=True)
class PairedSpread(SeedSpread):
    """A paired difference ``method`` - ``other`` over the seeds of a group; ``exploratory``
    unless ``other`` is the fixed reference of the pair (:data:`harness.results.PAIRED_REFERENCES`)."""

    other: str
    exploratory: bool = field(default=False, kw_only=True)

    @property
    def agree(self) -> int:
        """Seeds whose difference has the sign of the mean (none when the mean is 0)."""
        sign = (self.mean > 0) - (self.mean < 0)
        return sum(1 for v in self.values if sign and (v > 0) - (v < 0) == sign)


def group_key(run: dict[str, Any]) -> str:
    """Runs with the same key differ only in seed, train seed (and output folder)."""
    config = dict(run.get("config") or {})
    for key in ("seed", "train_seed", "output"):
        config.pop(key, None)
    blob = json.dumps([config, run.get("harness_version"), run.get("git_commit")], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def train_seed_of(run: dict[str, Any]) -> int:
    """The seed the run's training started from: its config's ``train_seed``, else its seed."""
    value = (run.get("config") or {}).get("train_seed")
    return value if isinstance(value, int) else run["seed"]


def seed_groups(runs: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]],
                ) -> dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """Complete runs (run.json, metrics rows) by :func:`group_key`, keeping groups of two or more
    distinct (seed, train seed); within a group the latest run of each counts, in ascending order."""
    latest: dict[str, dict[tuple[int, int], tuple[dict[str, Any], list[dict[str, Any]]]]] = {}
    for run, rows in runs:
        if run.get("status") != "complete" or not isinstance(run.get("seed"), int):
            continue
        per_run = latest.setdefault(group_key(run), {})
        key = (run["seed"], train_seed_of(run))
        current = per_run.get(key)
        if current is None or str(run.get("created") or "") >= str(current[0].get("created") or ""):
            per_run[key] = (run, rows)
    return {key: [per_run[k] for k in sorted(per_run)] for key, per_run in latest.items() if len(per_run) > 1}


def _values(group: list[tuple[dict[str, Any], list[dict[str, Any]]]], metrics: Iterable[str],
            ) -> dict[tuple[str, str], dict[int, list[float]]]:
    """(method, metric) -> seed -> the overall test values of its trainings, in train-seed order."""
    wanted = set(metrics)
    found: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run, rows in sorted(group, key=lambda item: (item[0]["seed"], train_seed_of(item[0]))):
        for row in rows:
            if (row.get("split") or "test") != "test" or (row.get("domain") or "all") != "all":
                continue
            if row.get("metric") in wanted and isinstance(row.get("value"), (int, float)):
                found.setdefault((row["method"], row["metric"]), {}).setdefault(run["seed"], []).append(
                    float(row["value"]))
    return found


def spread(group: list[tuple[dict[str, Any], list[dict[str, Any]]]],
           infos: Mapping[str, MetricInfo]) -> list[SeedSpread]:
    """Per method and summarised metric of ``infos`` (overall test rows), the values over the
    group's seeds (each the mean over the seed's trainings), in the infos' order. A method missing
    a value in some seed is summarised over the seeds that have one."""
    metrics = tuple(i.id for i in summarised_infos(infos))
    found = _values(group, metrics)
    out = []
    for (method, metric), per_seed in sorted(found.items(), key=lambda kv: (kv[0][0], metrics.index(kv[0][1]))):
        seeds = tuple(sorted(per_seed))
        out.append(SeedSpread(method, metric, seeds, tuple(statistics.fmean(per_seed[s]) for s in seeds),
                              trainings=tuple(tuple(per_seed[s]) for s in seeds)))
    return out


def paired_spread(group: list[tuple[dict[str, Any], list[dict[str, Any]]]],
                  infos: Mapping[str, MetricInfo]) -> list[PairedSpread]:
    """Per pair of methods and paired metric of ``infos`` (e.g. ``auroc_delta``), the per-seed
    differences of the metric it compares (``paired_of``; each seed's mean over its trainings) on
    the seeds both methods have: the same split, so the same test images. A pair with a reference
    is the method minus the reference (of two references, the intensity floor minus the shortcut
    floor); the other pairs, exploratory, put the winner first (its mean >= 0, or <= 0 for a
    metric where lower is better). The two shortcut floors are never paired with each other:
    neither is a method. References first, then the exploratory pairs."""
    paired = paired_infos(infos)
    found = _values(group, {i.paired_of for i in paired})
    rank = {name: k for k, name in enumerate(PAIRED_REFERENCES)}
    out = []
    for info in paired:
        better = -1.0 if info.higher_is_better is False else 1.0
        methods = sorted(m for m, metric in found if metric == info.paired_of)
        for a, b in combinations(methods, 2):
            if a in FLOOR_METHODS and b in FLOOR_METHODS:
                continue
            va, vb = found[a, info.paired_of], found[b, info.paired_of]
            seeds = tuple(s for s in sorted(va) if s in vb)
            if not seeds:
                continue
            diffs = tuple(statistics.fmean(va[s]) - statistics.fmean(vb[s]) for s in seeds)
            reference = max(rank.get(a, -1), rank.get(b, -1)) >= 0
            keep = rank.get(b, -1) > rank.get(a, -1) if reference else better * statistics.fmean(diffs) >= 0
            method, other = (a, b) if keep else (b, a)
            out.append(PairedSpread(method, info.id, seeds, diffs if keep else tuple(-d for d in diffs), other,
                                    exploratory=not reference))
    order = [i.id for i in paired]
    return sorted(out, key=lambda i: (i.exploratory, rank.get(i.other, len(rank)), i.method, i.other,
                                      order.index(i.metric)))


def format_spread(item: SeedSpread, digits: int = 3) -> str:
    """``mean ± sd (min-max)``, or the single value."""
    if item.sd is None:
        return f"{item.mean:.{digits}f}"
    return f"{item.mean:.{digits}f} ± {item.sd:.{digits}f} ({min(item.values):.{digits}f}-{max(item.values):.{digits}f})"
