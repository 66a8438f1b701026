"""The runner end to end on a tiny folder dataset with toy methods registered at run time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.cli import main
from harness.registry import METHODS
from harness.results import SCHEMA_VERSION, atomic_write_json, load_run, metric_row
from runner_toys import TOYS, Interruptible, Tunable, make_folder_dataset


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    for name, cls in TOYS.items():
        cls.name = name
        METHODS.register(name, cls)
    yield
    for name in TOYS:
        METHODS.unregister(name)
    Interruptible.interrupt_once = False
    Interruptible.wrapped_by_library = False
    Tunable.fits, Tunable.fail_variant_once = 0, False


@pytest.fixture
def fast_eda(monkeypatch):
    """Replace the (figure-heavy) EDA by a minimal eda.json where the test is not about EDA."""
    import harness.data.eda as eda

    def minimal(source, split, out_dir, progress=True, *, seed=0):
        report = {"n_images": len(source.records)}
        atomic_write_json(Path(out_dir) / "eda.json", report)
        return report

    monkeypatch.setattr(eda, "run_eda", minimal)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("data"))


def _run(dataset: Path, out: Path, *methods: str, extra: tuple[str, ...] = ()) -> tuple[int, Path | None]:
    argv = ["run", "--data", str(dataset), "--profile", "smoke", "--device", "cpu", "--output", str(out),
            "--no-progress", *extra]
    for m in methods:
        argv += ["--method", m]
    before = set(out.iterdir()) if out.exists() else set()
    code = main(argv)
    new = sorted(set(out.iterdir()) - before) if out.exists() else []
    return code, (new[-1] if new else None)


def _rows(run: dict) -> dict[tuple[str, str], dict]:
    return {(r["method"], r["metric"]): r for r in run["metrics"] if r["domain"] == "all"}


def test_end_to_end_writes_the_run_folder(dataset, tmp_path, capsys):
    code, folder = _run(dataset, tmp_path / "runs", "toy-mean")
    assert code == 0
    run = load_run(folder)
    info = run["run"]
    assert info["status"] == "complete" and info["finished"]
    assert info["schema_version"] == SCHEMA_VERSION and info["run_id"] == folder.name
    assert info["config"]["seed"] == 0 and info["profile"] == "smoke"
    assert info["dataset"]["n_images"] == 32 and info["dataset"]["has_masks"] is True
    assert info["dataset"]["bootstrap_unit"] == "image"  # a folder names no subjects
    assert info["split"]["subjects"] is None
    assert info["split"]["hash"] and (folder / "split.csv").is_file()
    assert (folder / "eda" / "eda.json").is_file() and (folder / "log.txt").read_text().strip()
    assert info["packages"]["torch"] == torch.__version__.split("+")[0] or info["packages"]["torch"]
    m = info["methods"]["toy-mean"]
    assert m["status"] == "complete" and m["checkpoint_sha256"] and m["checkpoint"].startswith("methods/")
    assert set(m["timings"]) >= {"fit", "score", "metrics"}
    assert m["threshold"] is not None

    rows = _rows(run)
    scores = pd.read_csv(folder / "scores.csv")
    test = scores[scores.split == "test"]
    from sklearn.metrics import roc_auc_score
    assert rows[("toy-mean", "auroc")]["value"] == pytest.approx(roc_auc_score(test.label, test.score))
    assert rows[("toy-mean", "auroc")]["ci_low"] <= rows[("toy-mean", "auroc")]["value"]
    assert rows[("toy-mean", "ap_chance")]["value"] == pytest.approx(test.label.mean())
    for metric in ("pixel_auroc", "pixel_ap", "dice", "dice_oracle"):
        assert rows[("toy-mean", metric)]["value"] is not None, rows[("toy-mean", metric)]
    assert set(scores.split) == {"val", "test"}
    assert {r["domain"] for r in run["metrics"]} == {"all"}  # folder images carry no stratum
    # run-level rows: the shortcut floor beside the method, and the method paired against it
    floor = rows[("shortcut-floor", "auroc")]
    assert floor["note"].startswith("shortcut floor: input feature")
    deltas = {r["other"]: r for r in run["metrics"] if r["method"] == "toy-mean" and r["metric"] == "auroc_delta"}
    assert set(deltas) == {"shortcut-floor", "shortcut-floor-lr"}  # the fixed references of a run without intensity
    delta = deltas["shortcut-floor"]
    assert delta["p_value"] is not None
    assert delta["value"] == pytest.approx(rows[("toy-mean", "auroc")]["value"] - floor["value"])
    assert json.loads((folder / "eda" / "eda.json").read_text())["input_audit"]["n"] == info["dataset"]["n_images"]

    curves = json.loads((folder / "methods/toy-mean/curves.json").read_text())
    assert curves["loss"] == [1.0, 0.5]
    ex = np.load(folder / "examples/toy-mean.npz")
    assert ex["tumor_real"].shape[1:] == (64, 64) and ex["tumor_kind"][0] == "best"
    assert ex["tumor_mask"].dtype == bool and "tumor_translated" not in ex
    # best tumor example has the highest score
    assert ex["tumor_scores"][0] == test[test.label == 1].score.max()
    assert "toy-mean" in (out := capsys.readouterr().out) and "shortcut-floor" in out


def test_failing_method_is_recorded_and_others_complete(dataset, tmp_path, fast_eda):
    code, folder = _run(dataset, tmp_path / "runs", "toy-fail", "toy-mean")
    assert code == 1
    info = load_run(folder)["run"]
    assert info["status"] == "failed"
    fail = info["methods"]["toy-fail"]
    assert fail["status"] == "failed" and "boom" in fail["error"] and "Traceback" in fail["traceback"]
    assert info["methods"]["toy-mean"]["status"] == "complete"
    assert "boom" in (folder / "log.txt").read_text()
    scores = pd.read_csv(folder / "scores.csv")
    assert set(scores.method) == {"toy-mean"}


def test_same_seed_gives_identical_scores(dataset, tmp_path, fast_eda):
    _, a = _run(dataset, tmp_path / "a", "toy-mean", "toy-resume")
    _, b = _run(dataset, tmp_path / "b", "toy-mean", "toy-resume")
    assert (a / "scores.csv").read_bytes() == (b / "scores.csv").read_bytes()
    assert load_run(a)["metrics"] == load_run(b)["metrics"]
    _, c = _run(dataset, tmp_path / "c", "toy-resume", extra=("--seed", "3"))
    sa = pd.read_csv(a / "scores.csv").query("method == 'toy-resume'").score.to_numpy()
    sc = pd.read_csv(c / "scores.csv").score.to_numpy()
    assert not np.array_equal(sa, sc)  # the seed matters


def test_interrupted_run_resumes_to_the_same_result(dataset, tmp_path, fast_eda):
    _, reference = _run(dataset, tmp_path / "ref", "toy-mean", "toy-resume")

    out = tmp_path / "runs"
    Interruptible.interrupt_once = True
    code, folder = _run(dataset, out, "toy-mean", "toy-resume")
    assert code == 130
    info = load_run(folder)["run"]
    assert info["status"] == "interrupted"
    assert info["methods"]["toy-resume"]["status"] == "interrupted"
    assert info["methods"]["toy-mean"]["status"] == "complete"
    mean_sha = info["methods"]["toy-mean"]["checkpoint_sha256"]

    # a contradicting explicit option is refused with a clear error (exit 2)
    assert main(["run", "--resume", folder.name, "--output", str(out), "--seed", "5"]) == 2

    assert main(["run", "--resume", folder.name, "--output", str(out), "--no-progress"]) == 0
    resumed = load_run(folder)
    assert resumed["run"]["status"] == "complete" and resumed["run"]["resumed"]
    assert resumed["run"]["methods"]["toy-mean"]["checkpoint_sha256"] == mean_sha  # not re-run
    assert (folder / "scores.csv").read_bytes() == (reference / "scores.csv").read_bytes()
    key = lambda r: (r["method"], r["metric"])  # noqa: E731
    assert sorted(resumed["metrics"], key=key) == sorted(load_run(reference)["metrics"], key=key)
    assert len(list(out.iterdir())) == 1  # resumed in place, no new folder


def test_ctrl_c_that_a_library_wrapped_stops_the_run_as_interrupted(dataset, tmp_path, fast_eda):
    """torch.save turns a Ctrl-C inside it into a RuntimeError: the run must stop, resumable,
    not record the method as failed and go on with the next one."""
    Interruptible.interrupt_once, Interruptible.wrapped_by_library = True, True
    code, folder = _run(dataset, tmp_path / "runs", "toy-resume", "toy-mean")
    assert code == 130
    info = load_run(folder)["run"]
    assert info["status"] == "interrupted" and info["methods"]["toy-resume"]["status"] == "interrupted"
    assert info["methods"]["toy-mean"]["status"] == "pending"  # the run did not go on


def test_a_variant_is_scored_from_the_same_fit_as_a_method_of_its_own(dataset, tmp_path, fast_eda):
    """``toy-variant+tuned``: its own run.json entry (supervision, selection, the method's
    checkpoint), metric rows, scores and examples, from one fit of ``toy-variant``."""
    code, folder = _run(dataset, tmp_path / "runs", "toy-variant")
    assert code == 0 and Tunable.fits == 1
    run = load_run(folder)
    methods = run["run"]["methods"]
    assert list(methods) == ["toy-variant", "toy-variant+tuned"]
    base, tuned = methods["toy-variant"], methods["toy-variant+tuned"]
    assert tuned["status"] == "complete" and tuned["variant_of"] == "toy-variant" and "variant_of" not in base
    assert (base["supervision"], tuned["supervision"]) == ("none", "none+val_masks")
    assert tuned["checkpoint_sha256"] == base["checkpoint_sha256"] and tuned["checkpoint"] == base["checkpoint"]
    assert tuned["selected"] == {"aggregate": "max", "variant": "tuned"} and tuned["aggregate"] == "max"
    assert tuned["capabilities"] == ["maps", "scores"] and "fit" not in tuned["timings"]
    rows = _rows(run)
    assert rows[("toy-variant+tuned", "auroc")]["value"] != rows[("toy-variant", "auroc")]["value"]
    assert rows[("toy-variant+tuned", "pixel_auroc")]["value"] is not None
    paired = [r for r in run["metrics"] if r["metric"] == "auroc_delta" and r["method"] == "toy-variant+tuned"]
    assert {r["other"] for r in paired} == {"toy-variant", "shortcut-floor", "shortcut-floor-lr"}
    scores = pd.read_csv(folder / "scores.csv")
    assert scores.groupby(["method", "split"]).size().to_dict() == {
        ("toy-variant", "test"): 8, ("toy-variant", "val"): 4, ("toy-variant+tuned", "test"): 8,
        ("toy-variant+tuned", "val"): 4}
    assert (folder / "examples" / "toy-variant+tuned.npz").is_file()
    assert not (folder / "methods" / "toy-variant+tuned").exists()  # nothing trained, nothing stored


def test_a_failed_variant_fails_the_run_and_resume_scores_it_again(dataset, tmp_path, fast_eda):
    Tunable.fail_variant_once = True
    out = tmp_path / "runs"
    code, folder = _run(dataset, out, "toy-variant")
    info = load_run(folder)["run"]
    assert code == 1 and info["status"] == "failed"
    assert info["methods"]["toy-variant"]["status"] == "complete"
    assert info["methods"]["toy-variant+tuned"]["status"] == "failed"
    assert "fails once" in info["methods"]["toy-variant+tuned"]["error"]
    assert {r["method"] for r in load_run(folder)["metrics"]} >= {"toy-variant"}
    assert "toy-variant+tuned" not in {r["method"] for r in load_run(folder)["metrics"]}
    assert main(["run", "--resume", folder.name, "--output", str(out), "--no-progress"]) == 0
    done = load_run(folder)
    assert done["run"]["methods"]["toy-variant+tuned"]["status"] == "complete"
    assert {"toy-variant", "toy-variant+tuned"} <= {r["method"] for r in done["metrics"]}


def test_translating_method_gets_generative_rows(dataset, tmp_path, fast_eda, monkeypatch):
    import harness.metrics.generative_suite as generative_suite
    import harness.feature_space as feature_space

    seen = {}

    def fake_generative(method, data, *, settings, device, seed, working_size, inception_weights, mri,
                        mri_missing, cache_dir, logger, realism):
        seen.update(data=data, mri=mri, missing=mri_missing, seed=seed)
        return [metric_row(method, "fid", 1.5, domain="tumor", feature_space="mri-resnet18",
                           n=len(data.real["tumor"]))]

    ckpt = tmp_path / "mri.pt"
    ckpt.write_bytes(b"weights")
    monkeypatch.setattr(generative_suite, "evaluate_generative", fake_generative)
    monkeypatch.setattr(feature_space, "dedicated_checkpoint", lambda *a, **k: ckpt)
    code, folder = _run(dataset, tmp_path / "runs", "toy-translate")
    assert code == 0
    assert seen["mri"] is None and str(ckpt) in seen["missing"] and seen["seed"] == 0  # not a checkpoint
    data = seen["data"]
    assert torch.allclose(data.translated["tumor"], 1 - data.real["no_tumor"])
    assert data.real["tumor"].shape[1:] == (1, 64, 64)
    assert data.source_groups["tumor"] == data.real_groups["no_tumor"]
    assert len(data.real_groups["tumor"]) == len(data.real["tumor"])
    run = load_run(folder)
    assert any(r["metric"] == "fid" and r["value"] == 1.5 for r in run["metrics"])
    ex = np.load(folder / "examples/toy-translate.npz")
    assert np.allclose(ex["tumor_translated"], 1 - ex["tumor_real"])
    assert run["run"]["methods"]["toy-translate"]["timings"]["translate"] is not None


def test_usage_errors_exit_2(dataset, tmp_path, capsys):
    assert main(["run", "--data", str(dataset), "--output", str(tmp_path)]) == 2  # no method chosen
    assert main(["run", "--method", "toy-meen", "--output", str(tmp_path)]) == 2
    assert "did you mean" in capsys.readouterr().err.lower()
    assert main(["run", "--resume", "nope", "--output", str(tmp_path)]) == 2
    capsys.readouterr()
    assert main(["run", "--method", "toy-mean", "--data", str(tmp_path / "missing"),
                 "--profile", "smoke", "--output", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data path") and "does not exist" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no run folder left
    assert main(["run", "--method", "nonexistent", "--output", str(tmp_path)]) == 2
    assert "did you mean" not in capsys.readouterr().err.lower()  # only close names are suggested


def test_seeds_make_one_run_each_and_print_the_spread(dataset, tmp_path, fast_eda, capsys):
    out = tmp_path / "runs"
    code, _ = _run(dataset, out, "toy-mean", extra=("--seeds", "0", "1", "2"))
    assert code == 0
    runs = [load_run(folder) for folder in sorted(out.iterdir()) if (folder / "run.json").is_file()]
    assert sorted(r["run"]["seed"] for r in runs) == [0, 1, 2]
    aurocs = [_rows(r)[("toy-mean", "auroc")]["value"] for r in sorted(runs, key=lambda r: r["run"]["seed"])]
    printed = capsys.readouterr().out
    table = printed[printed.index("test AUROC"):]  # the grid's per-metric table: method, one column per seed, spread
    (line,) = [ln for ln in table.splitlines() if ln.startswith("toy-mean")][:1]
    assert line.split()[1:4] == [f"{v:.3f}" for v in aurocs]
    assert f"{np.mean(aurocs):.3f} ± {np.std(aurocs, ddof=1):.3f}" in line
    # the primary inference: each method minus the shortcut floor, tested across the 3 seeds
    tests = printed[printed.index("each method minus the fixed references"):]
    assert any(ln.split()[1:3] == ["toy-mean", "shortcut-floor"] for ln in tests.splitlines())
    assert "Wilcoxon p" in tests and "note: 3 seed(s) cannot reach p < 0.05 in a rank test" in tests
    # the series is a grid of whole runs, run here: its folder says which runs it holds
    (grid_dir,) = (out / "grids").iterdir()
    grid = json.loads((grid_dir / "grid.json").read_text())
    assert grid["spec"]["together"] and [c["seed"] for c in grid["cells"]] == [0, 1, 2]
    assert {c["run_id"] for c in grid["cells"]} == {r["run"]["run_id"] for r in runs}
    assert main(["run", "--method", "toy-mean", "--seeds", "0", "1", "--seed", "3", "--output", str(out)]) == 2
    assert main(["run", "--seeds", "0", "1", "--resume", runs[0]["run"]["run_id"], "--output", str(out)]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_train_seeds_of_one_split_give_training_noise_and_no_split_noise(dataset, tmp_path, fast_eda, capsys):
    """Two --train-seeds runs of one split: same split, other training; the summary puts all of
    their spread into training noise."""
    out = tmp_path / "runs"
    code, _ = _run(dataset, out, "toy-noisy", extra=("--seed", "100", "--train-seeds", "2"))
    assert code == 0
    runs = sorted((load_run(f) for f in out.iterdir() if (f / "run.json").is_file()),
                  key=lambda r: r["run"]["config"].get("train_seed", 0))
    assert [r["run"]["seed"] for r in runs] == [100, 100]
    assert "train_seed" not in runs[0]["run"]["config"] and runs[1]["run"]["config"]["train_seed"] == 1100
    assert runs[0]["run"]["split"]["hash"] == runs[1]["run"]["split"]["hash"]
    aurocs = [_rows(r)[("toy-noisy", "auroc")]["value"] for r in runs]
    (grid_dir,) = (out / "grids").iterdir()
    grid = json.loads((grid_dir / "grid.json").read_text())
    (entry,) = [r for r in grid["table"] if r["method"] == "toy-noisy" and r["metric"] == "auroc"]
    assert entry["seeds"] == [100] and entry["trainings"] == [aurocs]
    assert entry["split_sd"] == 0.0 and entry["train_sd"] > 0
    assert entry["train_sd"] == pytest.approx(np.std(aurocs, ddof=1))
    printed = capsys.readouterr().out
    line = next(ln for ln in printed[printed.index("test AUROC"):].splitlines() if ln.startswith("toy-noisy"))
    assert line.split()[-2:] == ["0.000", f"{entry['train_sd']:.3f}"]  # split sd, train sd


@pytest.mark.slow
def test_killed_process_leaves_a_resumable_run(dataset, tmp_path, fast_eda):
    """SIGTERM to a real ``python -m harness run`` process: run.json says interrupted, and
    ``--resume`` completes it."""
    out = tmp_path / "runs"
    script = tmp_path / "cli.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from runner_toys import TOYS\n"
        "from harness.registry import METHODS\n"
        "for n, c in TOYS.items():\n"
        "    c.name = n\n"
        "    METHODS.register(n, c)\n"
        "import harness.data.eda as eda\n"
        "eda.run_eda = lambda source, split, out, progress=True, seed=0: {}  # not under test\n"
        "from harness.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    argv = [sys.executable, str(script), "run", "--data", str(dataset), "--profile", "smoke", "--device", "cpu",
            "--output", str(out), "--no-progress", "--method", "toy-mean", "--method", "toy-sleep"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HARNESS_NO_PROGRESS": "1"})
    try:
        deadline = time.time() + 120
        while not list(out.glob("*/methods/toy-sleep/started")):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the run never reached toy-sleep"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (folder,) = list(out.iterdir())
    info = load_run(folder)["run"]
    assert info["status"] == "interrupted" and info["methods"]["toy-sleep"]["status"] == "interrupted"
    assert info["methods"]["toy-mean"]["status"] == "complete"
    assert main(["run", "--resume", folder.name, "--output", str(out), "--no-progress"]) == 0
    done = load_run(folder)
    assert done["run"]["status"] == "complete"
    assert {r["method"] for r in done["metrics"]} == {"toy-mean", "toy-sleep", "shortcut-floor", "shortcut-floor-lr"}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """resnet18 + intensity on the embedded cohort, smoke profile (the documented CI check)."""
    base = tmp_path_factory.mktemp("real")
    out = base / "runs"
    argv = ["run", "--method", "resnet18", "--method", "intensity", "--profile", "smoke",
            "--device", "cpu", "--output", str(out), "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(base / "cache"))
        mp.setenv("HARNESS_NO_PROGRESS", "1")
        assert main(argv) == 0
    (folder,) = list(out.iterdir())
    return folder


@pytest.mark.slow
def test_end_to_end_with_the_real_methods(real_run):
    run = load_run(real_run)
    info = run["run"]
    assert info["status"] == "complete" and info["dataset"]["name"] == "mni152-lesions"
    assert info["dataset"]["bootstrap_unit"] == "subject"
    subjects = info["split"]["subjects"]  # smoke cohort: 12 subjects, each with one sequence
    assert sum(v["with_tumor"] + v["without"] for v in subjects.values()) == 12
    assert all(sum(v["strata"].values()) == v["with_tumor"] + v["without"] for v in subjects.values())
    for name in ("resnet18", "intensity"):
        assert info["methods"][name]["status"] == "complete", info["methods"][name]["error"]
        rows = _rows(run)
        assert rows[(name, "auroc")]["value"] is not None
        assert (real_run / "examples" / f"{name}.npz").is_file()
    assert info["methods"]["resnet18"]["checkpoint_sha256"]
    assert (real_run / "methods/resnet18/curves.json").is_file()
    if "maps" in info["methods"]["intensity"]["capabilities"]:
        assert rows[("intensity", "pixel_auroc")]["value"] is not None
    # the embedded cohort's sequences are strata: detection rows per sequence, on test images only
    strata = {r["domain"]: r["n"] for r in run["metrics"]
              if r["method"] == "resnet18" and r["metric"] == "auroc" and r["domain"].startswith("stratum:")}
    assert set(strata) <= {"stratum:T1", "stratum:T2", "stratum:FLAIR"} and len(strata) >= 2
    assert sum(strata.values()) == rows[("resnet18", "auroc")]["n"]


@pytest.mark.slow
def test_resnet18_scores_are_reproducible(real_run, tmp_path):
    """Same seed, same device: resnet18 alone gives the same scores and curves as it did next to
    intensity (every method starts from the run seed)."""
    out = tmp_path / "runs"
    argv = ["run", "--method", "resnet18", "--profile", "smoke", "--device", "cpu", "--output", str(out),
            "--no-progress"]
    assert main(argv) == 0
    (folder,) = list(out.iterdir())
    a = pd.read_csv(real_run / "scores.csv").query("method == 'resnet18'").reset_index(drop=True)
    b = pd.read_csv(folder / "scores.csv")
    pd.testing.assert_frame_equal(a, b)
    curves = "methods/resnet18/curves.json"
    assert json.loads((real_run / curves).read_text()) == json.loads((folder / curves).read_text())
