"""``python -m harness run``: one run = data -> split -> EDA -> each method -> metrics -> results.

A failing method is recorded (status, error, traceback) and the others still run; the command
then exits with 1. Ctrl-C or SIGTERM leaves the run "interrupted" (a hard kill leaves it
"running"); ``--resume RUN_ID`` reloads its config, keeps the methods that completed and
re-runs the others with ``ctx.resume=True`` so they continue from their last checkpoint.
Every method starts from ``seed_everything(training_seed)`` (the train seed, else the seed), so its
numbers do not depend on which methods ran before it; same seed + same device -> the same scores.csv. Methods run in the
order given (``--all``: registry order), except that translating methods run last so that
their MRI-domain FID/KID can use the ResNet18 trained earlier in the same run. A method's variants
(``Method.variants``, e.g. ``dae+tuned``) are evaluated right after it from the same fit, each as a
method of its own (:mod:`harness.variants`); a failed variant re-runs its method on ``--resume``.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd
import torch

from harness import distributed
from harness.api import ImageSet, Method, ScoreOutput
from harness.config import RunConfig
from harness.data.types import label_rule
from harness.evaluate import (LazyTranslations, check_output, evaluate_method, evaluate_run, example_arrays,
                              is_run_row, method_suites, run_infos, score_frame, suite_load_notes)
from harness.feature_space import FeatureSpace
from harness.method_build import build_method, trains_distributed
from harness.metric_info import MetricInfo
from harness.metrics.curves import detection_curves
from harness.metrics.suite import MethodEvaluation, RunEvaluation
from harness.mri_reference import cache_root
from harness.registry import METHODS, method_variants
from harness.results import SCORES_COLUMNS, RunFolder, utc_now
from harness.run_info import (checkpoint_entry, completed_checkpoint, dataset_info, jsonable, mark_interrupted,
                              mark_stopped, method_entry, new_run_info, split_info)
from harness.run_inputs import DataLayer, RunInputs, load_size, open_inputs
from harness.run_log import expected_error, run_logger, sigterm_as_interrupt
from harness.run_reports import eda_or_note, input_audit_or_note
from harness.run_summary import summary_table
from harness.training import choose_device, seed_everything
from harness.variants import VariantView, variant_views

__all__ = ["DataLayer", "Runner"]


class Runner:
    """Executes one run (new or resumed) into its run folder."""

    def __init__(self, config: RunConfig, data: DataLayer, *, progress: bool = True,
                 argv: list[str] | None = None, on_data_ready: Callable[[Runner], None] | None = None) -> None:
        self.config = config
        self.data = data
        self.progress = progress
        self.argv = argv
        try:
            self.device = distributed.setup(choose_device(config.device))  # cuda:LOCAL_RANK under torchrun
        except RuntimeError as exc:  # an unavailable device is a usage error, not a crash
            raise ValueError(str(exc)) from exc
        self.on_data_ready = on_data_ready  # called once the data are loaded (torchrun sends its plan)
        self.folder: RunFolder
        self.info: dict[str, Any] = {}
        self.logger: logging.Logger = logging.getLogger("harness.run")
        self.resuming = False
        self.metrics: list[dict] = []
        self.scores = pd.DataFrame(columns=list(SCORES_COLUMNS))
        self.split_hash = ""
        self.inputs: RunInputs | None = None  # source and split, opened before the run folder
        self.sets: dict[str, ImageSet] = {}
        self.strata: dict[str, str] = {}  # image id -> acquisition stratum ("" when unknown)
        self.subjects: dict[str, str] = {}  # image id -> subject (the id itself when unknown)
        self.groups: dict[str, str] = {}  # image id -> subject joined with its duplicate group
        self.positions: dict[str, float] = {}  # image id -> axial slice position, where recorded
        self.features: FeatureSpace

    # -------------------------------------------------------------- orchestration
    def execute(self, folder: RunFolder | None, info: dict[str, Any] | None) -> int:
        seed_everything(self.config.seed)
        self.resuming = folder is not None
        if not self.resuming:  # a data error stops here, with one error line and no run folder
            self.inputs = open_inputs(self.config, self.data, self.progress)
        self.folder = folder or RunFolder.create(self.config.output, self.config)
        self.info = info or new_run_info(self.folder.run_id, self.config, self.device, self.argv)
        if distributed.active():
            self.info["distributed"] = {"world_size": distributed.world_size(),
                                        "backend": torch.distributed.get_backend()}
        self.logger, handlers = run_logger(self.folder)
        started = time.perf_counter()
        try:
            with sigterm_as_interrupt():
                self._start()
                self._prepare_data()
                if self.on_data_ready is not None:
                    self.on_data_ready(self)
                for name in self.order():
                    if not self._complete(name):
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
            mark_interrupted(self.info)
            self._save_run()
            self.logger.warning("interrupted; continue with: python -m harness run --resume %s --output %s",
                                self.folder.run_id, self.folder.path.parent)
            raise
        except Exception as exc:
            mark_stopped(self.info, exc)
            self._save_run()
            self.logger.error("run stopped: %s", exc, exc_info=not expected_error(exc))
            raise
        finally:
            for handler in handlers:
                self.logger.removeHandler(handler)
                handler.close()

    def _start(self) -> None:
        if self.resuming:
            self.info.update(status="running", finished=None)
            self.info["resumed"] = [*self.info.get("resumed", []), utc_now().isoformat()]
            for name in self.config.methods:
                for entry_name in (name, *method_variants(name)):
                    self.info["methods"].setdefault(entry_name, method_entry(entry_name))
            redo = {n for n, m in self.info["methods"].items() if m["status"] != "complete"}
            self.metrics = [r for r in self.folder.read_metrics() if r["method"] not in redo]
            old = self.folder.read_scores()
            self.scores = old[~old["method"].isin(redo)].reset_index(drop=True)
            self.logger.info("resuming run %s: re-running %s", self.folder.run_id, ", ".join(sorted(redo)) or "nothing")
        else:
            self.logger.info("run %s: methods %s, profile %s, seed %d, train seed %d, device %s", self.folder.run_id,
                             ", ".join(self.config.methods), self.config.profile.name, self.config.seed,
                             self.config.training_seed, self.info["device"])
        self._save_run()

    def _prepare_data(self) -> None:
        """Source, split (checked against a resumed run's), EDA and image sets, recorded in run.json."""
        timings = self.info["timings"]
        self.inputs = inputs = self.inputs or open_inputs(self.config, self.data, self.progress)
        source, split = inputs.source, inputs.split
        timings.update(inputs.timings)
        self.info["dataset"] = dataset_info(source)
        self.info["notes"] = list(dict.fromkeys([*self.info["notes"], *source.notices]))
        self.strata, self.subjects, self.positions = inputs.strata, inputs.subjects, inputs.positions

        t = time.perf_counter()
        stored_hash = self.info["split"].get("hash")
        if self.resuming and stored_hash and stored_hash != split.hash:
            raise ValueError(f"the split changed since run {self.folder.run_id} started "
                             f"({stored_hash} -> {split.hash}): the data differ; start a new run")
        split.write_manifest(self.folder.file("split.csv"))
        self.split_hash = split.hash
        self.groups = inputs.groups()  # reference halves: subjects joined by duplicate group
        self.info["split"] = split_info(split, self.strata)
        self.info["dataset"]["bootstrap_unit"] = "image" if self.info["split"]["subjects"] is None else "subject"
        timings["split"] = round(timings["split"] + time.perf_counter() - t, 3)
        self._save_run()

        t = time.perf_counter()
        if not (self.resuming and self.folder.file("eda/eda.json").exists()):
            eda_or_note(self.data.run_eda, source, split, self.folder.file("eda"), self.progress, self.info["notes"],
                        self.logger)
        timings["eda"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        size = load_size(self.config)
        self.sets = inputs.load(self.data, size, self.progress)
        timings["load"] = round(time.perf_counter() - t, 3)
        self.logger.info("data: %s, split %s, train/val/test %s at %d px", source.name, split.hash[:12],
                         "/".join(str(len(s)) for s in self.sets.values()), size)
        own = partial(completed_checkpoint, self.info, self.folder.path)  # this run's own feature network first
        self.features = FeatureSpace(self.config, self.sets, self.split_hash, self.device, own,
                                     self.info["notes"], self.logger.getChild("mri-reference"), self.progress,
                                     test_groups=[self.groups[i] for i in self.sets["test"].ids])
        self._save_run()

    def order(self) -> list[str]:
        """The run's methods, translating ones last so that their MRI feature space can use this
        run's feature method."""
        return sorted(self.config.methods, key=lambda n: "translates" in METHODS.get(n).capabilities)

    def _complete(self, name: str) -> bool:
        """Method ``name`` and each of its variants completed (a failed variant re-runs its method,
        from its checkpoint)."""
        return all(self.info["methods"][n]["status"] == "complete" for n in (name, *method_variants(name)))

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
            if _interrupted(exc):
                raise KeyboardInterrupt from exc  # Ctrl-C inside a library call: stop, do not mark a failure
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            self.logger.error("%s failed: %s", name, exc, exc_info=True)
            if trains_distributed(name) and "fit" not in entry["timings"]:
                raise  # the other ranks are inside this fit's collectives: end the torchrun job
            for variant in method_variants(name):
                self.info["methods"][variant].update(status="failed", error=f"not evaluated: {name} failed",
                                                     traceback=None)
            gone = {name, *method_variants(name)}
            self.metrics = [r for r in self.metrics if r["method"] not in gone]
            self.scores = self.scores[~self.scores["method"].isin(gone)].reset_index(drop=True)
            self._save_results()
        else:
            entry["status"] = "complete"
            self.logger.info("%s complete in %.1f s", name, sum(v or 0 for v in entry["timings"].values()))
        self._save_run()

    def _fit_and_evaluate(self, name: str, entry: dict[str, Any], resume: bool) -> None:
        """Fit method ``name``, evaluate it, then evaluate each of its variants from the same fit."""
        cfg, timings = self.config, entry["timings"]
        train, val = self.sets["train"], self.sets["val"]
        method, ctx = build_method(name, cfg.method_settings[name], device=self.device, seed=cfg.training_seed,
                                   profile=cfg.profile.name, output_dir=self.folder.method_dir(name),
                                   logger=self.logger.getChild(name), resume=resume, progress=self.progress,
                                   distributed=trains_distributed(name))
        if "translates" in method.capabilities:
            ctx.mri_fid = self.features.probe(method)
        entry.update(capabilities=sorted(method.capabilities), supervision=method.supervision,
                     description=method.description)
        if distributed.world_size() > 1 and not ctx.distributed:
            self.logger.info("%s trains on rank 0 only (no 'distributed' capability); the other %d processes skip it",
                             name, distributed.world_size() - 1)
        t = time.perf_counter()
        method.fit(train, val, ctx)
        timings["fit"] = round(time.perf_counter() - t, 3)
        self._evaluate(name, method, entry)
        for view in variant_views(method):
            self._run_variant(view)

    def _run_variant(self, view: VariantView) -> None:
        """Evaluate a fitted method's variant as a method of its own; its failure is its own
        (recorded in its entry) and leaves the method's rows in place."""
        entry = self.info["methods"].setdefault(view.name, method_entry(view.name))
        entry.update(status="running", error=None, traceback=None, timings={}, variant_of=view.base.name,
                     capabilities=sorted(view.capabilities), supervision=view.supervision,
                     description=view.description)
        try:
            self._evaluate(view.name, view, entry)
        except Exception as exc:
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            self.logger.error("%s failed: %s", view.name, exc, exc_info=True)
            self.metrics = [r for r in self.metrics if r["method"] != view.name]
            self.scores = self.scores[self.scores["method"] != view.name].reset_index(drop=True)
            self._save_results()
        else:
            entry["status"] = "complete"
            self.logger.info("%s complete in %.1f s", view.name, sum(v or 0 for v in entry["timings"].values()))
        self._save_run()

    def _evaluate(self, name: str, method: Method, entry: dict[str, Any]) -> None:
        """Score val and test with a fitted method (or variant), run its metric suites, and write
        its rows, scores, examples, curves and run.json facts."""
        timings, val, test = entry["timings"], self.sets["val"], self.sets["test"]
        t = time.perf_counter()
        val_out, test_out = method.score(val), method.score(test)
        check_output(name, "val", val, val_out)
        check_output(name, "test", test, test_out)
        timings["score"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        ev = self._method_evaluation(name, method, val_out, test_out)
        rows, stages = evaluate_method(ev, method_suites(method.capabilities))
        entry.update(ev.record)  # e.g. the validation threshold of the detection suite
        selected = method.selection()
        entry["selected"] = jsonable(selected) if selected else None
        entry["aggregate"] = selected.get("aggregate") if selected else None
        entry.update(checkpoint_entry(method.checkpoint(), self.folder.path))
        curves = method.training_curves()
        if curves:
            self.folder.write_curves(name, curves)
        elapsed = time.perf_counter() - t - sum(v or 0 for v in stages.values())  # translating apart
        timings.update({"metrics": round(elapsed, 3), **stages})
        self.folder.write_examples(name, example_arrays(method, test, test_out, [self.subjects[i] for i in test.ids]))

        frames = [score_frame(name, "val", val, val_out), score_frame(name, "test", test, test_out)]
        self.scores = pd.concat([self.scores[self.scores["method"] != name], *frames], ignore_index=True)
        self.metrics = [r for r in self.metrics if r["method"] != name] + rows
        self._save_results()

    def _comparisons(self) -> None:
        """Once every method ran: the input audit into eda.json (a report: a failure is noted),
        then the run-scope suites' rows (the shortcut floor, the paired differences between
        methods) and a note for each metric suite that could not be loaded."""
        input_audit_or_note(self.folder.file("eda/eda.json"), self.sets, self.positions, self.strata,
                            self.info["notes"], self.logger)
        rows = evaluate_run(RunEvaluation(
            scores=self.scores, val=self.sets["val"], test=self.sets["test"], subjects=self.subjects,
            positions=self.positions, strata=self.strata, settings=self.config.profile.metrics, seed=self.config.seed,
            logger=self.logger, train=self.sets["train"]))
        self.metrics = [r for r in self.metrics if not is_run_row(r, self.info["methods"])] + rows
        self.info["notes"] = list(dict.fromkeys([*self.info["notes"], *suite_load_notes()]))
        self._save_results()

    # -------------------------------------------------------------- metric suites
    def _method_evaluation(self, name: str, method: Method, val_out: ScoreOutput,
                           test_out: ScoreOutput) -> MethodEvaluation:
        cfg, test = self.config, self.sets["test"]
        groups = [self.groups[i] for i in test.ids]
        return MethodEvaluation(
            method=name, capabilities=frozenset(method.capabilities), val=self.sets["val"], test=test,
            val_out=val_out, test_out=test_out, subjects=[self.subjects[i] for i in test.ids],
            strata=[self.strata.get(i, "") for i in test.ids], groups=groups, settings=cfg.profile.metrics,
            seed=cfg.seed, translations=LazyTranslations(method, test, groups), device=self.device,
            working_size=type(method).working_size(method.settings), inception_weights=cfg.inception_weights,
            mri_extractor=self.features.extractor, realism_space=self.features.realism,
            translate=method.translate if "translates" in method.capabilities else None,
            cache_dir=cache_root(), logger=self.logger.getChild(name),
            val_subjects=[self.subjects[i] for i in self.sets["val"].ids],
            val_strata=[self.strata.get(i, "") for i in self.sets["val"].ids],
            label_rule=label_rule(self.inputs.source))

    def _metric_infos(self) -> dict[str, MetricInfo]:
        """The infos of the suites that ran for this run's evaluated methods (metrics.json ``metrics``)."""
        return run_infos(m["capabilities"] for m in self.info["methods"].values()
                         if m["status"] in ("complete", "running"))

    # -------------------------------------------------------------- saving
    def _save_run(self) -> None:
        self.folder.write_run(self.info)

    def _save_results(self) -> None:
        self.folder.write_metrics(self.metrics, self._metric_infos())
        self.folder.write_scores(self.scores)
        self.folder.write_detection_curves(detection_curves(self.scores))  # the report draws, never computes


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` stands for a Ctrl-C: some libraries turn a KeyboardInterrupt raised inside
    them into their own error (torch.save: "enforce fail ... unexpected pos"), keeping it as the
    cause or context; the run must then stop as interrupted, not record the method as failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
