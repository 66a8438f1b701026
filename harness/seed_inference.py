"""Across-seed inference, the benchmark's primary one: per-seed paired differences tested over the
seeds, and each method's share of the gap between the intensity floor and the supervised ceiling.

Why the seed is the unit: one run's test split holds a dozen subjects, so its p-value speaks
about that split; whether one method beats another on this benchmark is a question about
splits, answered by the per-seed differences (:func:`harness.seed_summary.paired_spread`). Two
tests over them: Wilcoxon's signed-rank test (scipy: exact for small n, by enumeration when
differences tie) and a one-sample t-test (it can go lower than the rank test with few seeds but
leans on normality). A rank test over n seeds never gives a two-sided p below ``2 · 0.5^n``
(every seed on one side), so 5 seeds cannot reach 0.05 whatever the effect; each test states
that floor. Holm's adjustment runs over the pairs against the fixed references, per metric.

Why here and not in the report: the report has no scipy (``reports/`` renders what grid.json
holds); :func:`harness.grid.collect` writes these numbers there.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from harness.metric_info import MetricInfo, paired_infos
from harness.metrics.permutation import holm
from harness.seed_summary import CEILING, FLOOR, PairedSpread, SeedSpread

__all__ = ["ALPHA", "CEILING", "FLOOR", "GapShare", "SeedTest", "gap_shares", "seed_test", "seed_tests"]

ALPHA = 0.05
SHARE_CI = 0.95


@dataclass(frozen=True)
class SeedTest:
    """Paired tests over ``n`` seeds of one difference; ``min_p``: the smallest two-sided p a
    rank test can give with n seeds (``2 · 0.5^n``), and ``floor_note`` saying so when it is above
    :data:`ALPHA`; ``note``: what else limits this pair's tests; ``wilcoxon_p_holm``:
    Holm-adjusted over the pairs against the references (None for an exploratory pair)."""

    n: int
    wilcoxon_p: float | None
    t_p: float | None
    min_p: float
    floor_note: str | None
    note: str | None
    wilcoxon_p_holm: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class GapShare:
    """``(m - floor) / (ceiling - floor)`` per seed and its mean with a t-interval over seeds;
    ``excluded``: seeds left out because the ceiling did not beat the floor there (no gap)."""

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    mean: float
    ci_low: float | None
    ci_high: float | None
    excluded: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "seeds": list(self.seeds), "values": list(self.values),
                "excluded": list(self.excluded)}


def seed_test(differences: Sequence[float]) -> SeedTest:
    """Wilcoxon signed-rank and one-sample t-test of "the mean per-seed difference is 0"."""
    n = len(differences)
    floor = min(1.0, 2.0 * 0.5 ** n)
    floor_note = (f"{n} seed(s) cannot reach p < {ALPHA:g} in a rank test: its smallest two-sided p is "
                  f"2 x 0.5^{n} = {floor:.3g}" if floor > ALPHA else None)
    if n < 2:
        return SeedTest(n, None, None, floor, floor_note, "one seed: nothing to test across seeds")
    d = np.asarray(differences, dtype=float)
    notes = []
    zeros = int((d == 0).sum())
    if zeros == n:
        wilcoxon_p = 1.0
    else:
        wilcoxon_p = float(stats.wilcoxon(d).pvalue)  # zeros dropped (Wilcoxon's own rule)
        if zeros:
            notes.append(f"{zeros} of {n} differences are 0 and left out of the rank test")
    if np.ptp(d) == 0:
        t_p = None
        notes.append("no t-test: every seed gives the same difference")
    else:
        t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return SeedTest(n, wilcoxon_p, t_p, floor, floor_note, "; ".join(notes) or None)


def seed_tests(pairs: Sequence[PairedSpread]) -> list[SeedTest]:
    """:func:`seed_test` of each pair, with Holm over the reference pairs of each metric."""
    tests = [seed_test(p.values) for p in pairs]
    for metric in dict.fromkeys(p.metric for p in pairs):
        family = [k for k, p in enumerate(pairs) if p.metric == metric and not p.exploratory]
        for k, adjusted in zip(family, holm([tests[k].wilcoxon_p for k in family])):
            tests[k] = SeedTest(**{**asdict(tests[k]), "wilcoxon_p_holm": adjusted})
    return tests


def _share(item: SeedSpread, floor: SeedSpread, ceiling: SeedSpread, better: float) -> GapShare | None:
    mine, low, high = (dict(zip(s.seeds, s.values)) for s in (item, floor, ceiling))
    seeds = [s for s in item.seeds if s in low and s in high]
    kept = [s for s in seeds if better * (high[s] - low[s]) > 0]
    if not kept:
        return None
    values = tuple((mine[s] - low[s]) / (high[s] - low[s]) for s in kept)
    mean = statistics.fmean(values)
    ci_low = ci_high = None
    if len(values) > 1:
        half = stats.t.ppf((1 + SHARE_CI) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        ci_low, ci_high = mean - half, mean + half
    return GapShare(tuple(kept), values, mean, ci_low, ci_high, tuple(s for s in seeds if s not in kept))


def gap_shares(items: Iterable[SeedSpread], infos: Mapping[str, MetricInfo],
               ) -> dict[tuple[str, str], GapShare]:
    """(method, metric) -> its share of the :data:`FLOOR` -> :data:`CEILING` gap, for the metrics
    methods are compared on (``paired_of`` a paired metric: AUROC, AP, and those
    :func:`harness.metric_info.with_seed_pairs` adds) that have a direction and both the floor and
    the ceiling have (on the seeds where both are present)."""
    by_key = {(i.method, i.metric): i for i in items}
    compared = {i.paired_of for i in paired_infos(infos)}
    out = {}
    for (method, metric), item in by_key.items():
        info = infos.get(metric)
        floor, ceiling = by_key.get((FLOOR, metric)), by_key.get((CEILING, metric))
        if metric not in compared or info is None or info.higher_is_better is None or floor is None or ceiling is None:
            continue
        share = _share(item, floor, ceiling, 1.0 if info.higher_is_better else -1.0)
        if share is not None:
            out[method, metric] = share
    return out
