"""Grids: each (method, seed, dataset) cell as an independent job through submitit, read back as one table.

Why: a lab's grid (5 seeds x every method x two datasets) is more GPU hours than one machine has;
Slurm spreads it over nodes, and submitit is the maintained way to send Python functions to Slurm
as job arrays. The same jobs run as local processes (``LocalExecutor``) or in-process
(``DebugExecutor``) on one machine and in the tests.

A cell is one ordinary run (``<output>/<run_id>/``) of one method. The cells of one (seed, dataset)
are what one run of all the grid's methods would have been; with ``--train-seeds K`` each is run
K times, with train seeds ``seed + 1000 j`` (j = 0: the ordinary run of that seed; training's
initialisation and data order differ, the split does not):

- the split depends on data, seed and split settings only, so they share it (collection checks
  that their split hashes agree);
- every cell's config carries the settings of all the grid's methods (and of the MRI feature
  method when one translates), so the runner loads images at the size that run would use;
- translating cells run after the feature-method cell of their (seed, dataset), whose checkpoint
  is copied to the MRI-reference cache entry the runner looks up (:func:`mri_reference.reference_file`):
  they use that very file, as the run of all methods uses its own feature method's checkpoint.
  When the grid does not list the feature method it gets an ``extractor`` cell, kept out of the table.

``<output>/grids/<grid_id>/`` holds ``grid.json`` (spec, submissions, cells -> run ids and
status, the table with the across-seed tests, :mod:`harness.seed_inference`), ``cells/<key>.json``
(what each cell job recorded) and ``submitit/`` (logs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.atomic import atomic_copy
from harness.config import RunConfig, resolve_method_settings
from harness.mri_reference import cache_root, feature_method, reference_file
from harness.registry import METHODS, split_variant
from harness.request import config_from_dict
from harness.results import FLOOR_METHODS, RunFolder, atomic_write_json, utc_now
from harness.run_inputs import DataLayer
from harness.metric_info import MetricInfo, infos_from_document, infos_to_document, merge_infos, with_seed_pairs
from harness.seed_inference import CEILING, FLOOR, SHARE_CI, gap_shares, seed_tests
from harness.seed_summary import format_spread, paired_spread, spread, train_seed_of
from harness.text_table import text_table

SCHEMA_VERSION = 1
EMBEDDED = "mni152-lesions"
TRAIN_SEED_STRIDE = 1000  # train seed j of seed s: s + 1000 j, clear of the seeds a series uses
# per-cell resources by profile (Slurm); one GPU per cell unless --gpus says otherwise
PROFILE_RESOURCES = {"smoke": {"timeout_min": 30, "cpus": 2, "mem_gb": 8},
                     "quick": {"timeout_min": 120, "cpus": 4, "mem_gb": 16},
                     "paper": {"timeout_min": 24 * 60, "cpus": 8, "mem_gb": 48}}


@dataclass(frozen=True)
class Cell:
    """One run of the grid: one method (``--method``/``--all`` grids), or every method of the grid
    together (``run --seeds``: what one ``run`` of them all is)."""

    methods: tuple[str, ...]
    seed: int
    data: str | tuple[str, ...] | None  # None: the embedded cohort; a tuple: NAME=PATH sources of one cohort
    role: str = "cell"  # "extractor": the MRI feature method for translating cells, not in the table
    train_seed: int | None = None  # None: the seed (the ordinary run); else one of ``--train-seeds``

    @property
    def method(self) -> str:
        """The cell's method, or ``all`` for a cell that runs every method of the grid."""
        return self.methods[0] if len(self.methods) == 1 else "all"

    @property
    def dataset(self) -> str:
        return " + ".join(self.data) if isinstance(self.data, tuple) else self.data or EMBEDDED

    @property
    def key(self) -> str:
        tag = "embedded" if self.data is None else hashlib.sha256(self.dataset.encode()).hexdigest()[:8]
        train = "" if self.train_seed is None else f"-train{self.train_seed}"
        return f"{self.method}-seed{self.seed}{train}-{tag}"


@dataclass(frozen=True)
class CellJob:
    """What one job receives (pickled by submitit)."""

    cell: Cell
    config: dict[str, Any]
    grid_dir: str
    cache: str
    resume_run: str | None = None  # an earlier, unfinished run of this cell to continue
    publish: bool = False  # copy the checkpoint to the MRI-reference cache for translating cells
    progress: bool = False  # progress bars (in-process cells of ``run --seeds``)


def _translates(method: str) -> bool:
    return "translates" in METHODS.get(method).capabilities


def _extractor_of(method: str) -> str | None:
    """The feature method whose checkpoint a run of ``method`` alone looks up (None: itself or none)."""
    name = feature_method((method,))
    return None if name == method or not _translates(method) else name


# ---------------------------------------------------------------- the spec and its cells

def spec_from_args(args: argparse.Namespace, *, together: bool = False) -> dict[str, Any]:
    """The grid's spec (what grid.json stores and a resubmission rebuilds every cell from);
    ``together``: one cell runs every method of a (seed, dataset), as ``run --seeds`` does."""
    from harness.data.commands import resolve_profile
    from harness.data.sources import named_entry, pick_dataset

    if not args.all and not args.method:
        raise ValueError("choose the methods: --all or --method NAME (see `python -m harness list`)")
    if not args.seeds:
        raise ValueError("choose the seeds: --seeds N [N ...]")
    if args.train_seeds is not None and args.train_seeds < 2:
        raise ValueError(f"--train-seeds {args.train_seeds}: give K >= 2 trainings per split (one is the ordinary run)")
    methods = tuple(METHODS.names()) if args.all else tuple(dict.fromkeys(args.method))
    for name in methods:
        METHODS.get(name)  # unknown names fail here, with a did-you-mean hint
    datasets: list[Any] = []
    entries = args.data or [None]
    named = [(e, pair) for e in entries if e is not None and (pair := named_entry(e)) is not None]
    for data in [e for e in entries if e not in dict(named)]:
        if data in (None, "embedded", EMBEDDED):
            datasets.append(None)
        elif not Path(data).expanduser().exists():
            raise FileNotFoundError(f"--data {data!r}: no such folder")
        else:
            datasets.append(str(Path(data).expanduser().resolve()))
        pick_dataset(datasets[-1], args.dataset)  # no data source, or several: fail before anything is submitted
    if named:  # every NAME=PATH together: one cohort of several sources
        for entry, (_, path) in named:
            if not Path(path).expanduser().exists():
                raise FileNotFoundError(f"--data {entry!r}: no such folder")
            pick_dataset(path, args.dataset)
        datasets.append(tuple(f"{name}={Path(path).expanduser().resolve()}" for _, (name, path) in named))
    resolve_profile(args)  # bad --set / --config / --profile fail now, before anything is submitted
    return {"methods": list(methods), "seeds": list(dict.fromkeys(args.seeds)), "datasets": list(dict.fromkeys(datasets)),
            "dataset": args.dataset,
            "profile": args.profile, "overrides": list(args.overrides), "config": args.config,
            "device": args.device, "inception_weights": args.inception_weights,
            "runs_dir": str(Path(args.output).resolve()), "together": together, "train_seeds": args.train_seeds}


def train_seeds(spec: dict[str, Any], seed: int) -> list[int | None]:
    """The train seeds of ``seed``'s cells: None (the ordinary run), then ``seed + 1000 j``."""
    k = spec.get("train_seeds") or 1
    return [None, *(seed + TRAIN_SEED_STRIDE * j for j in range(1, k))]


def grid_cells(spec: dict[str, Any]) -> list[Cell]:
    """Every cell of the grid, plus an extractor cell per (seed, dataset) when a method translates
    and the grid does not list the feature method those cells look up."""
    datasets = [tuple(d) if isinstance(d, list) else d for d in spec["datasets"]]  # a cohort: JSON stores a list
    runs = [(d, s, t) for d in datasets for s in spec["seeds"] for t in train_seeds(spec, s)]
    if spec.get("together"):  # one run of every method per (seed, dataset), as ``run`` makes it
        return [Cell(tuple(spec["methods"]), s, d, train_seed=t) for d, s, t in runs]
    cells = [Cell((m,), s, d, train_seed=t) for d, s, t in runs for m in spec["methods"]]
    for extra in dict.fromkeys(_extractor_of(m) for m in spec["methods"]):
        if extra is not None and extra not in spec["methods"]:
            cells += [Cell((extra,), s, d, role="extractor", train_seed=t) for d, s, t in runs]
    return cells


def cell_config(spec: dict[str, Any], cell: Cell) -> RunConfig:
    """The cell's run config: its one method, with the settings of every method of the grid (and of
    the feature method), so that it loads images as one run of all of them would."""
    from harness.data.commands import resolve_profile
    from harness.data.sources import data_specs

    profile = resolve_profile(SimpleNamespace(profile=spec["profile"], overrides=spec["overrides"], config=spec["config"]))
    names = list(spec["methods"])
    if any(_translates(m) for m in names):  # what one run of them all adds, and what a cell looks up
        names += [n for n in (feature_method(tuple(names)), *map(_extractor_of, names)) if n is not None]
    return RunConfig(profile=profile, seed=cell.seed, train_seed=cell.train_seed,
                     data=data_specs(cell.data, spec.get("dataset"), profile),
                     methods=cell.methods, device=spec["device"],
                     output=spec["runs_dir"], inception_weights=spec["inception_weights"],
                     method_settings=resolve_method_settings(profile, tuple(dict.fromkeys([*cell.methods, *names]))))


# ---------------------------------------------------------------- one cell, in its job

def run_cell(job: CellJob) -> dict[str, Any]:
    """Run (or continue) one cell's run, record its run id in ``cells/<key>.json`` and, for the
    feature method, publish its checkpoint to the MRI-reference cache. Runs in the job's process."""
    from harness.runner import Runner

    os.environ["HARNESS_CACHE"] = job.cache  # every cell reads and writes one cache
    config = config_from_dict(job.config)
    folder = info = None
    if job.resume_run:
        folder = RunFolder.open(config.output, job.resume_run)
        info = folder.read_run()
    runner = Runner(config, DataLayer.default(), progress=job.progress)
    record: dict[str, Any] = {"key": job.cell.key, "run_id": job.resume_run, "status": "failed", "error": None}
    try:
        runner.execute(folder, info)
    except BaseException as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if getattr(runner, "folder", None) is not None:
            record["run_id"] = runner.folder.run_id
            record["status"] = runner.info.get("status", "failed")
            failed = [f"{n}: {m['error']}" for n, m in runner.info.get("methods", {}).items() if m.get("error")]
            record["error"] = record["error"] or ("; ".join(failed) or None)
        record["finished"] = utc_now().isoformat()
        atomic_write_json(Path(job.grid_dir) / "cells" / f"{job.cell.key}.json", record)
    if job.publish and record["status"] == "complete":
        _publish_feature_checkpoint(runner, job.cell.method)
    return record


def _publish_feature_checkpoint(runner: Any, method: str) -> None:
    entry = runner.info["methods"][method]
    if not entry.get("checkpoint"):
        return
    source = runner.folder.path / entry["checkpoint"]
    target = reference_file(method, runner.config.method_settings[method], split_hash=runner.split_hash,
                            seed=runner.config.training_seed, profile=runner.config.profile.name)
    atomic_copy(source, target)


# ---------------------------------------------------------------- submitting

def _executor(kind: str, folder: Path, profile: str, args: argparse.Namespace) -> Any:
    import submitit

    defaults = PROFILE_RESOURCES.get(profile, PROFILE_RESOURCES["quick"])
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=None if kind == "auto" else kind)
    gpus = args.gpus
    if gpus is None:
        gpus = 1 if executor.cluster == "slurm" else 0  # one GPU per cell on Slurm
    params: dict[str, Any] = {"name": "harness-grid", "gpus_per_node": gpus, "tasks_per_node": 1,
                              "timeout_min": args.timeout_min or defaults["timeout_min"],
                              "cpus_per_task": args.cpus or defaults["cpus"], "mem_gb": args.mem_gb or defaults["mem_gb"]}
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.array_parallelism:
        params["slurm_array_parallelism"] = args.array_parallelism
    executor.update_parameters(**params)
    return executor


def _todo(cells: list[Cell], grid_dir: Path, runs_dir: Path) -> list[tuple[Cell, str | None]]:
    """Cells without a complete run, each with the unfinished run to continue (None: a new run)."""
    out = []
    for cell in cells:
        record = _read_json(grid_dir / "cells" / f"{cell.key}.json")
        run_id = record.get("run_id")
        if run_id and (runs_dir / run_id / "run.json").is_file():
            if RunFolder(runs_dir / run_id).read_run().get("status") == "complete":
                continue
            out.append((cell, run_id))
        else:
            out.append((cell, None))
    return out


def submit(spec: dict[str, Any], grid_dir: Path, args: argparse.Namespace) -> list[Any]:
    """Submit the grid's missing and failed cells as job arrays; translating cells after the
    feature-method cells (a Slurm dependency; locally, after waiting for them). Returns the jobs."""
    runs_dir = Path(spec["runs_dir"])
    cells = grid_cells(spec)
    todo = _todo(cells, grid_dir, runs_dir)
    grid = _read_json(grid_dir / "grid.json") or {"schema_version": SCHEMA_VERSION, "grid_id": grid_dir.name,
                                                  "created": utc_now().isoformat(), "spec": spec, "submissions": []}
    grid["cells"] = [{"key": c.key, "method": c.method, "methods": list(c.methods), "seed": c.seed,
                      "train_seed": c.train_seed, "dataset": c.dataset, "role": c.role} for c in cells]
    if not todo:
        atomic_write_json(grid_dir / "grid.json", grid)
        print(f"grid {grid_dir.name}: every cell is complete; nothing to submit")
        return []
    if args.executor == "inline":
        return _run_inline(spec, grid, grid_dir, todo, progress=not getattr(args, "no_progress", True))
    executor = _executor(args.executor, grid_dir / "submitit", spec["profile"], args)
    publishers = {c for c in cells if c.method in set(map(_extractor_of, spec["methods"]))}
    jobs_of = {}

    def send(batch: list[tuple[Cell, str | None]]) -> list[Any]:
        payload = [CellJob(c, cell_config(spec, c).to_dict(), str(grid_dir), str(cache_root().resolve()), run,
                           c in publishers) for c, run in batch]
        jobs = executor.map_array(run_cell, payload) if payload else []
        jobs_of.update({c.key: j for (c, _), j in zip(batch, jobs)})
        return jobs

    first = send([t for t in todo if not _translates(t[0].method)])
    second = [t for t in todo if _translates(t[0].method)]
    if second and first:
        if executor.cluster == "slurm":
            ids = sorted({str(j.job_id).split("_")[0] for j in first})
            executor.update_parameters(slurm_additional_parameters={"dependency": "afterany:" + ":".join(ids)})
        else:
            _wait(first)
    send(second)
    grid["submissions"].append({"time": utc_now().isoformat(), "executor": executor.cluster,
                                "cells": {k: {"job_id": str(j.job_id), "stdout": str(j.paths.stdout),
                                              "stderr": str(j.paths.stderr)} for k, j in jobs_of.items()}})
    atomic_write_json(grid_dir / "grid.json", grid)
    print(f"grid {grid_dir.name}: submitted {len(jobs_of)} of {len(cells)} cells ({executor.cluster})")
    return list(jobs_of.values())


def _run_inline(spec: dict[str, Any], grid: dict[str, Any], grid_dir: Path, todo: list[tuple[Cell, str | None]],
                progress: bool) -> list[Any]:
    """Run the cells in this process, one after another, with no job machinery: ``run --seeds``.
    An error that stops a run (bad data, Ctrl-C) stops the loop and reaches the caller."""
    grid["submissions"].append({"time": utc_now().isoformat(), "executor": "inline",
                                "cells": {c.key: {"job_id": None, "stdout": None, "stderr": None} for c, _ in todo}})
    atomic_write_json(grid_dir / "grid.json", grid)
    for cell, run in todo:
        run_cell(CellJob(cell, cell_config(spec, cell).to_dict(), str(grid_dir), str(cache_root().resolve()), run,
                         progress=progress))
    return []


def _wait(jobs: list[Any]) -> None:
    """Block until the jobs end; a failed job is reported by collection, with its log."""
    for job in jobs:
        try:
            job.result()
        except Exception:  # recorded in cells/<key>.json and the job's log; collect shows both
            pass


# ---------------------------------------------------------------- collecting

def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _log_of(cell: dict[str, Any], grid: dict[str, Any]) -> str | None:
    """The cell's newest job's stderr (submitit's log of the job)."""
    for submission in reversed(grid.get("submissions", [])):
        if cell["key"] in submission["cells"]:
            return submission["cells"][cell["key"]]["stderr"]  # None for in-process cells
    return None


def collect(grid_dir: Path) -> dict[str, Any]:
    """Read every cell's run back into grid.json: cells -> run ids and status (a failed cell with
    its error and log), the table (method x seed, mean ± sd per dataset and metric, training and
    split noise apart, the share of the floor-to-ceiling gap) and the paired differences between
    methods of the same (seed, dataset), whose cells share a split, tested across seeds."""
    grid = _read_json(grid_dir / "grid.json")
    if not grid:
        raise FileNotFoundError(f"no grid at {grid_dir} (no grid.json)")
    runs_dir = Path(grid["spec"]["runs_dir"])
    done: dict[str, list[tuple[dict, list[dict]]]] = {}
    splits: dict[tuple[str, int], set[str]] = {}
    infos: dict[str, MetricInfo] = {}
    for cell in grid["cells"]:
        record = _read_json(grid_dir / "cells" / f"{cell['key']}.json")
        cell.update(run_id=record.get("run_id"), status="missing" if not record else record.get("status"),
                    error=record.get("error"), log=_log_of(cell, grid), split_hash=None)
        path = runs_dir / str(cell["run_id"])
        if cell["run_id"] and (path / "run.json").is_file():
            folder = RunFolder(path)
            info = folder.read_run()
            cell.update(status=info.get("status"), split_hash=(info.get("split") or {}).get("hash"),
                        run_log=str(folder.file("log.txt")))
            if cell["split_hash"]:
                splits.setdefault((cell["dataset"], cell["seed"]), set()).add(cell["split_hash"])
            if cell["status"] == "complete" and cell["role"] == "cell":
                # the cell's method(s), and the shortcut floors (the same in every cell of a run) once
                unit = (info["seed"], train_seed_of(info))
                floor = not any((i["seed"], train_seed_of(i)) == unit for i, _ in done.get(cell["dataset"], []))
                mine = set(cell.get("methods") or [cell["method"]])
                rows = [r for r in folder.read_metrics()  # a cell's method brings its variants (dae+tuned)
                        if split_variant(r["method"])[0] in mine or (floor and r["method"] in FLOOR_METHODS)]
                done.setdefault(cell["dataset"], []).append((info, rows))
                infos = merge_infos(infos, folder.read_metric_infos())
    infos = with_seed_pairs(infos)  # localisation and per-volume metrics: paired across seeds only
    grid["metrics"] = infos_to_document(infos.values())  # the runs' metric titles, digits and directions
    grid["warnings"] = [f"{d} seed {s}: the cells' split hashes differ ({', '.join(sorted(h))}); their "
                        f"results are not comparable" for (d, s), h in splits.items() if len(h) > 1]
    grid["gap"] = {"floor": FLOOR, "ceiling": CEILING, "ci": SHARE_CI}  # what each table's ``share`` reads against
    grid["table"], grid["paired"] = [], []
    for dataset, group in done.items():
        mixed = {s for (d, s), h in splits.items() if d == dataset and len(h) > 1}
        same_split = [(info, rows) for info, rows in group if info["seed"] not in mixed]  # comparable seeds
        shares = gap_shares(spread(same_split, infos), infos)
        for item in spread(group, infos):
            share = shares.get((item.method, item.metric))
            grid["table"].append({"dataset": dataset, "method": item.method, "metric": item.metric,
                                  "seeds": list(item.seeds), "values": list(item.values), "mean": item.mean,
                                  "sd": item.sd, "text": format_spread(item, infos[item.metric].digits),
                                  "trainings": [list(t) for t in item.trainings], "train_sd": item.train_sd,
                                  "split_sd": item.split_sd, "share": share.to_dict() if share else None})
        pairs = paired_spread(same_split, infos)
        for item, test in zip(pairs, seed_tests(pairs)):
            grid["paired"].append({"dataset": dataset, "method": item.method, "other": item.other,
                                   "metric": item.metric, "seeds": list(item.seeds), "values": list(item.values),
                                   "mean": item.mean, "sd": item.sd, "agree": item.agree,
                                   "exploratory": item.exploratory, **test.to_dict()})
    grid["collected"] = utc_now().isoformat()
    atomic_write_json(grid_dir / "grid.json", grid)
    return grid


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def _share(share: dict[str, Any] | None) -> str:
    """``mean [low, high] (n=seeds, k without a gap)``: the share of the floor-to-ceiling gap."""
    if not share:
        return "-"
    ci = "" if share["ci_low"] is None else f" [{share['ci_low']:.2f}, {share['ci_high']:.2f}]"
    left_out = f", {len(share['excluded'])} without a gap" if share["excluded"] else ""
    return f"{share['mean']:.2f}{ci} (n={len(share['values'])}{left_out})"


def _metric_table(grid: dict[str, Any], dataset: str, metric: str, info: MetricInfo | None) -> str:
    """Methods x seeds with the spread; split and training noise apart when a seed was trained
    more than once; each method's share of the floor-to-ceiling gap where both are present."""
    rows = [r for r in grid["table"] if r["dataset"] == dataset and r["metric"] == metric]
    seeds, digits = grid["spec"]["seeds"], info.digits if info else 3
    trained = any(r.get("train_sd") is not None for r in rows)
    shared = any(r.get("share") for r in rows)
    gap = grid.get("gap") or {}
    header = ["method", *(f"seed {s}" for s in seeds), "mean ± sd (min-max)"]
    header += ["split sd", "train sd"] if trained else []
    header += [f"share of {gap.get('floor')}->{gap.get('ceiling')} gap [{gap.get('ci', 0.95):.0%} CI]"] if shared else []
    table = []
    for r in rows:
        by_seed = dict(zip(r["seeds"], r["values"]))
        line = [r["method"], *(f"{by_seed[s]:.{digits}f}" if s in by_seed else "-" for s in seeds), r["text"]]
        line += [_num(r.get("split_sd"), digits), _num(r.get("train_sd"), digits)] if trained else []
        line += [_share(r.get("share"))] if shared else []
        table.append(line)
    title = f"{dataset}, test {info.title if info else metric}"
    if trained:
        title += " (each seed: the mean of its trainings; split sd: between splits, training noise removed)"
    return text_table(header, table, title=title + ":", rule=False)


def _paired_table(pairs: list[dict[str, Any]], infos: dict[str, MetricInfo], title: str) -> str:
    rows = [[p["dataset"], p["method"], p["other"], infos[p["metric"]].title if p["metric"] in infos else p["metric"],
             f"{p['mean']:+.3f}" + ("" if p["sd"] is None else f" ± {p['sd']:.3f}"),
             f"{p['agree']}/{len(p['values'])}", p["n"], _p(p["wilcoxon_p"]),
             _p(p["wilcoxon_p_holm"]), _p(p["t_p"]), " ".join(f"{v:+.3f}" for v in p["values"])]
            for p in pairs]
    header = ["dataset", "method", "minus", "metric", "mean ± sd", "same sign", "n seeds", "Wilcoxon p", "Holm",
              "t p", "per seed"]
    return text_table(header, rows, title=title, rule=False)


def grid_table(grid: dict[str, Any]) -> str:
    """Plain text: per dataset and metric, methods x seeds with mean ± sd (and the noise
    decomposition, the gap share); the across-seed paired tests; failed cells."""
    lines = [f"grid {grid['grid_id']}: {sum(c['status'] == 'complete' for c in grid['cells'])} of "
             f"{len(grid['cells'])} cells complete"]
    infos = infos_from_document(grid)  # an older grid.json without them: the schema-1 built-ins
    for dataset in dict.fromkeys(r["dataset"] for r in grid["table"]):
        for metric in dict.fromkeys(r["metric"] for r in grid["table"]):
            lines += ["", _metric_table(grid, dataset, metric, infos.get(metric))]
    reference = [p for p in grid["paired"] if not p.get("exploratory")]
    exploratory = [p for p in grid["paired"] if p.get("exploratory")]
    if reference:
        lines += ["", _paired_table(reference, infos, "across seeds, each method minus the fixed references (the "
                                    "primary test: per-seed differences on the same test images; Holm over each "
                                    "metric's references):")]
    if exploratory:
        lines += ["", _paired_table(exploratory, infos, "exploratory pairs (winner first; not corrected for "
                                    "multiplicity):")]
    lines += [f"note: {n}" for n in dict.fromkeys(p["floor_note"] for p in grid["paired"] if p.get("floor_note"))]
    lines += [f"note: {p['method']} - {p['other']} ({p['metric']}, {p['dataset']}): {p['note']}"
              for p in grid["paired"] if p.get("note")]
    lines += [f"warning: {w}" for w in grid.get("warnings", [])]
    for cell in grid["cells"]:
        if cell["status"] != "complete":
            lines.append(f"{cell['key']}: {cell['status']}" + (f": {cell['error']}" if cell.get("error") else ""))
            for log in (cell.get("run_log"), cell.get("log")):
                if log and Path(log).is_file():
                    tail = Path(log).read_text(errors="replace").splitlines()[-8:]
                    lines += [f"  {log}:", *(f"    {t}" for t in tail)]
    return "\n".join(lines)


# ---------------------------------------------------------------- the command

def new_grid_dir(spec: dict[str, Any], output: str | Path) -> Path:
    """A new, empty grid folder under ``<output>/grids/``, named by time and the spec's hash."""
    blob = json.dumps(spec, sort_keys=True).encode()
    grid_dir = Path(output) / "grids" / f"{utc_now():%Y%m%d-%H%M%S}-{hashlib.sha256(blob).hexdigest()[:8]}"
    grid_dir.mkdir(parents=True)
    return grid_dir


def grid_command(args: argparse.Namespace) -> int:
    """``python -m harness grid {run,collect}``; exit 1 when a cell is not complete."""
    grids = Path(args.output) / "grids"
    if args.grid_command == "collect":
        grid = collect(grids / args.grid_id)
    else:
        if args.grid:
            given = [o for o in ("all", "method", "seeds", "train_seeds", "data", "dataset", "overrides", "config")
                     if getattr(args, o)]
            if given:
                raise ValueError(f"--grid {args.grid} resubmits the stored grid: drop {', '.join(given)}")
            grid_dir = grids / args.grid
            spec = _read_json(grid_dir / "grid.json").get("spec")
            if spec is None:
                raise FileNotFoundError(f"no grid {args.grid!r} in {grids}")
        else:
            spec = spec_from_args(args)
            grid_dir = new_grid_dir(spec, args.output)
        jobs = submit(spec, grid_dir, args)
        if args.no_wait and jobs:
            print(f"collect with: python -m harness grid collect {grid_dir.name} --output {args.output}")
            return 0
        _wait(jobs)
        grid = collect(grid_dir)
    print(grid_table(grid))
    print(f"grid folder: {grids / grid['grid_id']}")
    return 0 if all(c["status"] == "complete" for c in grid["cells"]) else 1

