"""The run folder: ids, atomic writes, schema upgrades, listing, environment capture."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

import harness.results as results
from harness.config import PROFILES, DataSpec, RunConfig
from harness.results import (SCHEMA_VERSION, RunFolder, SchemaError, atomic_write_json, list_runs,
                             load_run, metric_row)
from harness.run_env import capture_environment, git_commit

DATA = (DataSpec(dataset="mni152-lesions"),)
CONFIG = RunConfig(profile=PROFILES["smoke"], seed=0, data=DATA, methods=("toy",))
WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_run_id_format_and_never_overwrites(tmp_path):
    a = RunFolder.create(tmp_path, CONFIG, when=WHEN)
    b = RunFolder.create(tmp_path, CONFIG, when=WHEN)
    assert a.run_id == f"20260102-030405-{CONFIG.short_hash()}"
    assert b.run_id == f"20260102-030406-{CONFIG.short_hash()}"
    other = RunFolder.create(tmp_path, RunConfig(profile=PROFILES["smoke"], seed=1, data=DATA), when=WHEN)
    assert other.run_id.startswith("20260102-030405-") and other.run_id != a.run_id


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write_json(path, {"a": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}


def test_checkpoints_write_each_epoch_once_and_last_is_the_newest(tmp_path, monkeypatch):
    """last.pt is the newest epoch's file under a second name (one write per epoch, not two),
    older epochs are pruned, and a filesystem without hard links gets a copy instead."""
    import torch

    from harness import atomic
    from harness.training import Checkpointer

    ckpt = Checkpointer(tmp_path / "c", keep_last=1)
    for epoch in (1, 2):
        ckpt.save(epoch, {"w": torch.full((3,), float(epoch))})
    newest = tmp_path / "c" / "epoch-002.pt"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["epoch-002.pt", "last.pt"]
    assert ckpt.last_path.stat().st_ino == newest.stat().st_ino
    epoch, state = ckpt.load_last()
    assert epoch == 2 and state["w"].tolist() == [2.0, 2.0, 2.0]

    def no_links(*_):
        raise OSError("hard links not supported")

    monkeypatch.setattr(atomic.os, "link", no_links)
    ckpt.save(3, {"w": torch.full((3,), 3.0)})
    assert ckpt.last_path.read_bytes() == (tmp_path / "c" / "epoch-003.pt").read_bytes()
    assert ckpt.last_path.stat().st_ino != (tmp_path / "c" / "epoch-003.pt").stat().st_ino
    assert not list((tmp_path / "c").glob(".*"))  # no temporary file left behind


def test_json_handles_numpy_and_nan(tmp_path):
    atomic_write_json(tmp_path / "v.json", {"x": np.float32(0.5), "y": float("nan"), "z": np.arange(2)})
    assert json.loads((tmp_path / "v.json").read_text()) == {"x": 0.5, "y": None, "z": [0, 1]}


def test_round_trip_of_every_file(tmp_path):
    folder = RunFolder.create(tmp_path, CONFIG, when=WHEN)
    folder.write_run({"run_id": folder.run_id, "status": "complete", "methods": {}})
    rows = [metric_row("toy", "auroc", 0.9, ci_low=0.8, ci_high=0.95, n=10)]
    folder.write_metrics(rows)
    folder.write_scores(pd.DataFrame({"method": ["toy"], "split": ["test"], "id": ["007"], "label": [1],
                                      "score": [0.25]}))
    folder.write_curves("toy", {"epoch": [1], "loss": [0.3]})
    folder.write_examples("toy", {"tumor_real": np.zeros((1, 4, 4), np.float32), "tumor_ids": np.array(["a"])})
    run = load_run(folder.path)
    assert run["run"]["schema_version"] == SCHEMA_VERSION and run["run_id"] == folder.run_id
    assert run["metrics"] == rows and set(rows[0]) == set(results.ROW_KEYS)
    assert json.loads(folder.file("metrics.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert folder.read_scores()["id"].tolist() == ["007"]  # ids stay strings
    assert set(run["files"]["examples"]) == {"toy"} and set(run["files"]["curves"]) == {"toy"}
    assert "scores" in run["files"] and "split" not in run["files"]
    with pytest.raises(ValueError, match="lacks"):
        folder.write_scores(pd.DataFrame({"method": ["toy"]}))


def test_metric_row_stores_nan_as_null():
    row = metric_row("m", "fid", float("nan"), note="too few samples")
    assert row["value"] is None and row["note"] == "too few samples" and row["domain"] == "all"


def test_version_0_files_are_upgraded(tmp_path):
    folder = tmp_path / "20200101-000000-deadbeef"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({
        "run_id": folder.name, "status": "complete", "config": {},
        "methods": {"old": {"status": "complete"}},
    }))
    (folder / "metrics.json").write_text(json.dumps([
        {"method": "old", "domain": "all", "metric": "auroc", "feature_space": None, "value": 0.8,
         "ci_low": 0.7, "ci_high": 0.9},
    ]))
    run = load_run(folder)
    assert run["run"]["schema_version"] == SCHEMA_VERSION and run["run"]["notes"] == []
    assert run["run"]["methods"]["old"]["error"] is None and run["run"]["methods"]["old"]["timings"] == {}
    (row,) = run["metrics"]
    assert row["split"] == "test" and row["value"] == 0.8 and row["std"] is None and row["note"] is None
    assert set(row) == set(results.ROW_KEYS)


def test_newer_or_broken_schema_is_a_clear_error(tmp_path):
    folder = RunFolder(tmp_path / "r")
    folder.path.mkdir()
    folder.file("run.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaError, match="newer"):
        load_run(folder.path)
    folder.file("run.json").write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        load_run(folder.path)
    listed = list_runs(tmp_path)
    assert len(listed) == 1 and "error" in listed[0]
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path / "missing")


def test_read_run_reads_what_it_can_and_names_the_rest(tmp_path):
    """The report's reader: a damaged optional file is a problem on the page, never a crash."""
    folder = RunFolder.create(tmp_path, CONFIG, when=WHEN)
    folder.write_run({"run_id": folder.run_id, "status": "complete", "methods": {}})
    folder.write_metrics([metric_row("toy", "auroc", 0.9)])
    points = {"n": 2, "positives": 1, "auroc": 1.0, "ap": 1.0, "roc": {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 1.0, 1.0]},
              "pr": {"recall": [1.0, 0.0], "precision": [1.0, 1.0]}, "note": None}
    written = folder.write_detection_curves({"split": "test", "methods": {"toy": points}})
    assert written == folder.file(results.DETECTION_CURVES) == folder.path / "curves" / "detection.json"
    folder.write_curves("toy", {"epoch": [1], "loss": [0.3]})
    folder.method_dir("broken").joinpath("curves.json").write_text("{")
    folder.file("eda").mkdir()
    folder.file("eda/eda.json").write_text("[1")
    data = results.read_run(folder.path)
    assert data.run_id == folder.run_id and data.status == "complete" and data.metrics[0]["value"] == 0.9
    assert data.detection_curves["methods"]["toy"] == points and data.curves == {"toy": {"epoch": [1], "loss": [0.3]}}
    assert [p.split(":")[0] for p in data.problems] == ["broken/curves.json unreadable", "eda/eda.json unreadable"]
    assert load_run(folder.path)["files"]["detection_curves"] == str(written)

    folder.file("metrics.json").write_text("{")
    folder.file(results.DETECTION_CURVES).write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    data = results.read_run(folder.path)
    assert data.metrics == [] and data.detection_curves is None
    assert any(p.startswith("metrics.json unreadable") for p in data.problems)
    assert any("curves/detection.json unreadable" in p and "newer" in p for p in data.problems)
    folder.file(results.DETECTION_CURVES).unlink()  # a run from before curves were stored
    assert results.read_run(folder.path).detection_curves is None and folder.read_detection_curves() is None
    folder.file("run.json").write_text("{")
    with pytest.raises(results.RunReadError, match="not valid JSON"):
        results.read_run(folder.path)


def test_list_runs_sorted(tmp_path):
    for when in (WHEN + dt.timedelta(hours=1), WHEN):
        f = RunFolder.create(tmp_path, CONFIG, when=when)
        f.write_run({"run_id": f.run_id, "status": "complete", "methods": {}})
    (tmp_path / "not-a-run").mkdir()
    ids = [r["run_id"] for r in list_runs(tmp_path)]
    assert ids == sorted(ids) and len(ids) == 2
    assert list_runs(tmp_path / "nothing") == []


def test_environment_capture(tmp_path):
    env = capture_environment(torch.device("cpu"), ["harness", "run", "--all"])
    assert env["device"] == "cpu" and env["command"] == "python -m harness run --all"
    assert env["packages"]["torch"] and env["packages"]["python"]
    assert env["harness_version"]
    assert git_commit(tmp_path) is None  # outside git: None, no exception


def test_git_commit_marks_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    clean = git_commit(tmp_path)
    assert clean and len(clean) == 40
    (tmp_path / "f").write_text("2")
    assert git_commit(tmp_path) == clean + "+dirty"
