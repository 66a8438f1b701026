"""Grids: each (method, seed, dataset) cell as an independent job through submitit, read back as one table.

Why: a lab's grid (5 seeds x every method x two datasets) is more GPU hours than one machine has;
Slurm spreads it over nodes, and submitit is the maintained way to send Python functions to Slurm
as job arrays. The same jobs run as local processes (``LocalExecutor``) or in-process
(``DebugExecutor``) on one machine and in the tests.

A cell is one ordinary run (``<output>/<run_id>/``) of one method. The cells of one (seed, dataset)
are what one run of all the grid's methods would have been:

- the split depends on data, seed and split settings only, so they share it (collection checks
  that their split hashes agree);
- every cell's config carries the settings of all the grid's methods (and of the MRI feature
  method when one translates), so the runner loads images at the size that run would use;
- translating cells run after the feature-method cell of their (seed, dataset), whose checkpoint
  is copied to the MRI-reference cache entry the runner looks up (:func:`mri_reference.reference_file`):
  they use that very file, as the run of all methods uses its own feature method's checkpoint.
  When the grid does not list the feature method it gets an ``extractor`` cell, kept out of the table.

``<output>/grids/<grid_id>/`` holds ``grid.json`` (spec, submissions, cells -> run ids and
status, the table), ``cells/<key>.json`` (what each cell job recorded) and ``submitit/`` (logs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from harness.config import RunConfig, resolve_method_settings
from harness.mri_reference import cache_root, feature_method, reference_file
from harness.registry import METHODS
from harness.results import FLOOR_METHOD, RunFolder, atomic_write_json, utc_now
from harness.seed_summary import format_spread, paired_spread, spread

SCHEMA_VERSION = 1
EMBEDDED = "mni152-lesions"
EXECUTORS = ("auto", "slurm", "local", "debug")
# per-cell resources by profile (Slurm); one GPU per cell unless --gpus says otherwise
PROFILE_RESOURCES = {"smoke": {"timeout_min": 30, "cpus": 2, "mem_gb": 8},
                     "quick": {"timeout_min": 120, "cpus": 4, "mem_gb": 16},
                     "paper": {"timeout_min": 24 * 60, "cpus": 8, "mem_gb": 48}}


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int
    data: str | None  # None: the embedded cohort
    role: str = "cell"  # "extractor": the MRI feature method for translating cells, not in the table

    @property
    def dataset(self) -> str:
        return self.data or EMBEDDED

    @property
    def key(self) -> str:
        tag = "embedded" if self.data is None else hashlib.sha256(self.data.encode()).hexdigest()[:8]
        return f"{self.method}-seed{self.seed}-{tag}"


@dataclass(frozen=True)
class CellJob:
    """What one job receives (pickled by submitit)."""

    cell: Cell
    config: dict[str, Any]
    grid_dir: str
    cache: str
    resume_run: str | None = None  # an earlier, unfinished run of this cell to continue
    publish: bool = False  # copy the checkpoint to the MRI-reference cache for translating cells


def _translates(method: str) -> bool:
    return "translates" in METHODS.get(method).capabilities


def _extractor_of(method: str) -> str | None:
    """The feature method whose checkpoint a run of ``method`` alone looks up (None: itself or none)."""
    name = feature_method((method,))
    return None if name == method or not _translates(method) else name


# ---------------------------------------------------------------- the spec and its cells

def spec_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The grid's spec (what grid.json stores and a resubmission rebuilds every cell from)."""
    from harness.data.commands import resolve_profile

    if not args.all and not args.method:
        raise ValueError("choose the methods: --all or --method NAME (see `python -m harness list`)")
    if not args.seeds:
        raise ValueError("choose the seeds: --seeds N [N ...]")
    methods = tuple(METHODS.names()) if args.all else tuple(dict.fromkeys(args.method))
    for name in methods:
        METHODS.get(name)  # unknown names fail here, with a did-you-mean hint
    datasets = []
    for data in args.data or [None]:
        if data in (None, "embedded", EMBEDDED):
            datasets.append(None)
        elif not Path(data).expanduser().is_dir():
            raise FileNotFoundError(f"--data {data!r}: no such folder")
        else:
            datasets.append(str(Path(data).expanduser().resolve()))
    resolve_profile(args)  # bad --set / --config / --profile fail now, before anything is submitted
    return {"methods": list(methods), "seeds": list(dict.fromkeys(args.seeds)), "datasets": list(dict.fromkeys(datasets)),
            "profile": args.profile, "overrides": list(args.overrides), "config": args.config,
            "device": args.device, "inception_weights": args.inception_weights,
            "runs_dir": str(Path(args.output).resolve())}


def grid_cells(spec: dict[str, Any]) -> list[Cell]:
    """Every cell of the grid, plus an extractor cell per (seed, dataset) when a method translates
    and the grid does not list the feature method those cells look up."""
    cells = [Cell(m, s, d) for d in spec["datasets"] for s in spec["seeds"] for m in spec["methods"]]
    for extra in dict.fromkeys(_extractor_of(m) for m in spec["methods"]):
        if extra is not None and extra not in spec["methods"]:
            cells += [Cell(extra, s, d, role="extractor") for d in spec["datasets"] for s in spec["seeds"]]
    return cells


def cell_config(spec: dict[str, Any], cell: Cell) -> RunConfig:
    """The cell's run config: its one method, with the settings of every method of the grid (and of
    the feature method), so that it loads images as one run of all of them would."""
    from harness.data.commands import resolve_profile

    profile = resolve_profile(SimpleNamespace(profile=spec["profile"], overrides=spec["overrides"], config=spec["config"]))
    names = list(spec["methods"])
    if any(_translates(m) for m in names):  # what one run of them all adds, and what a cell looks up
        names += [n for n in (feature_method(tuple(names)), *map(_extractor_of, names)) if n is not None]
    return RunConfig(profile=profile, seed=cell.seed, data=cell.data, methods=(cell.method,), device=spec["device"],
                     output=spec["runs_dir"], inception_weights=spec["inception_weights"],
                     method_settings=resolve_method_settings(profile, tuple(dict.fromkeys([cell.method, *names]))))


# ---------------------------------------------------------------- one cell, in its job

def run_cell(job: CellJob) -> dict[str, Any]:
    """Run (or continue) one cell's run, record its run id in ``cells/<key>.json`` and, for the
    feature method, publish its checkpoint to the MRI-reference cache. Runs in the job's process."""
    from harness.runner import DataLayer, Runner, config_from_dict

    os.environ["HARNESS_CACHE"] = job.cache  # every cell reads and writes one cache
    config = config_from_dict(job.config)
    folder = info = None
    if job.resume_run:
        folder = RunFolder.open(config.output, job.resume_run)
        info = folder.read_run()
    runner = Runner(config, DataLayer.default(), progress=False)
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
                            seed=runner.config.seed, profile=runner.config.profile.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


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
    grid["cells"] = [{"key": c.key, "method": c.method, "seed": c.seed, "dataset": c.dataset, "role": c.role}
                     for c in cells]
    if not todo:
        atomic_write_json(grid_dir / "grid.json", grid)
        print(f"grid {grid_dir.name}: every cell is complete; nothing to submit")
        return []
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
            return submission["cells"][cell["key"]]["stderr"]
    return None


def collect(grid_dir: Path) -> dict[str, Any]:
    """Read every cell's run back into grid.json: cells -> run ids and status (a failed cell with
    its error and log), the table (method x seed, mean ± sd per dataset and metric) and the paired
    differences between methods of the same (seed, dataset), whose cells share a split."""
    grid = _read_json(grid_dir / "grid.json")
    if not grid:
        raise FileNotFoundError(f"no grid at {grid_dir} (no grid.json)")
    runs_dir = Path(grid["spec"]["runs_dir"])
    done: dict[str, list[tuple[dict, list[dict], RunFolder]]] = {}
    splits: dict[tuple[str, int], set[str]] = {}
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
                # the cell's method, and the shortcut floor (the same in every cell of a split) once
                floor = not any(i["seed"] == cell["seed"] for i, _, _ in done.get(cell["dataset"], []))
                rows = [r for r in folder.read_metrics()
                        if r["method"] == cell["method"] or (floor and r["method"] == FLOOR_METHOD)]
                done.setdefault(cell["dataset"], []).append((info, rows, folder))
    grid["warnings"] = [f"{d} seed {s}: the cells' split hashes differ ({', '.join(sorted(h))}); their "
                        f"results are not comparable" for (d, s), h in splits.items() if len(h) > 1]
    grid["table"], grid["paired"] = [], []
    for dataset, runs in done.items():
        for item in spread([(info, rows) for info, rows, _ in runs]):
            grid["table"].append({"dataset": dataset, "method": item.method, "metric": item.metric,
                                  "seeds": list(item.seeds), "values": list(item.values), "mean": item.mean,
                                  "sd": item.sd, "text": format_spread(item)})
        for item in paired_spread(_paired_per_seed(runs)):
            grid["paired"].append({"dataset": dataset, "method": item.method, "other": item.other,
                                   "metric": item.metric, "seeds": list(item.seeds), "values": list(item.values),
                                   "mean": item.mean, "sd": item.sd, "agree": item.agree})
    grid["collected"] = utc_now().isoformat()
    atomic_write_json(grid_dir / "grid.json", grid)
    return grid


def _paired_per_seed(runs: list[tuple[dict, list[dict], RunFolder]]) -> list[tuple[dict, list[dict]]]:
    """Per seed, the cells' test scores paired image by image (the cells share the split), as the
    paired rows one run of all the methods would have."""
    from harness.metrics.paired import paired_rows

    out = []
    for seed in sorted({info["seed"] for info, _, _ in runs}):
        same = [(info, folder) for info, _, folder in runs if info["seed"] == seed]
        if len(same) < 2 or len({info["split"]["hash"] for info, _ in same}) > 1:
            continue
        scores = pd.concat([folder.read_scores() for _, folder in same], ignore_index=True)
        manifest = pd.read_csv(same[0][1].file("split.csv"), dtype=str)
        metrics = SimpleNamespace(**same[0][0]["config"]["profile"]["metrics"])
        rows = paired_rows(scores, dict(zip(manifest["path"], manifest["subject"])), metrics, seed)
        out.append(({"seed": seed}, rows))
    return out


def grid_table(grid: dict[str, Any]) -> str:
    """Plain text: per dataset and metric, methods x seeds with mean ± sd; paired Δ; failed cells."""
    lines = [f"grid {grid['grid_id']}: {sum(c['status'] == 'complete' for c in grid['cells'])} of "
             f"{len(grid['cells'])} cells complete"]
    seeds = grid["spec"]["seeds"]
    for dataset in dict.fromkeys(r["dataset"] for r in grid["table"]):
        for metric in dict.fromkeys(r["metric"] for r in grid["table"]):
            rows = [r for r in grid["table"] if r["dataset"] == dataset and r["metric"] == metric]
            table = [["method", *(f"seed {s}" for s in seeds), "mean ± sd (min-max)"]]
            for r in rows:
                by_seed = dict(zip(r["seeds"], r["values"]))
                table.append([r["method"], *(f"{by_seed[s]:.3f}" if s in by_seed else "-" for s in seeds), r["text"]])
            widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
            lines += ["", f"{dataset}, test {metric.upper()}:",
                      *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)]
    for p in grid["paired"]:
        sd = "" if p["sd"] is None else f" ± {p['sd']:.3f}"
        lines.append(f"{p['dataset']}: {p['method']} - {p['other']} {p['metric']} {p['mean']:+.3f}{sd}, "
                     f"same sign on {p['agree']}/{len(p['values'])} seeds")
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

def grid_command(args: argparse.Namespace) -> int:
    """``python -m harness grid {run,collect}``; exit 1 when a cell is not complete."""
    grids = Path(args.output) / "grids"
    if args.grid_command == "collect":
        grid = collect(grids / args.grid_id)
    else:
        if args.grid:
            given = [o for o in ("all", "method", "seeds", "data", "overrides", "config") if getattr(args, o)]
            if given:
                raise ValueError(f"--grid {args.grid} resubmits the stored grid: drop {', '.join(given)}")
            grid_dir = grids / args.grid
            spec = _read_json(grid_dir / "grid.json").get("spec")
            if spec is None:
                raise FileNotFoundError(f"no grid {args.grid!r} in {grids}")
        else:
            spec = spec_from_args(args)
            blob = json.dumps(spec, sort_keys=True).encode()
            grid_dir = grids / f"{utc_now():%Y%m%d-%H%M%S}-{hashlib.sha256(blob).hexdigest()[:8]}"
            grid_dir.mkdir(parents=True)
        jobs = submit(spec, grid_dir, args)
        if args.no_wait and jobs:
            print(f"collect with: python -m harness grid collect {grid_dir.name} --output {args.output}")
            return 0
        _wait(jobs)
        grid = collect(grid_dir)
    print(grid_table(grid))
    print(f"grid folder: {grids / grid['grid_id']}")
    return 0 if all(c["status"] == "complete" for c in grid["cells"]) else 1

