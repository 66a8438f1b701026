"""``python -m harness run``: one run = data -> split -> EDA -> each method -> metrics -> results.

A failing method is recorded (status, error, traceback) and the others still run; the command
then exits with 1. Ctrl-C or SIGTERM leaves the run "interrupted" (a hard kill leaves it
"running"); ``--resume RUN_ID`` reloads its config, keeps the methods that completed and
re-runs the others with ``ctx.resume=True`` so they continue from their last checkpoint.
Every method starts from ``seed_everything(seed)``, so its numbers do not depend on which
methods ran before it; same seed + same device -> the same scores.csv. Methods run in the
order given (``--all``: registry order), except that translating methods run last so that
their MRI-domain FID/KID can use the ResNet18 trained earlier in the same run.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness import distributed
from harness.api import FitContext, ImageSet, Method
from harness.config import RunConfig, resolve_method_settings
from harness.data.input_audit import axial_positions
from harness.evaluate import (FLOOR_METHOD, check_output, comparison_rows, detection_rows, example_arrays,
                              is_comparison_row, pixel_rows, score_frame, stratum_rows, translate_test)
from harness.hashing import file_sha256
from harness.metrics.feature_spaces import MRIExtractor
from harness.metrics.fid_probe import MRIFidProbe
from harness.metrics.generative import Translations, evaluate_generative
from harness.metrics.subject_halves import subject_groups
from harness.mri_reference import cache_root, dedicated_checkpoint, feature_method
from harness.registry import METHODS
from harness.results import SCORES_COLUMNS, RunFolder, utc_now
from harness.run_env import capture_environment
from harness.seed_summary import format_spread, paired_spread, paired_table, spread
from harness.training import choose_device, seed_everything

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@dataclass(frozen=True)
class DataLayer:
    """The data functions the runner calls; swappable so the runner can be tested alone."""

    open_dataset: Callable[..., Any]
    make_split: Callable[..., Any]
    load_imageset: Callable[..., ImageSet]
    run_eda: Callable[..., dict]

    @classmethod
    def default(cls) -> DataLayer:
        from harness.data.eda import run_eda
        from harness.data.loading import load_imageset
        from harness.data.sources import open_dataset
        from harness.data.splits import make_split

        return cls(open_dataset, make_split, load_imageset, run_eda)


# ---------------------------------------------------------------- config from the command line

def _config_from_args(args: argparse.Namespace, methods: tuple[str, ...]) -> RunConfig:
    from harness.data.commands import resolve_profile

    profile = resolve_profile(args)
    return RunConfig(profile=profile, seed=args.seed, data=args.data, methods=methods, device=args.device,
                     output=args.output, inception_weights=args.inception_weights,
                     method_settings=resolve_method_settings(profile, _with_feature_method(methods)))


def _with_feature_method(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The run's methods plus the MRI feature method when a method translates (its settings are
    part of the config: they decide the feature space the generative metrics are computed in)."""
    if not any("translates" in METHODS.get(n).capabilities for n in methods):
        return methods
    extra = feature_method(methods)
    return methods if extra is None or extra in methods else (*methods, extra)


def _selected_methods(args: argparse.Namespace) -> tuple[str, ...]:
    if args.all:
        names = METHODS.names()
        if not names:
            raise ValueError("no methods are registered (see `python -m harness list`)")
        return tuple(names)
    for name in args.method:
        METHODS.get(name)  # unknown names fail here, with a did-you-mean hint
    return tuple(dict.fromkeys(args.method))


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild the RunConfig stored in run.json."""
    try:
        return RunConfig.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"run.json holds a config this harness cannot read (written by another "
                         f"version?): {exc}") from None


_EXPLICIT = ("profile", "seed", "data", "overrides", "config", "device", "inception_weights")


def _resume_config(args: argparse.Namespace, stored: RunConfig, defaults: argparse.Namespace) -> RunConfig:
    """The stored config; explicit options that contradict it are refused, not silently ignored."""
    explicit = [k for k in _EXPLICIT if getattr(args, k, None) != getattr(defaults, k, None)]
    if args.all or args.method or explicit:
        methods = _selected_methods(args) if (args.all or args.method) else stored.methods
        given = _config_from_args(args, methods)
        mine = given.model_copy(update={"output": stored.output}).to_dict()
        theirs = stored.to_dict()
        if args.device == defaults.device:
            mine["device"] = theirs["device"]
        if not any(k in explicit for k in ("profile", "overrides", "config")):
            mine["profile"], mine["method_settings"] = theirs["profile"], theirs["method_settings"]
        for k in ("seed", "data", "inception_weights"):
            if k not in explicit:
                mine[k] = theirs[k]
        diff = sorted(k for k in theirs if mine.get(k) != theirs[k])
        if diff:
            raise ValueError(f"--resume {args.resume}: the options given differ from the run's stored "
                             f"config in {', '.join(diff)}; drop them to resume, or start a new run")
    return stored


# ---------------------------------------------------------------- the command

def run_command(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    """Entry point of ``python -m harness run``; returns the exit status (0 ok, 1 a method failed).
    ``defaults`` are the options' defaults, to tell what the user gave explicitly."""
    if distributed.launched():
        return _run_under_torchrun(args, defaults)
    if args.seeds:
        return _run_seeds(args, defaults)
    config, folder, info = _config_and_folder(args, defaults)
    runner = Runner(config, DataLayer.default(), progress=not args.no_progress)
    return runner.execute(folder, info)


def _config_and_folder(args: argparse.Namespace, defaults: argparse.Namespace,
                       ) -> tuple[RunConfig, RunFolder | None, dict[str, Any] | None]:
    """A new run's config (no folder yet), or the stored config, folder and run.json of ``--resume``."""
    if args.resume:
        folder = RunFolder.open(args.output, args.resume)
        info = folder.read_run()
        return _resume_config(args, config_from_dict(info["config"]), defaults), folder, info
    if not args.all and not args.method:
        raise ValueError("choose the methods: --all or --method NAME (see `python -m harness list`)")
    return _config_from_args(args, _selected_methods(args)), None, None


def _run_under_torchrun(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    """``torchrun ... -m harness run``: rank 0 runs the command as without torchrun and alone writes
    the run folder; it hands the other ranks the run (config, folder, split, methods to train) once
    its data are ready, and they join the training of each method with the ``distributed``
    capability (:meth:`Runner.follow`)."""
    if args.seeds:
        raise ValueError("--seeds is not supported under torchrun: start one torchrun job per seed, "
                         "or a grid (python -m harness grid run)")
    try:
        distributed.setup(choose_device(args.device))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    try:
        if not distributed.is_main():
            return Runner.follow(DataLayer.default())
        runner = None
        try:
            config, folder, info = _config_and_folder(args, defaults)
            runner = Runner(config, DataLayer.default(), progress=not args.no_progress)
            return runner.execute(folder, info)
        finally:
            if runner is None or not runner.plan_sent:
                distributed.broadcast(None)  # the other ranks wait for a plan: there is none
    finally:
        distributed.teardown()


def _run_seeds(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    """One new run per seed of ``--seeds``, then the spread across them; exit 1 if any failed."""
    if args.resume:
        raise ValueError("--seeds starts new runs; continue an interrupted one with --resume RUN_ID alone")
    if args.seed != defaults.seed:
        raise ValueError("give either --seed N or --seeds N [N ...], not both")
    if not args.all and not args.method:
        raise ValueError("choose the methods: --all or --method NAME (see `python -m harness list`)")
    methods = _selected_methods(args)
    finished, status = [], 0
    for seed in dict.fromkeys(args.seeds):
        config = _config_from_args(argparse.Namespace(**{**vars(args), "seed": seed}), methods)
        runner = Runner(config, DataLayer.default(), progress=not args.no_progress)
        status = max(status, runner.execute(None, None))
        finished.append((runner.info, runner.metrics))
    print(seed_spread_table(finished))
    return status


def seed_spread_table(runs: list[tuple[dict[str, Any], list[dict]]]) -> str:
    """Plain-text table of each method's test AUROC, AP, pixel AUROC and Dice over the complete runs' seeds."""
    complete = [(info, rows) for info, rows in runs if info.get("status") == "complete"]
    items = spread(complete)
    if not items:
        return "across seeds: no complete runs to summarise"
    lines = [["method", "metric", "seeds", "mean ± sd (min-max)", "per seed"]]
    for item in items:
        lines.append([item.method, item.metric, ",".join(map(str, item.seeds)), format_spread(item),
                      " ".join(f"{v:.3f}" for v in item.values)])
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(["across seeds (test split):", fmt.format(*lines[0]),
                      fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in lines[1:]),
                      "", paired_table(paired_spread(complete))])


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) unwinds like Ctrl-C, so the run is marked interrupted and resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_logger(folder: RunFolder) -> tuple[logging.Logger, list[logging.Handler]]:
    logger = logging.getLogger(f"harness.run.{folder.run_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    file_handler = logging.FileHandler(folder.file("log.txt"), mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [file_handler, console]
    for handler in handlers:
        logger.addHandler(handler)
    return logger, handlers


class Runner:
    """Executes one run (new or resumed) into its run folder."""

    def __init__(self, config: RunConfig, data: DataLayer, *, progress: bool = True,
                 argv: list[str] | None = None) -> None:
        self.config = config
        self.data = data
        self.progress = progress
        self.argv = argv
        try:
            self.device = distributed.setup(choose_device(config.device))  # cuda:LOCAL_RANK under torchrun
        except RuntimeError as exc:  # an unavailable device is a usage error, not a crash
            raise ValueError(str(exc)) from exc
        self.plan_sent = False  # under torchrun: the other ranks got this run's plan (_send_plan)
        self.folder: RunFolder
        self.info: dict[str, Any] = {}
        self.logger: logging.Logger = logging.getLogger("harness.run")
        self.resuming = False
        self.metrics: list[dict] = []
        self.scores = pd.DataFrame(columns=list(SCORES_COLUMNS))
        self.split_hash = ""
        self._opened: tuple[Any, Any] | None = None  # (data source, split), opened before the run folder
        self._data_timings: dict[str, float] = {}
        self.sets: dict[str, ImageSet] = {}
        self.strata: dict[str, str] = {}  # image id -> acquisition stratum ("" when unknown)
        self.subjects: dict[str, str] = {}  # image id -> subject (the id itself when unknown)
        self.groups: dict[str, str] = {}  # image id -> subject joined with its duplicate group
        self.positions: dict[str, float] = {}  # image id -> axial slice position, where recorded

    # -------------------------------------------------------------- orchestration
    def execute(self, folder: RunFolder | None, info: dict[str, Any] | None) -> int:
        seed_everything(self.config.seed)
        self.resuming = folder is not None
        if not self.resuming:
            self._open_data()  # a data error stops here, with one error line and no run folder
        self.folder = folder or RunFolder.create(self.config.output, self.config)
        self.info = info or self._new_info()
        if distributed.active():
            self.info["distributed"] = {"world_size": distributed.world_size(),
                                        "backend": torch.distributed.get_backend()}
        self.logger, handlers = _run_logger(self.folder)
        started = time.perf_counter()
        try:
            with _sigterm_as_interrupt():
                self._start()
                self._prepare_data()
                self._send_plan()
                for name in self._order(self.config.methods):
                    if self.info["methods"][name]["status"] != "complete":
                        self._run_method(name)
                self._comparisons()
            failed = [n for n, m in self.info["methods"].items() if m["status"] == "failed"]
            self.info["status"] = "failed" if failed else "complete"
            self.info["finished"] = utc_now().isoformat()
            self.info["timings"]["total"] = round(time.perf_counter() - started, 3)
            self._save_run()
            self.logger.info("run %s %s in %s", self.folder.run_id, self.info["status"], self.folder.path)
            print(summary_table(self.info, self.metrics))
            print(f"run folder: {self.folder.path}")
            return 1 if failed else 0
        except KeyboardInterrupt:
            self.info["status"] = "interrupted"
            for method in self.info["methods"].values():
                if method["status"] == "running":
                    method["status"] = "interrupted"
            self._save_run()
            self.logger.warning("interrupted; continue with: python -m harness run --resume %s --output %s",
                                self.folder.run_id, self.folder.path.parent)
            raise
        except Exception as exc:
            self.info["status"] = "failed"
            self.info["notes"].append(f"run stopped: {type(exc).__name__}: {exc}")
            self.info["finished"] = utc_now().isoformat()
            self._save_run()
            self.logger.error("run stopped: %s", exc, exc_info=not _expected_error(exc))
            raise
        finally:
            for handler in handlers:
                self.logger.removeHandler(handler)
                handler.close()

    def _new_info(self) -> dict[str, Any]:
        env = capture_environment(self.device, self.argv)
        return {
            "run_id": self.folder.run_id, "status": "running", "created": utc_now().isoformat(),
            "finished": None, **env, "profile": self.config.profile.name, "seed": self.config.seed,
            "config": self.config.to_dict(), "dataset": {}, "split": {},
            "methods": {name: _method_entry(name) for name in self.config.methods},
            "timings": {}, "notes": [],
        }

    def _start(self) -> None:
        if self.resuming:
            self.info.update(status="running", finished=None)
            self.info["resumed"] = [*self.info.get("resumed", []), utc_now().isoformat()]
            for name in self.config.methods:
                self.info["methods"].setdefault(name, _method_entry(name))
            redo = {n for n, m in self.info["methods"].items() if m["status"] != "complete"}
            self.metrics = [r for r in self.folder.read_metrics() if r["method"] not in redo]
            old = self.folder.read_scores()
            self.scores = old[~old["method"].isin(redo)].reset_index(drop=True)
            self.logger.info("resuming run %s: re-running %s", self.folder.run_id, ", ".join(sorted(redo)) or "nothing")
        else:
            self.logger.info("run %s: methods %s, profile %s, seed %d, device %s", self.folder.run_id,
                             ", ".join(self.config.methods), self.config.profile.name, self.config.seed,
                             self.info["device"])
        self._save_run()

    def _open_data(self) -> tuple[Any, Any]:
        """The data source and its split (once per run), timed into ``self._data_timings``."""
        if self._opened is None:
            cfg = self.config
            t = time.perf_counter()
            source = self.data.open_dataset(cfg.data, cfg.profile, cfg.seed, self.progress)
            t_data = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            split = self.data.make_split(source, cfg.seed, cfg.profile.split)
            self._data_timings = {"data": t_data, "split": round(time.perf_counter() - t, 3)}
            self._opened = (source, split)
        return self._opened

    def _prepare_data(self) -> None:
        profile, timings = self.config.profile, self.info["timings"]
        source, split = self._open_data()
        timings.update(self._data_timings)
        self.info["dataset"] = {
            "name": source.name, "root": str(source.root), "fingerprint": source.fingerprint(),
            "n_images": len(source.records), "n_skipped": len(source.skipped),
            "has_masks": any(r.has_mask for r in source.records),
        }
        self.info["notes"] = list(dict.fromkeys([*self.info["notes"], *source.notices]))
        self.strata = {r.id: r.stratum for r in source.records}
        self.subjects = {r.id: r.subject for r in source.records}  # CIs resample subjects
        self.positions = axial_positions(source.records)

        t = time.perf_counter()
        stored_hash = self.info["split"].get("hash")
        if self.resuming and stored_hash and stored_hash != split.hash:
            raise ValueError(f"the split changed since run {self.folder.run_id} started "
                             f"({stored_hash} -> {split.hash}): the data differ; start a new run")
        tmp = self.folder.file(".split.csv.tmp")
        split.write_manifest(tmp)
        os.replace(tmp, self.folder.file("split.csv"))
        self.split_hash = split.hash
        ids = split.manifest["path"].tolist()  # reference halves: subjects joined by duplicate group
        self.groups = dict(zip(ids, subject_groups([self.subjects[i] for i in ids], split.manifest["dup_group"])))
        subjects = split.subject_counts(self.strata)  # None: every image is its own subject
        self.info["dataset"]["bootstrap_unit"] = "image" if subjects is None else "subject"
        self.info["split"] = {
            "hash": split.hash, "manifest": "split.csv", "counts": split.counts(),
            "subjects": subjects,
            "n_duplicate_groups": len(split.duplicate_groups),
            "n_cross_label_duplicates": len(split.cross_label_duplicates),
        }
        timings["split"] = round(timings["split"] + time.perf_counter() - t, 3)
        self._save_run()

        t = time.perf_counter()
        if not (self.resuming and self.folder.file("eda/eda.json").exists()):
            try:
                self.data.run_eda(source, split, self.folder.file("eda"), self.progress)
            except Exception as exc:  # the EDA is a report, not a result: record and go on
                self.info["notes"].append(f"EDA failed: {type(exc).__name__}: {exc}")
                self.logger.warning("EDA failed; the run goes on", exc_info=True)
        timings["eda"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        size = self._load_size()
        self.sets = {which: self.data.load_imageset(source, split, which, size, self.progress)
                     for which in ("train", "val", "test")}
        timings["load"] = round(time.perf_counter() - t, 3)
        self.logger.info("data: %s, split %s, train/val/test %s at %d px", source.name, split.hash[:12],
                         "/".join(str(len(s)) for s in self.sets.values()), size)
        self._save_run()

    def _load_size(self) -> int:
        """The largest working size of the run's methods (the feature method included), so each
        method can take its own size down from it; the cohort's slice size when none declares one."""
        sizes = [METHODS.get(n).working_size(self._settings(n)) for n in self.config.method_settings]
        sizes = [s for s in sizes if s]
        return max(sizes) if sizes else self.config.profile.cohort.slice_size

    def _settings(self, name: str):
        """Method ``name``'s resolved settings as its typed model (validated again on resume)."""
        cls = METHODS.get(name)
        return cls.Settings(**self.config.method_settings[name])

    @staticmethod
    def _order(names: tuple[str, ...]) -> list[str]:
        """Translating methods last, so their MRI feature space can use this run's feature method."""
        return sorted(names, key=lambda n: "translates" in METHODS.get(n).capabilities)

    # -------------------------------------------------------------- torchrun
    @staticmethod
    def _trains_distributed(name: str) -> bool:
        return distributed.active() and "distributed" in METHODS.get(name).capabilities

    def _send_plan(self) -> None:
        """Under torchrun (rank 0): tell the other ranks what to train with it, in this run's order."""
        if not distributed.active():
            return
        methods = [(n, self.resuming and self.info["methods"][n]["status"] != "pending")
                   for n in self._order(self.config.methods)
                   if self.info["methods"][n]["status"] != "complete" and self._trains_distributed(n)]
        distributed.broadcast({"config": self.config.to_dict(), "folder": str(self.folder.path),
                               "split_hash": self.split_hash, "size": self._load_size(), "methods": methods})
        self.plan_sent = True

    @classmethod
    def follow(cls, data: DataLayer) -> int:
        """A torchrun rank other than 0: rebuild rank 0's split and train each method of its plan
        together with it. It writes nothing; rank 0 writes the run folder and evaluates."""
        plan = distributed.broadcast(None)
        if plan is None:
            return 0  # rank 0 stopped before training; its error is the run's
        runner = cls(config_from_dict(plan["config"]), data, progress=False)
        cfg = runner.config
        source = data.open_dataset(cfg.data, cfg.profile, cfg.seed, False)
        split = data.make_split(source, cfg.seed, cfg.profile.split)
        if split.hash != plan["split_hash"]:
            raise RuntimeError(f"rank {distributed.rank()} made split {split.hash}, rank 0 {plan['split_hash']}: "
                               f"the ranks do not see the same data")
        train, val = (data.load_imageset(source, split, which, plan["size"], False) for which in ("train", "val"))
        folder = RunFolder(plan["folder"])
        for name, resume in plan["methods"]:
            seed_everything(cfg.seed)
            method: Method = METHODS.get(name)(runner._settings(name))
            method.fit(train, val, FitContext(
                device=runner.device, seed=cfg.seed, profile=cfg.profile.name, output_dir=folder.method_dir(name),
                logger=logging.getLogger(f"harness.rank{distributed.rank()}.{name}"), resume=resume,
                amp=runner.device.type == "cuda", progress=False, distributed=True))
        return 0

    # -------------------------------------------------------------- one method
    def _run_method(self, name: str) -> None:
        entry = self.info["methods"][name]
        resume = self.resuming and entry["status"] != "pending"
        entry.update(status="running", error=None, traceback=None, timings={})
        self._save_run()
        self.logger.info("== %s%s", name, " (resuming from its checkpoint)" if resume else "")
        try:
            self._fit_and_evaluate(name, entry, resume)
        except Exception as exc:
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            self.logger.error("%s failed: %s", name, exc, exc_info=True)
            if self._trains_distributed(name) and "fit" not in entry["timings"]:
                raise  # the other ranks are inside this fit's collectives: end the torchrun job
            self.metrics = [r for r in self.metrics if r["method"] != name]
            self.scores = self.scores[self.scores["method"] != name].reset_index(drop=True)
            self._save_results()
        else:
            entry["status"] = "complete"
            self.logger.info("%s complete in %.1f s", name, sum(v or 0 for v in entry["timings"].values()))
        self._save_run()

    def _fit_and_evaluate(self, name: str, entry: dict[str, Any], resume: bool) -> None:
        cfg, timings = self.config, entry["timings"]
        train, val, test = self.sets["train"], self.sets["val"], self.sets["test"]
        seed_everything(cfg.seed)
        method: Method = METHODS.get(name)(self._settings(name))
        entry["capabilities"] = sorted(method.capabilities)
        entry["supervision"] = method.supervision
        entry["description"] = method.description
        ctx = FitContext(device=self.device, seed=cfg.seed, profile=cfg.profile.name,
                         output_dir=self.folder.method_dir(name), logger=self.logger.getChild(name),
                         resume=resume, amp=self.device.type == "cuda", progress=self.progress,
                         distributed=self._trains_distributed(name),
                         mri_fid=self._fid_probe(method) if "translates" in method.capabilities else None)
        if distributed.world_size() > 1 and not ctx.distributed:
            self.logger.info("%s trains on rank 0 only (no 'distributed' capability); the other %d processes skip it",
                             name, distributed.world_size() - 1)
        t = time.perf_counter()
        method.fit(train, val, ctx)
        timings["fit"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        val_out, test_out = method.score(val), method.score(test)
        check_output(name, "val", val, val_out)
        check_output(name, "test", test, test_out)
        timings["score"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        settings = cfg.profile.metrics
        subjects = [self.subjects[i] for i in test.ids]
        rows, threshold = detection_rows(name, val, test, val_out, test_out, settings, cfg.seed, subjects)
        strata = [self.strata.get(i, "") for i in test.ids]
        rows += stratum_rows(name, val, test, val_out, test_out, strata, settings, cfg.seed, subjects)
        if "maps" in method.capabilities:
            rows += pixel_rows(name, test, test_out, settings, cfg.seed, subjects, val=val, val_out=val_out,
                               test_strata=strata)
        entry["threshold"] = threshold
        selected = method.selection()
        entry["selected"] = _jsonable(selected) if selected else None
        entry["aggregate"] = selected.get("aggregate") if selected else None
        self._record_checkpoint(method, entry)
        curves = method.training_curves()
        if curves:
            self.folder.write_curves(name, curves)
        timings["metrics"] = round(time.perf_counter() - t, 3)

        timings["translate"] = None
        if "translates" in method.capabilities:
            t = time.perf_counter()
            translations = translate_test(method, test, [self.groups[i] for i in test.ids])
            timings["translate"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            rows += self._generative_rows(name, method, translations)
            timings["generative"] = round(time.perf_counter() - t, 3)
        self.folder.write_examples(name, example_arrays(method, test, test_out, [self.subjects[i] for i in test.ids]))

        frames = [score_frame(name, "val", val, val_out), score_frame(name, "test", test, test_out)]
        self.scores = pd.concat([self.scores[self.scores["method"] != name], *frames], ignore_index=True)
        self.metrics = [r for r in self.metrics if r["method"] != name] + rows
        self._save_results()

    def _comparisons(self) -> None:
        """Once every method ran: the input audit into eda.json (a report: a failure is noted),
        then the shortcut floor and the paired differences between methods (results)."""
        from harness.data.eda import add_input_audit

        try:
            add_input_audit(self.folder.file("eda/eda.json"), self.sets, self.positions, self.strata)
        except Exception as exc:
            self.info["notes"].append(f"input audit failed: {type(exc).__name__}: {exc}")
            self.logger.warning("input audit failed; the run goes on", exc_info=True)
        rows = comparison_rows(self.scores, self.sets["val"], self.sets["test"], self.subjects, self.positions,
                               self.config.profile.metrics, self.config.seed, self.strata)
        self.metrics = [r for r in self.metrics if not is_comparison_row(r)] + rows
        self._save_results()

    def _record_checkpoint(self, method: Method, entry: dict[str, Any]) -> None:
        path = method.checkpoint()
        if path is None or not Path(path).is_file():
            entry.update(checkpoint=None, checkpoint_sha256=None)
            return
        path = Path(path).resolve()
        try:
            shown = str(path.relative_to(self.folder.path.resolve()))
        except ValueError:
            shown = str(path)
        entry.update(checkpoint=shown, checkpoint_sha256=file_sha256(path))

    # -------------------------------------------------------------- generative metrics
    def _generative_rows(self, name: str, method: Method, translations: Translations) -> list[dict]:
        cfg = self.config
        mri, missing = self._mri_extractor()
        return evaluate_generative(
            name, translations, settings=cfg.profile.metrics, device=self.device, seed=cfg.seed,
            working_size=type(method).working_size(method.settings), inception_weights=cfg.inception_weights,
            mri=mri, mri_missing=missing, cache_dir=cache_root(), logger=self.logger.getChild(name))

    def _fid_probe(self, method: Method) -> MRIFidProbe:
        """MRI-space FID for ``method``'s learning curve; the feature network is resolved (and, in
        a run without the feature method, trained and cached as for the final rows) at first use."""
        return MRIFidProbe(lambda: self._mri_extractor()[0], self.device,
                           type(method).working_size(method.settings))

    def _mri_extractor(self) -> tuple[MRIExtractor | None, str]:
        """The feature method's network for the MRI-domain rows, or None and why not."""
        path = self._mri_checkpoint()
        if path is None:
            return None, "no MRI-domain network (see the run's notes)"
        name = feature_method(self.config.methods)
        try:
            module = METHODS.get(name).feature_extractor(Path(path), self.device)
        except Exception as exc:  # a checkpoint its method cannot read is a missing feature space
            return None, f"{name} could not build its feature network from {path}: {type(exc).__name__}: {exc}"
        val = self.sets["val"]
        return MRIExtractor(module, f"mri-{name}", file_sha256(path, length=64), val.images, val.labels), ""

    def _mri_checkpoint(self) -> str | None:
        """This run's feature method's checkpoint, else a cached dedicated one; None (with a note) if neither."""
        name = feature_method(self.config.methods)
        if name is None:
            note = "MRI feature space unavailable: no registered method has the 'features' capability"
            if note not in self.info["notes"]:
                self.info["notes"].append(note)
            return None
        entry = self.info["methods"].get(name)
        if entry and entry["status"] == "complete" and entry.get("checkpoint"):
            path = Path(entry["checkpoint"])
            path = path if path.is_absolute() else self.folder.path / path
            if path.is_file():
                return str(path)
        try:
            return str(dedicated_checkpoint(
                name, self.config.method_settings[name], self.sets["train"], self.sets["val"],
                split_hash=self.split_hash, seed=self.config.seed, profile=self.config.profile.name,
                device=self.device, logger=self.logger.getChild("mri-reference"), progress=self.progress))
        except Exception as exc:
            note = f"MRI feature space unavailable: {type(exc).__name__}: {exc}"
            if note not in self.info["notes"]:
                self.info["notes"].append(note)
            self.logger.warning(note)
            return None

    # -------------------------------------------------------------- saving
    def _save_run(self) -> None:
        self.folder.write_run(self.info)

    def _save_results(self) -> None:
        self.folder.write_metrics(self.metrics)
        self.folder.write_scores(self.scores)


def _method_entry(name: str) -> dict[str, Any]:
    return {"status": "pending", "error": None, "traceback": None, "capabilities": [],
            "supervision": METHODS.get(name).supervision, "description": "", "timings": {}, "threshold": None, "aggregate": None,
            "checkpoint": None, "checkpoint_sha256": None}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _expected_error(exc: Exception) -> bool:
    from harness.data.types import DatasetError
    from harness.registry import UnknownNameError

    return isinstance(exc, (DatasetError, UnknownNameError, FileNotFoundError, ValueError))


# ---------------------------------------------------------------- summary

def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def summary_table(info: dict[str, Any], rows: list[dict]) -> str:
    """Plain-text table: method, AUROC [CI], AP (chance), sens/spec, status, time."""
    by = {(r["method"], r["metric"]): r for r in rows if r.get("domain") == "all" and r.get("split") == "test"}
    header = ["method", "AUROC [95% CI]", "AP (chance)", "sens/spec", "status", "time (s)"]
    lines = []
    floor = {FLOOR_METHOD: {"status": "input feature"}} if (FLOOR_METHOD, "auroc") in by else {}
    for name, entry in {**info["methods"], **floor}.items():
        auroc = by.get((name, "auroc"), {})
        ci = (f" [{_fmt(auroc.get('ci_low'))}, {_fmt(auroc.get('ci_high'))}]"
              if auroc.get("ci_low") is not None else "")
        ap, chance = by.get((name, "ap"), {}), by.get((name, "ap_chance"), {})
        sens, spec = by.get((name, "sensitivity"), {}), by.get((name, "specificity"), {})
        total = sum(v for v in entry.get("timings", {}).values() if isinstance(v, (int, float)))
        lines.append([name, _fmt(auroc.get("value")) + ci,
                      f"{_fmt(ap.get('value'))} ({_fmt(chance.get('value'), 2)})",
                      f"{_fmt(sens.get('value'), 2)}/{_fmt(spec.get('value'), 2)}", entry["status"],
                      f"{total:.1f}"])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*r) for r in lines)])
