"""Finished runs as tidy pandas frames: :func:`load_results` and the :class:`Results` it returns.

Why: the people who write the paper work in notebooks and end in LaTeX; they want a run's
numbers as data (one row per observation, a column per variable) rather than as a page. Nothing
here measures anything: run folders are read by :func:`harness.results.load_run` (the one reader,
with its schema upgrades: a schema-1 run loads as well as a current one) and the spread across
seeds comes from :mod:`harness.seed_summary`, as on the report's index. Only the tests across
seeds (:mod:`harness.seed_inference`, scipy) are computed on load, as ``run --seeds`` prints them.

The module imports no torch (the docs site documents it from an environment without the ML stack).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.metric_info import MetricInfo, merge_infos, with_seed_pairs
from harness.results import (FLOOR_METHOD, FLOOR_METHODS, LR_FLOOR_METHOD, PAIRED_REFERENCES, STRATUM_PREFIX, RunFolder,
                             load_run, run_folders)
from harness.seed_summary import group_key, paired_spread, seed_groups, spread, train_seed_of

__all__ = ["Results", "load_results", "FLOOR_SUPERVISION"]

# The shortcut floors are no methods, yet they learn from image labels: one input feature and a
# direction chosen on labelled validation images, or a logistic regression fitted on the train
# split's labels (the report names them so too).
FLOOR_SUPERVISION = {FLOOR_METHOD: "image_labels", LR_FLOOR_METHOD: "image_labels"}

_RUN_COLUMNS = ["run_id", "path", "status", "profile", "seed", "train_seed", "split_hash", "dataset", "methods",
                "created", "harness_version", "git_commit", "group"]
_KEYS = ["run_id", "seed", "train_seed", "profile", "split_hash"]
METRIC_COLUMNS = [*_KEYS, "method", "supervision", "split", "domain", "stratum", "metric", "feature_space",
                  "value", "std", "ci_low", "ci_high", "n", "note"]
PAIRED_COLUMNS = [*_KEYS, "method", "other", "reference", "split", "domain", "metric", "value", "ci_low", "ci_high",
                  "n", "p_value", "p_holm", "note"]
SCORE_COLUMNS = [*_KEYS, "method", "split", "id", "label", "score"]
SEED_COLUMNS = ["group", "method", "other", "metric", "seeds", "values", "n_seeds", "mean", "sd", "min", "max",
                "train_sd", "split_sd", "agree", "exploratory", "wilcoxon_p", "wilcoxon_p_holm", "t_p", "min_p",
                "test_note", "share", "share_ci_low", "share_ci_high"]


@dataclass(frozen=True)
class Results:
    """Runs read back as tidy frames.

    ``metrics``: one row per run x method x metric x split x domain (``all``, a generated-image
    domain, or ``stratum:NAME`` with ``stratum`` set) x feature space, with value, std, CI, n and
    note; the shortcut floors' rows stay in (methods ``shortcut-floor``, ``shortcut-floor-lr``). ``paired``: the paired
    differences (``method`` minus ``other``, both directions as metrics.json stores them) with
    the p-value and, for the fixed references (``reference``), the Holm-adjusted one.
    ``scores``: per-image test and validation scores. ``seed_summary``: per group of runs that
    differ only in their seed, each summarised metric's mean, sd and range over seeds, and the
    paired differences over seeds with their tests (empty for a single run). ``runs``: one row
    per run (status, profile, seed, split hash, ...). ``folders``: the run folders, as loaded.
    """

    folders: tuple[Path, ...]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    paired: pd.DataFrame
    scores: pd.DataFrame
    seed_summary: pd.DataFrame
    infos: dict[str, MetricInfo] = field(default_factory=dict)  # metric id -> title, digits, direction
    run_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # run id -> run.json

    def auroc(self, split: str = "test") -> pd.DataFrame:
        """Each run's overall AUROC per method (run id x method): the number asked for first."""
        rows = self.metrics[(self.metrics["metric"] == "auroc") & (self.metrics["split"] == split)
                            & (self.metrics["domain"] == "all")]
        return rows.pivot_table(index="run_id", columns="method", values="value", aggfunc="first", sort=False)

    def table(self, name: str = "headline") -> pd.DataFrame:
        """The paper table ``name`` (headline, seeds, paired, generative) as ``python -m harness
        export`` writes it, as a frame of its text cells; the caption is in ``.attrs["caption"]``."""
        from harness.paper_tables import build_table  # it reads this module's Results

        table = build_table(self, name)
        frame = pd.DataFrame(list(table.rows), columns=list(table.header))
        frame.attrs["caption"] = table.caption
        return frame

    def versus(self, reference: str, metric: str = "auroc_delta", split: str = "test") -> pd.DataFrame:
        """Each method minus ``reference`` (a fixed reference: ``intensity`` or a shortcut floor)
        on ``metric``, in :meth:`method_order`: the comparisons the run tested and Holm-adjusted as
        one family. A floor is no method, so it is never a row here."""
        rows = self.paired[(self.paired["other"] == reference) & (self.paired["metric"] == metric)
                           & (self.paired["split"] == split) & (self.paired["domain"] == "all")]
        order = {m: k for k, m in enumerate(self.method_order())}
        rows = rows[~rows["method"].isin([*FLOOR_METHODS, reference])]
        return rows.sort_values("method", key=lambda s: s.map(order), kind="stable")

    def method_order(self) -> list[str]:
        """Methods in the order the runs list them (run.json), others after, the shortcut floors last."""
        names = [m for info in self.run_info.values() for m in (info.get("methods") or {})]
        names += list(self.metrics["method"]) + list(self.paired["method"])
        names = list(dict.fromkeys(names))
        return [n for n in names if n not in FLOOR_METHODS] + [n for n in FLOOR_METHODS if n in names]


def _paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Run folders named by ``paths``: a run folder itself, or a folder of runs (each run in it)."""
    out: list[Path] = []
    for given in paths:
        path = Path(given).expanduser()
        if (path / "run.json").is_file():
            out.append(path)
        elif path.is_dir() and (inner := run_folders(path)):
            out.extend(inner)
        elif path.exists():
            raise FileNotFoundError(f"{path} is not a run folder (no run.json) and holds none")
        else:
            raise FileNotFoundError(f"{path}: no such run folder")
    return list(dict.fromkeys(p.resolve() for p in out))


def _supervision(run: dict[str, Any], method: str) -> str | None:
    if method in FLOOR_SUPERVISION:
        return FLOOR_SUPERVISION[method]
    entry = (run.get("methods") or {}).get(method)
    return entry.get("supervision") if isinstance(entry, dict) else None


def _run_keys(run_id: str, run: dict[str, Any]) -> dict[str, Any]:
    """The columns that tell which run a row comes from."""
    train_seed = train_seed_of(run) if isinstance(run.get("seed"), int) else None
    return {"run_id": run_id, "seed": run.get("seed"), "train_seed": train_seed, "profile": run.get("profile"),
            "split_hash": (run.get("split") or {}).get("hash")}


def _frame(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records, columns=columns)


def _seed_summary(loaded: list[tuple[dict[str, Any], list[dict[str, Any]]]],
                  infos: dict[str, MetricInfo]) -> pd.DataFrame:
    """Per group of runs differing only in seed: :func:`spread` with each method's share of the
    floor-to-ceiling gap, and :func:`paired_spread` with the across-seed tests (Wilcoxon, t; Holm
    over the reference pairs)."""
    records: list[dict[str, Any]] = []
    groups = seed_groups(loaded)
    if groups:
        from harness.seed_inference import gap_shares, seed_tests  # scipy: only when there are seeds to test
    for key, group in groups.items():
        items = spread(group, infos)
        shares = gap_shares(items, infos)
        for item in items:
            share = shares.get((item.method, item.metric))
            records.append({"group": key, "method": item.method, "other": None, "metric": item.metric,
                            "seeds": item.seeds, "values": item.values, "n_seeds": len(item.seeds),
                            "mean": item.mean, "sd": item.sd, "min": min(item.values), "max": max(item.values),
                            "train_sd": item.train_sd, "split_sd": item.split_sd,
                            "share": share.mean if share else None, "share_ci_low": share.ci_low if share else None,
                            "share_ci_high": share.ci_high if share else None})
        pairs = paired_spread(group, infos)
        for pair, test in zip(pairs, seed_tests(pairs)):
            records.append({"group": key, "method": pair.method, "other": pair.other, "metric": pair.metric,
                            "seeds": pair.seeds, "values": pair.values, "n_seeds": len(pair.seeds),
                            "mean": pair.mean, "sd": pair.sd, "min": min(pair.values), "max": max(pair.values),
                            "train_sd": pair.train_sd, "split_sd": pair.split_sd, "agree": pair.agree,
                            "exploratory": pair.exploratory, "wilcoxon_p": test.wilcoxon_p,
                            "wilcoxon_p_holm": test.wilcoxon_p_holm, "t_p": test.t_p, "min_p": test.min_p,
                            "test_note": "; ".join(n for n in (test.floor_note, test.note) if n) or None})
    return _frame(records, SEED_COLUMNS)


def load_results(*paths: str | os.PathLike[str]) -> Results:
    """Read run folders (or folders of runs, e.g. ``runs/``) into a :class:`Results`.

    Raises ``FileNotFoundError`` for a path that is neither, and
    :class:`harness.results.SchemaError` for a run written by a newer harness.
    """
    folders = _paths(paths)
    if not folders:
        raise FileNotFoundError("no run folder given")
    runs, metrics, paired, scores = [], [], [], []
    loaded: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    infos: dict[str, MetricInfo] = {}
    run_info: dict[str, dict[str, Any]] = {}
    for path in folders:
        doc = load_run(path)
        run, run_id = doc["run"], str(doc["run_id"])
        keys = _run_keys(run_id, run)
        run_info[run_id] = run
        runs.append({**keys, "path": str(path), "status": run.get("status"),
                     "dataset": (run.get("dataset") or {}).get("name"), "methods": tuple(run.get("methods") or ()),
                     "created": run.get("created"), "harness_version": run.get("harness_version"),
                     "git_commit": run.get("git_commit"), "group": group_key(run)})
        for row in doc["metrics"]:
            domain = row.get("domain") or "all"
            if row.get("other") is not None:
                paired.append({**keys, **{k: row.get(k) for k in PAIRED_COLUMNS if k in row},
                               "domain": domain, "reference": row["other"] in PAIRED_REFERENCES})
                continue
            stratum = domain[len(STRATUM_PREFIX):] if domain.startswith(STRATUM_PREFIX) else None
            metrics.append({**keys, **{k: row.get(k) for k in METRIC_COLUMNS if k in row}, "domain": domain,
                            "stratum": stratum, "supervision": _supervision(run, row["method"])})
        folder = RunFolder(path)
        frame = folder.read_scores()
        if not frame.empty:
            scores.append(frame.assign(**keys))
        infos = merge_infos(infos, folder.read_metric_infos())
        loaded.append((run, doc["metrics"]))
    infos = with_seed_pairs(infos)
    score_frame = pd.concat(scores, ignore_index=True)[SCORE_COLUMNS] if scores else _frame([], SCORE_COLUMNS)
    return Results(folders=tuple(folders), runs=_frame(runs, _RUN_COLUMNS), metrics=_frame(metrics, METRIC_COLUMNS),
                   paired=_frame(paired, PAIRED_COLUMNS), scores=score_frame,
                   seed_summary=_seed_summary(loaded, infos), infos=infos, run_info=run_info)
