"""Metric suites: registration refuses what the runner could not run correctly, the run order is
fixed, and a suite registered from outside the harness gets its rows, infos and record into the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.evaluate import is_run_row, method_suites, run_infos
from harness.metric_info import SCHEMA1_METRICS, MetricInfo, infos_from_document
from harness.metrics.suite import MetricSuite, metric_row, needs_met, register_metric_suite
from harness.registry import BUILTIN_METRIC_MODULES, METHODS, METRICS, metric_suites
from harness.results import FLOOR_METHOD
from runner_toys import TOYS, make_folder_dataset

BUILTINS = ["detection", "localisation", "generative", "fidelity", "comparison", "volume"]
# the suites whose metrics runs of schema version 1 hold
SCHEMA1_SUITES = ["detection", "localisation", "generative", "comparison"]
BRIGHT = MetricInfo("bright_share", "Bright share", "toy family", higher_is_better=False, summarised=True)
MAPPED = MetricInfo("mapped_pixels", "Mapped pixels", "toy family", digits=1)


class BrightShare(MetricSuite):
    """Share of test images a method scores above its median: a per-method row and a record."""

    needs = frozenset({"scores"})
    infos = (BRIGHT,)

    def rows(self, ev) -> list[dict]:
        scores = np.asarray(ev.test_out.scores, dtype=float)
        ev.record["bright_median"] = float(np.median(scores))
        return [metric_row(ev.method, "bright_share", float(np.mean(scores > np.median(scores))), n=len(scores))]


class MappedPixels(MetricSuite):
    needs = frozenset({"scores", "maps"})
    infos = (MAPPED,)

    def rows(self, ev) -> list[dict]:
        return [metric_row(ev.method, "mapped_pixels", float(np.asarray(ev.test_out.maps).size))]


@pytest.fixture
def registered():
    """The two suites above registered for one test (names after every built-in, by name)."""
    names = {"test-mapped": MappedPixels, "test-bright": BrightShare}
    for name, cls in names.items():
        register_metric_suite(name)(cls)
    yield
    for name in names:
        METRICS.unregister(name)


def _suite(needs: set[str], scope: str = "method", infos: tuple[MetricInfo, ...] = (BRIGHT,)) -> type[MetricSuite]:
    class Suite(MetricSuite):
        def rows(self, ev) -> list[dict]:
            return []

    Suite.needs, Suite.scope, Suite.infos = frozenset(needs), scope, infos
    return Suite


def test_builtins_run_in_their_declared_order_then_other_suites_by_name(registered):
    names = [s.name for s in metric_suites()]
    n = len(BUILTINS)
    assert names[:n] == BUILTINS == [m.rsplit(".", 1)[1].removesuffix("_suite") for m in BUILTIN_METRIC_MODULES]
    assert names[n:] == sorted(names[n:]) and {"test-bright", "test-mapped"} <= set(names[n:])
    assert not METRICS.load_errors


def test_a_typo_or_an_impossible_need_fails_at_registration_with_the_reason():
    with pytest.raises(ValueError, match="unknown need 'map' \\(did you mean 'maps'\\?\\)"):
        register_metric_suite("test-typo")(_suite({"scores", "map"}))
    with pytest.raises(ValueError, match="run-scope suite needs some of run_scores"):
        register_metric_suite("test-scope")(_suite({"scores"}, scope="run"))
    with pytest.raises(ValueError, match="scope 'volume'"):
        register_metric_suite("test-scope")(_suite({"scores"}, scope="volume"))
    with pytest.raises(ValueError, match="non-empty tuple of MetricInfo"):
        register_metric_suite("test-empty")(_suite({"scores"}, infos=()))
    other_auroc = MetricInfo("auroc", "Area under the ROC", "detection", higher_is_better=True)
    with pytest.raises(ValueError, match="metric 'auroc' differs from that of metric suite 'detection'"):
        metric_suites()  # the built-ins are loaded before the clash is looked for
        register_metric_suite("test-clash")(_suite({"scores"}, infos=(other_auroc,)))
    with pytest.raises(TypeError, match="not a harness.metrics.suite.MetricSuite"):
        register_metric_suite("test-plain")(object)
    assert not {"test-typo", "test-scope", "test-empty", "test-clash", "test-plain"} & set(METRICS.names())


def test_a_suite_runs_for_the_methods_whose_capabilities_meet_its_needs(registered):
    assert needs_met(["scores", "maps", "translates", "features"]) == {"scores", "maps", "translations"}
    scores_only = [s.name for s in method_suites(["scores"])]
    assert "detection" in scores_only and "test-bright" in scores_only
    assert not {"localisation", "generative", "test-mapped", "comparison"} & set(scores_only)
    assert [s.name for s in method_suites(["scores", "maps"])][:2] == ["detection", "localisation"]
    infos = list(run_infos([["scores"]]))  # a run of one method without maps: its suites and the run's
    detection = [i.id for i in SCHEMA1_METRICS.values() if i.family == "detection"]
    assert infos[:8] == [*detection, "auroc_delta", "ap_delta"]
    assert "bright_share" in infos and "mapped_pixels" not in infos and "pixel_auroc" not in infos


def test_the_built_in_infos_are_those_old_runs_are_read_with():
    """Runs written before metrics.json carried infos are read with SCHEMA1_METRICS; today the
    built-in suites declare each of those unchanged (renamed ids under their current names) and
    may add new ones (change the table only to describe old runs)."""
    builtin = {i.id: i for s in metric_suites() if s.name in SCHEMA1_SUITES for i in s.infos}
    assert {k: builtin.get(k) for k in SCHEMA1_METRICS} == dict(SCHEMA1_METRICS)
    assert infos_from_document({"schema_version": 1, "rows": []}) == dict(SCHEMA1_METRICS)
    assert infos_from_document([]) == dict(SCHEMA1_METRICS)  # schema 0: a bare list of rows
    assert infos_from_document({"metrics": {"x": BRIGHT.to_dict() | {"added_later": 1}}}) == {"x": BRIGHT}


def test_run_level_rows_are_told_apart_from_a_methods_rows():
    methods = ("toy-mean",)
    assert is_run_row({"method": FLOOR_METHOD, "metric": "auroc"}, methods)
    assert is_run_row({"method": "toy-mean", "metric": "auroc_delta", "other": FLOOR_METHOD}, methods)
    assert not is_run_row({"method": "toy-mean", "metric": "auroc"}, methods)


@pytest.fixture
def toys(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    import harness.data.eda as eda

    monkeypatch.setattr(eda, "run_eda", lambda source, split, out_dir, progress=True, *, seed=0: {})
    for name in ("toy-mean", "toy-resume"):
        TOYS[name].name = name
        METHODS.register(name, TOYS[name])
    yield make_folder_dataset(tmp_path / "data")
    for name in ("toy-mean", "toy-resume"):
        METHODS.unregister(name)


def test_a_registered_suites_rows_infos_and_record_reach_the_run_folder(registered, toys, tmp_path):
    out = tmp_path / "runs"
    argv = ["run", "--data", str(toys), "--profile", "smoke", "--device", "cpu", "--output", str(out),
            "--no-progress", "--method", "toy-mean", "--method", "toy-resume"]
    assert main(argv) == 0
    (folder,) = [p for p in out.iterdir() if (p / "run.json").is_file()]
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["metrics"]["bright_share"] == BRIGHT.to_dict() and doc["metrics"]["mapped_pixels"] == MAPPED.to_dict()
    assert list(doc["metrics"])[:4] == ["auroc", "ap", "sensitivity", "specificity"]  # built-ins first
    mine = [r["metric"] for r in doc["rows"] if r["method"] == "toy-mean" and not r["other"]]
    assert mine[-2:] == ["bright_share", "mapped_pixels"]  # after the built-in suites' rows, by suite name
    assert [r["metric"] for r in doc["rows"] if r["method"] == "toy-resume" and not r["other"]][-1] == "bright_share"
    assert not any(r["metric"] == "mapped_pixels" for r in doc["rows"] if r["method"] == "toy-resume")  # no maps
    run = json.loads((folder / "run.json").read_text())
    entry = run["methods"]["toy-mean"]
    assert isinstance(entry["bright_median"], float) and entry["threshold"] is not None  # the suites' records
    assert set(entry["timings"]) == {"fit", "score", "metrics", "translate"} and entry["timings"]["translate"] is None


@pytest.mark.parametrize("row, error", [
    (metric_row("toy-mean", "not_declared", 1.0), "wrote rows of metric(s) not_declared that its infos do not"),
    ({"method": "toy-mean", "metric": "bright_share", "value": 1.0}, "wrote a row not made with"),
])
def test_a_suite_that_writes_an_undeclared_metric_or_another_row_shape_fails_the_method(registered, toys, tmp_path,
                                                                                      row, error):
    class Stray(BrightShare):
        def rows(self, ev) -> list[dict]:
            return [row]

    register_metric_suite("test-stray")(Stray)
    try:
        argv = ["run", "--data", str(toys), "--profile", "smoke", "--device", "cpu", "--output",
                str(tmp_path / "runs"), "--no-progress", "--method", "toy-mean"]
        assert main(argv) == 1
    finally:
        METRICS.unregister("test-stray")
    (folder,) = [p for p in Path(tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    entry = json.loads((folder / "run.json").read_text())["methods"]["toy-mean"]
    assert entry["status"] == "failed" and f"metric suite 'test-stray' {error}" in entry["error"]


def test_a_plugin_suite_that_fails_registration_is_recorded_and_noted(monkeypatch):
    """A plugin whose needs hold a typo is not run, and the run's notes say why."""
    import harness.registry as registry
    from harness.evaluate import suite_load_notes

    class EntryPoint:
        name = "test-broken"

        def load(self):
            return _suite({"score"})

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group == "harness.metrics" else [])
    monkeypatch.setattr(METRICS, "load_errors", {})
    METRICS.load_entry_points("harness.metrics", registry.register_metric_suite)
    assert "test-broken" not in METRICS.names()
    (note,) = suite_load_notes()
    assert note.startswith("metric suite test-broken not loaded: ValueError: ") and "unknown need 'score'" in note
