"""``harness.run_benchmark``: the command line's run, from Python, read back as frames.

Toy methods on a tiny folder dataset (tests/runner_toys.py), so each run takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness
from harness.benchmark import run_arguments
from harness.cli import build_parser, main
from harness.registry import METHODS, UnknownNameError
from harness.results import atomic_write_json
from runner_toys import TOYS, make_folder_dataset


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    """Toys registered, a private cache, and the EDA reduced to its eda.json (not what is tested)."""
    import harness.data.eda as eda

    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    def minimal(source, split, out_dir, progress=True, *, seed=0):
        report = {"n_images": len(source.records)}
        atomic_write_json(Path(out_dir) / "eda.json", report)
        return report

    monkeypatch.setattr(eda, "run_eda", minimal)
    for name, cls in TOYS.items():
        cls.name = name
        METHODS.register(name, cls)
    yield
    for name in TOYS:
        METHODS.unregister(name)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("data"))


def _comparable(folder: Path) -> tuple[dict, list[dict], str]:
    """What must not depend on how the run was started: config (less its output folder), rows, scores."""
    info = json.loads((folder / "run.json").read_text())
    config = {k: v for k, v in info["config"].items() if k != "output"}
    return config, json.loads((folder / "metrics.json").read_text())["rows"], (folder / "scores.csv").read_text()


def test_the_api_and_the_command_line_make_the_same_run(dataset, tmp_path):
    results = harness.run_benchmark(["toy-mean", "toy-noisy"], profile="smoke", seeds=100, data=dataset,
                                    device="cpu", output=tmp_path / "api")
    assert main(["run", "--method", "toy-mean", "--method", "toy-noisy", "--profile", "smoke", "--seed", "100",
                 "--data", str(dataset), "--device", "cpu", "--output", str(tmp_path / "cli"), "--no-progress"]) == 0
    (api,) = results.folders
    (cli,) = [p for p in (tmp_path / "cli").iterdir() if (p / "run.json").is_file()]
    assert _comparable(api) == _comparable(cli)
    command = json.loads((api / "run.json").read_text())["command"]
    assert command.startswith("python -m harness run --method=toy-mean --method=toy-noisy --profile=smoke --seed=100")
    # the frames hold the run's numbers
    stored = {r["method"]: r["value"] for r in _comparable(api)[1]
              if r["metric"] == "auroc" and r["domain"] == "all" and r["other"] is None}
    assert results.auroc().iloc[0].to_dict() == stored
    assert list(results.runs["status"]) == ["complete"] and results.method_order()[:2] == ["toy-mean", "toy-noisy"]


def test_several_seeds_give_one_run_each_and_the_spread(dataset, tmp_path):
    results = harness.run_benchmark("toy-mean", profile="smoke", seeds=[100, 101], data=dataset, device="cpu",
                                    output=tmp_path / "runs")
    assert sorted(results.runs["seed"]) == [100, 101] and len(results.folders) == 2
    summary = results.seed_summary.query("method == 'toy-mean' and metric == 'auroc' and other.isna()")
    (row,) = summary.itertuples()
    per_seed = results.auroc()["toy-mean"]
    assert row.seeds == (100, 101) and row.mean == pytest.approx(per_seed.mean())
    assert not results.seed_summary.query("other == 'shortcut-floor'").empty  # tested across the seeds


def test_a_failing_method_warns_and_its_run_says_so(dataset, tmp_path):
    with pytest.warns(RuntimeWarning, match="did not complete"):
        results = harness.run_benchmark(["toy-fail", "toy-mean"], profile="smoke", seeds=100, data=dataset,
                                        device="cpu", output=tmp_path / "runs")
    assert list(results.runs["status"]) == ["failed"]
    assert set(results.scores["method"]) == {"toy-mean"}


def test_bad_input_raises_before_anything_is_written(dataset, tmp_path):
    with pytest.raises(UnknownNameError, match="unknown method 'toy-men'. Did you mean 'toy-mean'"):
        harness.run_benchmark("toy-men", profile="smoke", seeds=100, data=dataset, output=tmp_path / "runs")
    with pytest.raises(ValueError, match="--set expects SECTION.KEY=VALUE"):
        harness.run_benchmark("toy-mean", profile="smoke", overrides=["epochs=3"], output=tmp_path / "runs")
    with pytest.raises(ValueError, match="choose the methods"):
        harness.run_benchmark(profile="smoke", output=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_run_arguments_are_the_command_lines_options():
    argv = run_arguments(["intensity", "resnet18"], profile="smoke", seeds=[100, 101], data={"brats": "/d/b"},
                         overrides={"resnet18": {"epochs": 1}, "split.val_fraction": 0.2}, output="out")
    assert argv == ["run", "--method=intensity", "--method=resnet18", "--profile=smoke", "--seeds", "100", "101",
                    "--data=brats=/d/b", "--set=resnet18.epochs=1", "--set=split.val_fraction=0.2", "--output=out",
                    "--device=auto", "--no-progress"]
    args = build_parser().parse_args(argv)
    assert args.method == ["intensity", "resnet18"] and args.seeds == [100, 101] and args.data == ["brats=/d/b"]
    assert args.overrides == ["resnet18.epochs=1", "split.val_fraction=0.2"]
    assert run_arguments("all", seeds=7)[1:4] == ["--all", "--profile=quick", "--seed=7"]
    assert run_arguments("x", data="-odd-folder")[3] == "--data=-odd-folder"  # never read as an option
    with pytest.raises(TypeError):
        run_arguments("all", seeds=["100"])
    with pytest.raises(TypeError):
        run_arguments("all", overrides="resnet18.epochs=1")


def test_import_harness_stays_light():
    import subprocess
    import sys

    code = "import sys, harness; print(sorted({'pandas', 'torch', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
