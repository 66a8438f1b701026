"""Grids through submitit: cells, their configs, the local executor against running cells one by
one, resubmission of missing and failed cells only, a failed cell reported with its log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.grid import Cell, cell_config, grid_cells
from harness.metric_info import SCHEMA1_METRICS
from harness.results import RunFolder

TINY = ["--profile", "smoke", "--set", "resnet18.epochs=1", "--set", "resnet18.image_size=32",
        "--set", "metrics.bootstrap=20"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cohort cache for the module (the cell jobs inherit it through the environment)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    mp.setenv("HARNESS_CACHE", str(folder))
    mp.setenv("HARNESS_NO_PROGRESS", "1")
    mp.setenv("OMP_NUM_THREADS", "1")
    yield folder
    mp.undo()


def _spec(methods: list[str], seeds: list[int], runs: Path) -> dict:
    return {"methods": methods, "seeds": seeds, "datasets": [None], "profile": "smoke", "overrides": [],
            "config": None, "device": "cpu", "inception_weights": None, "runs_dir": str(runs)}


def test_translating_methods_get_the_feature_method_as_extractor_cells(tmp_path):
    cells = grid_cells(_spec(["cyclegan", "intensity"], [0, 1], tmp_path))
    assert [c.key for c in cells if c.role == "extractor"] == ["resnet18-seed0-embedded", "resnet18-seed1-embedded"]
    assert len({c.key for c in cells}) == len(cells) == 6
    with_feature = grid_cells(_spec(["cyclegan", "resnet18"], [0], tmp_path))
    assert all(c.role == "cell" for c in with_feature)  # the grid's own resnet18 cell serves


def test_train_seeds_run_each_cell_again_on_its_split_with_other_train_seeds(tmp_path):
    spec = {**_spec(["cyclegan", "intensity"], [0, 1], tmp_path), "train_seeds": 2}
    cells = grid_cells(spec)
    assert len({c.key for c in cells}) == len(cells) == 12  # (2 methods + extractor) x 2 seeds x 2 trainings
    assert [c.key for c in cells if c.method == "intensity" and c.seed == 1] == [
        "intensity-seed1-embedded", "intensity-seed1-train1001-embedded"]  # the first: the ordinary run's key
    extractor = [c for c in cells if c.role == "extractor" and c.seed == 0]
    assert [c.train_seed for c in extractor] == [None, 1000]  # translating cells find the feature net of their training
    config = cell_config(spec, Cell(("intensity",), 1, None, train_seed=1001))
    assert (config.seed, config.train_seed, config.training_seed) == (1, 1001, 1001)
    assert cell_config(spec, Cell(("intensity",), 1, None)).to_dict() == cell_config(
        _spec(["cyclegan", "intensity"], [1], tmp_path), Cell(("intensity",), 1, None)).to_dict()


def test_a_cell_config_holds_every_grid_methods_settings(tmp_path):
    spec = _spec(["intensity", "cyclegan"], [3], tmp_path)
    config = cell_config(spec, Cell(("intensity",), 3, None))
    assert config.methods == ("intensity",) and config.seed == 3 and config.output == str(tmp_path)
    # so it loads images at the size one run of intensity + cyclegan (+ its feature method) would
    assert set(config.method_settings) == {"intensity", "cyclegan", "resnet18"}


@pytest.mark.parametrize("argv, message", [
    (["grid", "run", "--method", "intensity"], "choose the seeds"),
    (["grid", "run", "--seeds", "0"], "choose the methods"),
    (["grid", "run", "--method", "intensity", "--seeds", "0", "--data", "/no/such/folder"], "no such folder"),
    (["grid", "run", "--method", "intensity", "--seeds", "0", "--set", "intensity.nope=1"], "intensity.nope"),
    (["grid", "run", "--grid", "x", "--method", "intensity"], "drop method"),
    (["grid", "run", "--method", "intensity", "--seeds", "0", "--train-seeds", "1"], "K >= 2"),
    (["grid", "collect", "nope"], "no grid"),
])
def test_bad_input_is_one_error_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def _rows(runs: Path, run_id: str, method: str) -> list[dict]:
    rows = RunFolder(runs / run_id).read_metrics()
    return sorted((r for r in rows if r["method"] == method and not r.get("other")),
                  key=lambda r: (r["split"], r["domain"], r["metric"], str(r["feature_space"])))


@pytest.mark.slow
def test_local_grid_equals_the_cells_run_one_by_one_and_resubmits_only_what_is_missing(cache, tmp_path, capsys):
    from harness.runner import DataLayer, Runner

    runs = tmp_path / "runs"
    argv = ["grid", "run", "--method", "resnet18", "--method", "intensity", "--seeds", "0", "1", *TINY,
            "--device", "cpu", "--executor", "local", "--output", str(runs)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 of 4 cells complete" in out and "mni152-lesions, test AUROC" in out
    (grid_dir,) = (runs / "grids").iterdir()
    grid = json.loads((grid_dir / "grid.json").read_text())
    assert {(c["method"], c["seed"]) for c in grid["cells"]} == {(m, s) for m in ("resnet18", "intensity") for s in (0, 1)}
    assert all(c["status"] == "complete" and c["run_id"] for c in grid["cells"])
    assert len({c["split_hash"] for c in grid["cells"] if c["seed"] == 0}) == 1  # one split per (seed, dataset)
    localisation = {("intensity", k, (0, 1)) for k in ("pixel_auroc", "dice")}  # the methods with maps
    builtin = [r for r in grid["table"] if r["metric"] in SCHEMA1_METRICS]  # an installed metric plugin adds its own
    assert {(r["method"], r["metric"], tuple(r["seeds"])) for r in builtin} == {
        (m, k, (0, 1)) for m in ("resnet18", "intensity", "shortcut-floor", "shortcut-floor-lr")
        for k in ("auroc", "ap")} | localisation
    # across seeds, the per-volume AUROC is paired too (no suite pairs it within a run); Pixel AUROC
    # and Dice are not, since only the intensity floor has maps here (an installed plugin adds its own)
    builtin_pairs = {"auroc_delta", "ap_delta", "volume_auroc_delta", "pixel_auroc_delta", "dice_delta"}
    assert {(p["metric"], len(p["values"])) for p in grid["paired"] if p["metric"] in builtin_pairs} == {
        ("auroc_delta", 2), ("ap_delta", 2), ("volume_auroc_delta", 2)}
    # every method against the fixed references, on the seeds of cells that each ran one method
    assert {(p["method"], p["other"]) for p in grid["paired"] if p["metric"] == "auroc_delta"} == {
        ("resnet18", "intensity"), ("resnet18", "shortcut-floor"), ("intensity", "shortcut-floor"),
        ("resnet18", "shortcut-floor-lr"), ("intensity", "shortcut-floor-lr")}
    assert all(p["n"] == 2 and not p["exploratory"] and "2 seed(s) cannot reach" in p["floor_note"]
               for p in grid["paired"])
    (share,) = [r["share"] for r in grid["table"] if r["method"] == "shortcut-floor" and r["metric"] == "auroc"]
    assert share is None or len(share["values"]) + len(share["excluded"]) == 2

    # cells run one by one in this process (one per method, to keep the test short): the same rows
    from harness.grid import _read_json

    spec = grid["spec"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the cell jobs (OMP_NUM_THREADS=1): CPU kernels' sums depend on it
    try:
        for cell in (grid["cells"][0], grid["cells"][-1]):
            config = cell_config(spec, Cell(tuple(cell["methods"]), cell["seed"], None)).model_copy(
                update={"output": str(tmp_path / "one-by-one")})
            runner = Runner(config, DataLayer.default(), progress=False)
            assert runner.execute(None, None) == 0
            assert _rows(runs, cell["run_id"], cell["method"]) == _rows(tmp_path / "one-by-one", runner.folder.run_id,
                                                                        cell["method"])
    finally:
        torch.set_num_threads(threads)

    # resubmission: a missing cell record and a failed run are submitted again, nothing else
    keys = [c["key"] for c in grid["cells"]]
    (grid_dir / "cells" / f"{keys[0]}.json").unlink()
    failed = RunFolder(runs / grid["cells"][1]["run_id"])
    failed.write_run({**failed.read_run(), "status": "failed"})
    assert main(["grid", "run", "--grid", grid_dir.name, "--executor", "debug", "--output", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "submitted 2 of 4 cells" in out
    regrid = _read_json(grid_dir / "grid.json")
    assert set(regrid["submissions"][-1]["cells"]) == {keys[0], keys[1]}
    assert regrid["cells"][1]["run_id"] == grid["cells"][1]["run_id"]  # the failed run was continued
    assert all(c["status"] == "complete" for c in regrid["cells"])


@pytest.mark.slow
def test_a_failed_cell_is_reported_with_its_error_and_log(cache, tmp_path, capsys, monkeypatch):
    from baselines.intensity import IntensityBaseline

    def broken(self, train, val, ctx):
        raise RuntimeError("intensity broke on purpose")

    monkeypatch.setattr(IntensityBaseline, "fit", broken)
    runs = tmp_path / "runs"
    assert main(["grid", "run", "--method", "intensity", "--seeds", "0", *TINY, "--executor", "debug",
                 "--output", str(runs)]) == 1
    out = capsys.readouterr().out
    assert "0 of 1 cells complete" in out and "intensity broke on purpose" in out and "log.txt" in out
    (grid_dir,) = (runs / "grids").iterdir()
    (cell,) = json.loads((grid_dir / "grid.json").read_text())["cells"]
    assert cell["status"] == "failed" and "intensity broke on purpose" in cell["error"]
    assert Path(cell["run_log"]).is_file()
