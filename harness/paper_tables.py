"""The tables ``python -m harness export`` writes: headline, seeds, paired, generative.

Why apart from the formats (:mod:`harness.table_formats`): which numbers a table holds, and
in which order, is one decision; how LaTeX, CSV or markdown spell it is another. Every number
comes from :func:`harness.load_results` as the run stored it (metrics.json) or as the harness
summarises runs of several seeds (:mod:`harness.seed_summary`, the across-seed tests of
:mod:`harness.seed_inference`): nothing is measured here. One run's cells read ``value [95% CI]``;
several runs that differ only in their seed read ``mean ± sd`` over the seeds. Methods keep the
runs' order and the floors stay in (the intensity baseline is a method; the shortcut floor's
row comes last), since a table that dropped them would hide what a method must beat.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.registry import SUPERVISION_LABELS
from harness.results import FLOOR_METHOD, FLOOR_METHODS, LR_FLOOR_METHOD, PAIRED_REFERENCES
from harness.results_frames import Results
from harness.seed_summary import CEILING as GAP_CEILING, FLOOR as GAP_FLOOR, SeedSpread

__all__ = ["Table", "TABLES", "build_table", "MISSING"]

MISSING = "—"
_NAMES = {FLOOR_METHOD: "shortcut floor", LR_FLOOR_METHOD: "shortcut floor (LR)"}
# what each floor is, for the captions (a floor is what a method must beat to have shown anything)
_FLOORS = {"intensity": "intensity is the no-learning intensity floor",
           FLOOR_METHOD: "the shortcut floor is the strongest single input feature, its direction chosen on validation",
           LR_FLOOR_METHOD: "the shortcut floor (LR) is a logistic regression over every input feature, fitted on "
                            "the training labels"}


@dataclass(frozen=True)
class Table:
    """A table as every format writes it: ``header`` and ``rows`` of text cells (the first
    ``text_columns`` are labels, the others numbers), a caption and a LaTeX label."""

    name: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str
    text_columns: int = 1

    def __post_init__(self) -> None:
        widths = {len(r) for r in self.rows}
        if widths - {len(self.header)}:
            raise ValueError(f"table {self.name}: rows of {sorted(widths)} cells under {len(self.header)} columns")


# ---------------------------------------------------------------- cells

def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(value: Any, digits: int) -> str:
    x = _num(value)
    return MISSING if x is None else f"{x:.{digits}f}"


def _with_ci(row: pd.Series | None, digits: int) -> str:
    """``value [low, high]``, ``value ± std`` (a metric with its own spread, e.g. IS), or ``value``."""
    if row is None or _num(row.get("value")) is None:
        return MISSING
    text = _fmt(row["value"], digits)
    if _num(row.get("ci_low")) is not None and _num(row.get("ci_high")) is not None:
        return f"{text} [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"
    if _num(row.get("std")) is not None:
        return f"{text} ± {_fmt(row['std'], digits)}"
    return text


def _mean_sd(mean: Any, sd: Any, digits: int) -> str:
    if _num(mean) is None:
        return MISSING
    return _fmt(mean, digits) + ("" if _num(sd) is None else f" ± {_fmt(sd, digits)}")


def _p(value: Any) -> str:
    x = _num(value)
    return MISSING if x is None else "<0.001" if x < 0.001 else f"{x:.3f}"


def _count(value: Any) -> str:
    x = _num(value)
    return MISSING if x is None else str(int(x))


# ---------------------------------------------------------------- what the runs are

@dataclass(frozen=True)
class _Runs:
    """The loaded runs as one table sees them: one run, or one group of seeds."""

    results: Results
    several: bool

    def digits(self, metric: str) -> int:
        info = self.results.infos.get(metric)
        return info.digits if info else 3

    def title(self, metric: str) -> str:
        info = self.results.infos.get(metric)
        return info.title if info else metric

    def label(self, method: str) -> str:
        name = _NAMES.get(method, method)
        statuses = {str(((run.get("methods") or {}).get(method) or {}).get("status") or "complete")
                    for run in self.results.run_info.values() if method in (run.get("methods") or {})}
        failed = sorted(statuses - {"complete"})
        return f"{name} ({', '.join(failed)})" if failed and not self.several else name

    def supervision(self, method: str) -> str:
        values = self.results.metrics.loc[self.results.metrics["method"] == method, "supervision"].dropna()
        if values.empty:
            values = pd.Series([((run.get("methods") or {}).get(method) or {}).get("supervision")
                                for run in self.results.run_info.values()]).dropna()
        value = str(values.iloc[0]) if not values.empty else None
        return MISSING if value is None else SUPERVISION_LABELS.get(value, value)

    def floors(self, shown: list[str]) -> str:
        """``Floors: ...`` for the floors among the ``shown`` methods (empty when none is)."""
        parts = [text for name, text in _FLOORS.items() if name in shown]
        return f" Floors: {'; '.join(parts)}." if parts else ""

    def provenance(self) -> str:
        """Profile, seeds, split hashes and runs: what the caption must name so a reader can trace it."""
        runs = self.results.runs
        seeds = sorted({int(s) for s in runs["seed"].dropna()})
        profiles = sorted({str(p) for p in runs["profile"].dropna()})
        hashes = list(dict.fromkeys(str(h) for h in runs["split_hash"].dropna()))
        datasets = sorted({str(d) for d in runs["dataset"].dropna()})
        parts = [f"Profile {', '.join(profiles) or 'unknown'}",
                 f"{'seeds' if len(seeds) > 1 else 'seed'} {', '.join(map(str, seeds)) or 'unknown'}",
                 f"split {'hashes' if len(hashes) > 1 else 'hash'} {', '.join(hashes) or 'unknown'}"]
        if datasets:
            parts.append(f"dataset {', '.join(datasets)}")
        parts.append(f"{'runs' if len(runs) > 1 else 'run'} {', '.join(runs['run_id'])}")
        return "; ".join(parts)


def _runs(results: Results) -> _Runs:
    """One run, or runs that differ only in their seed (the spread across them means something)."""
    runs = results.runs
    if len(runs) == 1:
        return _Runs(results, several=False)
    if runs["group"].nunique() > 1:
        raise ValueError("the runs differ in more than their seed (config, harness version or commit); export "
                         "one run, or the runs of one `run --seeds` series")
    incomplete = runs.loc[runs["status"] != "complete", "run_id"].tolist()
    if incomplete:
        raise ValueError(f"run(s) {', '.join(incomplete)} did not complete; the spread across seeds uses complete "
                         f"runs only: leave them out")
    if len(runs[["seed", "train_seed"]].drop_duplicates()) < 2:
        raise ValueError("the runs share one seed and train seed; a spread needs two or more seeds (or train seeds)")
    return _Runs(results, several=True)


def _test_rows(results: Results) -> pd.DataFrame:
    """Overall test rows without a feature space: the detection and localisation numbers."""
    m = results.metrics
    return m[(m["split"] == "test") & (m["domain"] == "all") & m["feature_space"].isna()]


def _lookup(frame: pd.DataFrame, **where: Any) -> pd.Series | None:
    mask = pd.Series(True, index=frame.index)
    for key, value in where.items():
        mask &= frame[key].isna() if value is None else frame[key] == value
    found = frame[mask]
    return None if found.empty else found.iloc[0]


def _versus_floor(summary: pd.DataFrame) -> pd.DataFrame:
    """The across-seed AUROC differences of each method minus the intensity floor."""
    return summary[summary["other"].eq(GAP_FLOOR) & summary["metric"].eq("auroc_delta")]


def _share_cell(row: pd.Series | None) -> str:
    """``mean [low, high]`` of a method's share of the floor-to-ceiling gap."""
    if row is None or _num(row["share"]) is None:
        return MISSING
    if _num(row["share_ci_low"]) is None:
        return _fmt(row["share"], 2)
    return f"{_fmt(row['share'], 2)} [{_fmt(row['share_ci_low'], 2)}, {_fmt(row['share_ci_high'], 2)}]"


def _dice_metric(present: set[str]) -> list[str]:
    """Dice at the validation threshold; an older run's oracle Dice only when it has nothing else."""
    return ["dice"] if "dice" in present else ["dice_oracle"] if "dice_oracle" in present else []


# ---------------------------------------------------------------- the tables

def headline(results: Results) -> Table:
    """Method | Supervision | AUROC | AP | (AP chance) | (Pixel AUROC) | (Dice) | n or Seeds."""
    runs = _runs(results)
    methods = results.method_order()
    if runs.several:
        summary = results.seed_summary[results.seed_summary["other"].isna()]
        present = set(summary["metric"])
        metrics = [m for m in ("auroc", "ap", "pixel_auroc") if m in present] + _dice_metric(present)
        versus = _versus_floor(results.seed_summary)
        shares = summary[summary["metric"].eq("auroc") & summary["share"].notna()]
        rows, shown, absent = [], [], []
        for method in methods:
            mine = summary[summary["method"] == method]
            if mine.empty:
                continue
            shown.append(method)
            cells = [_mean_sd(r["mean"], r["sd"], runs.digits(m)) if (r := _lookup(mine, metric=m)) is not None
                     else MISSING for m in metrics]
            if not versus.empty:
                delta = _lookup(versus, method=method)
                cells += [MISSING, MISSING] if delta is None else [
                    _mean_sd(delta["mean"], delta["sd"], 3), _p(delta["wilcoxon_p_holm"])]
            if not shares.empty:
                cells.append(_share_cell(_lookup(shares, method=method)))
            rows.append((runs.label(method), runs.supervision(method), *cells, _count(mine["n_seeds"].max())))
        header = ("Method", "Supervision", *(f"{runs.title(m)} (mean ± sd)" for m in metrics))
        how = "Cells: mean ± sd over the seeds (each seed its own split and training); Seeds: seeds with a value"
        if not versus.empty:
            header += (f"Δ AUROC vs {GAP_FLOOR} (mean ± sd)", "p (Wilcoxon, Holm)")
            how += (f"; Δ AUROC vs {GAP_FLOOR}: each seed's paired difference on its test images; p: Wilcoxon "
                    "signed-rank over the seeds, Holm over the comparisons with the fixed references")
        if not shares.empty:
            header += (f"Share of {GAP_FLOOR}→{GAP_CEILING} gap [95% CI]",)
            how += (f"; Share: (AUROC − {GAP_FLOOR}) / ({GAP_CEILING} − {GAP_FLOOR}) per seed, mean with a t "
                    f"interval over the seeds (seeds where {GAP_CEILING} does not beat {GAP_FLOOR} left out)")
        header += ("Seeds",)
    else:
        test = _test_rows(results)
        present = set(test["metric"])
        metrics = [m for m in ("auroc", "ap", "ap_chance", "pixel_auroc") if m in present] + _dice_metric(present)
        (run,) = results.run_info.values()
        rows, shown, absent = [], [], []
        for method in methods:
            mine = test[test["method"] == method]
            if mine.empty and method not in (run.get("methods") or {}):
                continue  # a method of the paired rows only; a failed method of the run stays in, with dashes
            auroc = _lookup(mine, metric="auroc")
            if method in FLOOR_METHODS and mine["value"].isna().all():  # a floor the run could not compute
                note = None if auroc is None else auroc["note"]
                absent.append(runs.label(method) + (f" ({note})" if isinstance(note, str) and note else ""))
                continue
            shown.append(method)
            cells = [_with_ci(_lookup(mine, metric=m), runs.digits(m)) for m in metrics]
            rows.append((runs.label(method), runs.supervision(method), *cells,
                         _count(None if auroc is None else auroc["n"])))
        header = ("Method", "Supervision", *(runs.title(m) + ("" if m == "ap_chance" else " [95% CI]") for m in metrics),
                  "n")
        how = "Cells: value [95% CI] (bootstrap over subjects where the data name them); n: test images"
    if not rows:
        raise ValueError("the runs hold no test results")
    left_out = f" Left out, no value: {'; '.join(absent)}." if absent else ""
    caption = f"Test-set detection. {how}.{runs.floors(shown)}{left_out} {runs.provenance()}."
    return Table("headline", header, tuple(rows), caption, text_columns=2)


def seeds(results: Results) -> Table:
    """Method | Metric | mean ± sd | range | one column per seed (| split sd | train sd)."""
    runs = _runs(results)
    if not runs.several:
        raise ValueError("the seeds table needs runs of two or more seeds that differ only in their seed "
                         "(`python -m harness run --seeds ...`)")
    summary = results.seed_summary[results.seed_summary["other"].isna()]
    all_seeds = sorted({int(s) for seeds_of in summary["seeds"] for s in seeds_of})
    trained = summary["train_sd"].notna().any()
    order = {m: k for k, m in enumerate(results.method_order())}
    rows = []
    for _, r in summary.sort_values("method", key=lambda s: s.map(order), kind="stable").iterrows():
        digits = runs.digits(r["metric"])
        by_seed = dict(zip(r["seeds"], r["values"]))
        cells = [runs.label(r["method"]), runs.title(r["metric"]), _mean_sd(r["mean"], r["sd"], digits),
                 f"{_fmt(r['min'], digits)}–{_fmt(r['max'], digits)}",
                 *(_fmt(by_seed.get(s), digits) for s in all_seeds)]
        if trained:
            cells += [_fmt(r["split_sd"], digits), _fmt(r["train_sd"], digits)]
        rows.append(tuple(cells))
    header = ("Method", "Metric", "Mean ± sd", "Range", *(f"Seed {s}" for s in all_seeds))
    header += ("Split sd", "Train sd") if trained else ()
    noise = ("; each seed: the mean of its trainings; split sd: between splits with training noise removed"
             if trained else "")
    caption = (f"Test-set results per seed, and their mean ± sd and range over seeds{noise}."
               f"{runs.floors(list(summary['method']))} {runs.provenance()}.")
    return Table("seeds", header, tuple(rows), caption, text_columns=2)


def paired(results: Results) -> Table:
    """Each method minus each fixed reference, per paired metric: the difference and its tests.
    A floor is no method: it is never shown minus a reference (as on the run page)."""
    runs = _runs(results)
    methods = [m for m in results.method_order() if m not in FLOOR_METHODS]
    rows = []
    if runs.several:
        summary = results.seed_summary
        pairs = summary[summary["other"].notna() & summary["exploratory"].eq(False)]  # the reference pairs
        header = ("Method", "Minus", "Metric", "Mean ± sd", "Same sign", "p (Wilcoxon)", "p (Holm)", "p (t)")
        how = ("Per-seed paired differences on each seed's test images, mean ± sd over seeds; Same sign: seeds whose "
               "difference has the sign of the mean; p: Wilcoxon signed-rank and one-sample t-test over seeds, Holm "
               "over each metric's comparisons against the fixed references")
    else:
        frames = [results.versus(r, i.id) for r in PAIRED_REFERENCES for i in results.infos.values()
                  if i.paired_of is not None]
        pairs = pd.concat(frames) if frames else results.paired.iloc[:0]
        header = ("Method", "Minus", "Metric", "Difference [95% CI]", "p", "p (Holm)", "n")
        how = ("Each method minus a reference fixed in advance, on the same test images; p and the Holm-adjusted p "
               "(over each reference's comparisons) as the run reports them; n: test images")
    for reference in PAIRED_REFERENCES:
        for method in methods:
            for _, r in pairs[(pairs["method"] == method) & (pairs["other"] == reference)].iterrows():
                digits = runs.digits(r["metric"])
                first = (runs.label(method), _NAMES.get(reference, reference), runs.title(r["metric"]))
                if runs.several:
                    rows.append((*first, _mean_sd(r["mean"], r["sd"], digits),
                                 f"{_count(r['agree'])}/{_count(r['n_seeds'])}", _p(r["wilcoxon_p"]),
                                 _p(r["wilcoxon_p_holm"]), _p(r["t_p"])))
                else:
                    rows.append((*first, _with_ci(r, digits), _p(r["p_value"]), _p(r["p_holm"]), _count(r["n"])))
    if not rows:
        raise ValueError("the runs hold no paired tests against the fixed references "
                         f"({', '.join(PAIRED_REFERENCES)})")
    shown = [*methods, *(r for r in PAIRED_REFERENCES if r in set(pairs["other"]))]
    caption = f"Paired differences. {how}.{runs.floors(shown)} {runs.provenance()}."
    return Table("paired", header, tuple(rows), caption, text_columns=3)


def _over_seeds(rows: pd.DataFrame) -> SeedSpread | None:
    """The values of one (method, metric, domain, feature space) over seeds, each seed the mean of
    its trainings, as :func:`harness.seed_summary.spread` takes them for the overall rows (which
    alone it summarises; generated-image rows are per domain)."""
    per_seed: dict[int, list[float]] = {}
    for _, r in rows.iterrows():
        if _num(r["value"]) is not None:
            per_seed.setdefault(int(r["seed"]), []).append(float(r["value"]))
    if not per_seed:
        return None
    seeds_ = tuple(sorted(per_seed))
    return SeedSpread(str(rows["method"].iloc[0]), str(rows["metric"].iloc[0]), seeds_,
                      tuple(statistics.fmean(per_seed[s]) for s in seeds_),
                      trainings=tuple(tuple(per_seed[s]) for s in seeds_))


def generative(results: Results) -> Table:
    """Method | Domain | Feature space | FID | reference FID | relative FID | KID | IS | ... | n."""
    runs = _runs(results)
    m = results.metrics
    gen = m[(m["split"] == "test") & m["feature_space"].notna()]
    if gen.empty:
        raise ValueError("the runs hold no generated-image metrics (no method translates)")
    # a feature space not computed at all (e.g. no Inception weights): the caption names it once
    empty = [str(s) for s, rows_of in gen.groupby("feature_space", sort=False) if rows_of["value"].isna().all()]
    gen = gen[~gen["feature_space"].isin(empty)]
    if gen.empty:
        raise ValueError(f"no generated-image metric was computed in these runs ({', '.join(empty)}: see their notes)")
    metrics = list(dict.fromkeys(i.id for i in results.infos.values() if i.id in set(gen["metric"])))
    metrics += [x for x in dict.fromkeys(gen["metric"]) if x not in metrics]
    order = {name: k for k, name in enumerate(results.method_order())}
    keys = gen[["method", "domain", "feature_space"]].drop_duplicates()
    keys = keys.sort_values("method", key=lambda s: s.map(order), kind="stable")
    rows = []
    for _, key in keys.iterrows():
        mine = gen[(gen["method"] == key["method"]) & (gen["domain"] == key["domain"])
                   & (gen["feature_space"] == key["feature_space"])]
        cells = []
        for metric in metrics:
            found = mine[mine["metric"] == metric]
            if runs.several:
                item = _over_seeds(found) if not found.empty else None
                cells.append(MISSING if item is None else _mean_sd(item.mean, item.sd, runs.digits(metric)))
            else:
                cells.append(_with_ci(found.iloc[0] if not found.empty else None, runs.digits(metric)))
        n = mine["n"].dropna()
        rows.append((runs.label(key["method"]), key["domain"].replace("_", " "), key["feature_space"], *cells,
                     _count(n.max() if not n.empty else None)))
    header = ("Method", "Domain", "Feature space", *(runs.title(x) for x in metrics), "n")
    how = ("Cells: mean ± sd over seeds" if runs.several else
           "Cells: value, ± its own std where the metric has one (IS over splits, KID over subsets)")
    skipped = f"Not computed in these runs (see their notes): {', '.join(empty)}. " if empty else ""
    caption = (f"Generated images per domain: real test images of a domain against images translated into it. "
               f"{how}; n: images per side. {skipped}{runs.provenance()}.")
    return Table("generative", header, tuple(rows), caption, text_columns=3)


TABLES: dict[str, Callable[[Results], Table]] = {"headline": headline, "seeds": seeds, "paired": paired,
                                                 "generative": generative}


def build_table(results: Results, name: str) -> Table:
    """The table ``name`` of :data:`TABLES` for the loaded runs; ``ValueError`` for an unknown
    name or runs that cannot make it (a message that says why)."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
    return TABLES[name](results)
