"""Paired comparisons: is method A better than method B on the same test images, and by how much?

Two methods of a run score the same test images, so their difference should be judged on the
same resamples: every bootstrap replicate draws subjects (or images) once and evaluates both
methods on that draw (:func:`harness.metrics.bootstrap.bootstrap_counts`, with the run's seed, so
they are the very resamples behind each method's own CI). The difference's replicates then
carry the correlation between the methods, which comparing two separate CIs throws away: with a
dozen test subjects two intervals can overlap while one method wins on every subject.

* ``auroc_delta`` / ``ap_delta``: ``value`` = metric(``method``) - metric(``other``) and a
  percentile CI of the replicated differences. The ``p_value`` is not read off that bootstrap (with
  13 subjects it rejects a true null about twice as often as it says): it comes from the subject
  permutation test (:mod:`harness.metrics.permutation`), whose size holds at that count; the
  row's note says whether it enumerated every swap pattern or drew some, and over how many
  subjects. A method against itself gives 0 with a zero-width CI and p = 1.
* Tests are fixed in advance: only a pair with a reference of :data:`PAIRED_REFERENCES` (the
  intensity floor, the single-feature and the logistic-regression shortcut floors) gets a
  p-value, and each reference's comparisons are one Holm family (``p_holm``, the family named in
  the note). The other pairs keep their CI, with no p-value: they are exploration, and exact
  enumeration at 13 subjects costs 0.5 s a pair (the 45 pairs of 8 methods and the two floors:
  23 s; the 24 with a reference: 12 s) that would buy nothing but uncorrected p-values to
  misread. The two shortcut floors are not tested against each other: neither is a method.
* Every ordered pair gets a row (A vs B and B vs A), so a table per method needs no sign flips.
* Across runs (``compare``): the same method of two runs on the same split hash is paired on the
  shared test images; runs on different splits cannot be paired, and :func:`paired_runs` says why.

No scikit-learn or torch here: ``python -m harness compare`` (:mod:`harness.compare`) uses it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.metrics.bootstrap import bootstrap_counts, percentile_interval, subject_counts_note, weighted_auroc_ap
from harness.metrics.permutation import PermutationResult, holm, paired_permutation_test
from harness.results import FLOOR_METHOD, FLOOR_METHODS, LR_FLOOR_METHOD, PAIRED_REFERENCES, RunFolder, metric_row

__all__ = ["PairedDelta", "PairedRuns", "holm_families", "paired_deltas", "paired_rows", "paired_runs"]


@dataclass(frozen=True)
class PairedDelta:
    """``metric`` (auroc or ap) of A, of B, and A - B with its CI and p-value on ``n`` images."""

    metric: str
    a: float | None
    b: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    note: str | None


def _permutation_note(result: PermutationResult, groups: Sequence[str] | np.ndarray | None, n: int) -> str:
    """Which test gave the p-value and on how many subjects: with S subjects no exact p falls
    below 2 / 2^S, and one from random patterns carries Monte Carlo error."""
    n_groups = n if groups is None else len(set(map(str, groups)))
    kind = "image" if n_groups == n else "subject"  # every image its own subject: a folder dataset
    units = f"{n_groups} {kind}s"
    if result.exact:
        return f"p: {kind} permutation test, exact over all {result.n_patterns} swap patterns of {units}"
    return f"p: {kind} permutation test, {result.n_patterns - 1} random swap patterns of {units}"


def _cached(memo: dict | None, key: tuple, compute: Callable[[], Any]) -> Any:
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def paired_deltas(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                  groups: Sequence[str] | np.ndarray | None, n_boot: int, ci: float, seed: int,
                  memo: dict | None = None, test: bool = True) -> list[PairedDelta]:
    """AUROC and AP of A minus B on the same images; ``groups`` (subjects) are resampled whole
    for the CI and swapped whole by the permutation test (``test`` False: no p-value). ``memo``
    (a dict kept across calls) evaluates each score vector once per image set, not once per pair
    it is in."""
    y = np.asarray(labels).astype(int)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    n = int(y.size)
    if not (a.shape == b.shape == y.shape):
        raise ValueError(f"paired scores must align: {a.shape}, {b.shape} for {y.shape} labels")
    why = None
    if np.unique(y).size < 2:
        why = "not computed: the shared test images hold only one class"
    elif not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        why = "not computed: non-finite scores"
    if why is not None:
        return [PairedDelta(m, None, None, None, None, None, None, n, why) for m in ("auroc", "ap")]
    images = (y.tobytes(), None if groups is None else tuple(map(str, groups)), n_boot, seed)
    counts = _cached(memo, ("counts", *images),
                     lambda: bootstrap_counts(y, groups, n_boot, np.random.default_rng(seed)))

    def evaluate(s: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        return _cached(memo, ("scores", s.tobytes(), *images),
                       lambda: (weighted_auroc_ap(s, y, np.ones((1, n))), weighted_auroc_ap(s, y, counts)))

    (point_a, boot_a), (point_b, boot_b) = evaluate(a), evaluate(b)
    note = subject_counts_note(y, groups) or f"CI resamples the {n} images"
    p_values: tuple[float | None, float | None] = (None, None)
    if test:
        result = paired_permutation_test(y, a, b, groups, seed=seed)
        p_values = (result.p_auroc, result.p_ap)
        note = f"{note}; {_permutation_note(result, groups, n)}"
    out = []
    for k, metric in enumerate(("auroc", "ap")):
        low, high = percentile_interval(boot_a[k] - boot_b[k], ci)
        out.append(PairedDelta(metric, float(point_a[k][0]), float(point_b[k][0]),
                               float(point_a[k][0] - point_b[k][0]), low, high, p_values[k], n, note))
    return out


def _aligned(test: pd.DataFrame, a: str, b: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Ids both methods scored (in A's order), their labels, and both methods' scores."""
    sa = test[test["method"] == a].drop_duplicates("id", keep="last").set_index("id")
    sb = test[test["method"] == b].drop_duplicates("id", keep="last").set_index("id")
    ids = [i for i in sa.index if i in sb.index]
    labels = sa.loc[ids, "label"].to_numpy(int)
    if not np.array_equal(labels, sb.loc[ids, "label"].to_numpy(int)):
        raise ValueError(f"{a} and {b} disagree on the labels of the same test images")
    return ids, labels, sa.loc[ids, "score"].to_numpy(float), sb.loc[ids, "score"].to_numpy(float)


def paired_rows(scores: pd.DataFrame, subjects: Mapping[str, str], settings: Any, seed: int) -> list[dict]:
    """``auroc_delta`` and ``ap_delta`` rows for every ordered pair of methods in ``scores``
    (scores.csv: method, split, id, label, score), on the test images both scored. ``settings``
    gives ``bootstrap`` (replicates) and ``ci``; ``subjects`` maps image id -> subject. Pairs
    with a fixed reference get a permutation p-value and their Holm adjustment
    (:func:`holm_families`); the others, exploratory, a CI only."""
    test = scores[scores["split"] == "test"]
    methods = list(dict.fromkeys(test["method"]))
    rows: list[dict] = []
    memo: dict = {}
    for a, b in combinations(methods, 2):
        ids, labels, sa, sb = _aligned(test, a, b)
        groups = [subjects.get(i, i) for i in ids]
        floors = a in FLOOR_METHODS and b in FLOOR_METHODS
        tested = (a in PAIRED_REFERENCES or b in PAIRED_REFERENCES) and not floors
        why_not = ("two shortcut floors, neither a method" if floors else
                   f"neither is a fixed reference: {', '.join(_reference_name(r) for r in PAIRED_REFERENCES)}")
        for d in paired_deltas(labels, sa, sb, groups, settings.bootstrap, settings.ci, seed, memo, test=tested):
            note = d.note if tested or d.delta is None else f"{d.note}; no p-value: exploratory ({why_not})"
            for method, other, sign in ((a, b, 1.0), (b, a, -1.0)):
                low, high = (d.ci_low, d.ci_high) if sign > 0 else (
                    None if d.ci_high is None else -d.ci_high, None if d.ci_low is None else -d.ci_low)
                rows.append(metric_row(method, f"{d.metric}_delta", None if d.delta is None else sign * d.delta,
                                       ci_low=low, ci_high=high, n=d.n, note=note, other=other,
                                       p_value=d.p_value))
    return holm_families(rows)


def _reference_name(method: str) -> str:
    return {FLOOR_METHOD: "the shortcut floor", LR_FLOOR_METHOD: "the logistic-regression shortcut floor"}.get(
        method, method)


def holm_families(rows: list[dict]) -> list[dict]:
    """The paired rows with ``p_holm`` on every comparison against a fixed reference: per
    reference and paired metric, the family is each method minus that reference (the shortcut
    floors are no methods, so they are in no family); the mirrored row (the
    reference minus the method) carries the same value. The note names the family."""
    out = [dict(r) for r in rows]
    by_pair = {(r["method"], r["other"], r["metric"]): r for r in out}
    for reference in PAIRED_REFERENCES:
        for metric in dict.fromkeys(r["metric"] for r in out):
            family = [r for r in out if r["other"] == reference and r["metric"] == metric
                      and r["method"] not in (reference, *FLOOR_METHODS) and r["p_value"] is not None]
            size = f"{len(family)} comparison{'s' if len(family) != 1 else ''}"
            for row, adjusted in zip(family, holm([r["p_value"] for r in family])):
                for r in (row, by_pair[(reference, row["method"], metric)]):
                    r["p_holm"] = adjusted
                    r["note"] = f"{r['note']}; Holm over the {size} against {_reference_name(reference)}"
    return out


@dataclass
class PairedRuns:
    """The same methods of two runs paired on their shared test images, or why not. In each
    :class:`PairedDelta` here, ``a`` and ``b`` are run A's and run B's values and ``delta`` is B - A."""

    deltas: dict[str, list[PairedDelta]] = field(default_factory=dict)  # method -> [auroc, ap]
    reason: str | None = None


def _metric_settings(run: dict[str, Any]) -> tuple[int, float]:
    metrics = ((run.get("config") or {}).get("profile") or {}).get("metrics") or {}
    return int(metrics.get("bootstrap") or 1000), float(metrics.get("ci") or 0.95)


def paired_runs(path_a: str | Path, path_b: str | Path) -> PairedRuns:
    """Pair the methods that both runs completed, image by image, when the runs share their split
    hash (the same manifest, so the same test images and subjects); B - A with run A's bootstrap
    settings and seed. Otherwise ``reason`` says why they cannot be paired."""
    fa, fb = RunFolder(path_a), RunFolder(path_b)
    ra, rb = fa.read_run(), fb.read_run()
    ha, hb = (r.get("split", {}).get("hash") for r in (ra, rb))
    if not ha or not hb:
        missing = ", ".join(r.get("run_id", "?") for r, h in ((ra, ha), (rb, hb)) if not h)
        return PairedRuns(reason=f"{missing} records no split hash, so the test images cannot be matched")
    if ha != hb:
        return PairedRuns(reason=f"their split hashes differ ({ha} vs {hb}): the runs were scored on different "
                                 "test images (other data, seed or split settings), so there is nothing to pair; "
                                 "only their separate CIs can be set side by side")
    sa, sb = fa.read_scores(), fb.read_scores()
    unfinished = {m for r in (ra, rb) for m, info in (r.get("methods") or {}).items() if info.get("status") != "complete"}
    shared = [m for m in dict.fromkeys(sa.loc[sa["split"] == "test", "method"])
              if m not in unfinished and m in set(sb.loc[sb["split"] == "test", "method"])]
    if not shared:
        return PairedRuns(reason="the runs share no completed method with test scores (scores.csv)")
    subjects: dict[str, str] = {}
    if fa.file("split.csv").is_file():
        manifest = pd.read_csv(fa.file("split.csv"), dtype=str)
        subjects = dict(zip(manifest["path"], manifest["subject"]))
    n_boot, ci = _metric_settings(ra)
    seed = int(ra.get("seed") or 0)
    out = PairedRuns()
    for method in shared:
        both = pd.concat([sb[sb["method"] == method].assign(method="B"), sa[sa["method"] == method].assign(method="A")])
        ids, labels, scores_b, scores_a = _aligned(both[both["split"] == "test"], "B", "A")
        deltas = paired_deltas(labels, scores_b, scores_a, [subjects.get(i, i) for i in ids], n_boot, ci, seed)
        out.deltas[method] = [replace(d, a=d.b, b=d.a) for d in deltas]  # a, b: the runs' values; delta B - A
    return out
