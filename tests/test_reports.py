"""Report site: run pages, index, compare pages, idempotency, escaping, Sphinx build."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.compare import compare_runs
from harness.metrics.curves import detection_curves
from reports.compare import render_comparison
from reports.escape import escape_text, fence, slug
from reports.render import render_all, report_command

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
REPO = Path(__file__).resolve().parents[1]
EVIL = "evil_<script>alert(1)</script>_*bold*_[link](x)_|pipe|.png"


def _ci(value: float, half: float) -> dict:
    return {"value": value, "std": None, "ci_low": value - half, "ci_high": value + half, "note": None}


def make_run(runs: Path, run_id: str, status: str = "complete", seed: int = 0, created: str = "2026-01-01T10:00:00+00:00",
             eda: dict | None = None, cyclegan_status: str = "complete") -> Path:
    """A run folder as docs/results-schema.md describes it, with scores from a seeded distribution."""
    rng = np.random.default_rng(seed)
    folder = runs / run_id
    (folder / "eda").mkdir(parents=True)
    methods = {
        "resnet18": {"status": "complete", "error": None, "traceback": None, "capabilities": ["scores"],
                     "supervision": "supervised",
                     "timings": {"fit": 12.3, "score": 0.8, "translate": None, "metrics": 0.4}, "threshold": 0.5},
        "intensity": {"status": "complete", "error": None, "capabilities": ["scores"], "supervision": "none",
                      "timings": {"fit": 0.1, "score": 0.2}, "threshold": 1.7},
        "cyclegan": {"status": cyclegan_status, "capabilities": ["scores", "maps", "translates"],
                     "supervision": "image_labels",
                     "error": None if cyclegan_status == "complete" else "RuntimeError: out of memory <*here*>",
                     "timings": {"fit": 80.0}, "threshold": None, "aggregate": "max"},
    }
    run = {
        "schema_version": 1, "run_id": run_id, "status": status, "created": created,
        "finished": None if status == "running" else created, "harness_version": "0.1.0",
        "git_commit": "abc123+dirty", "command": "python -m harness run --all", "profile": "smoke", "seed": seed,
        "device": "cpu", "config": {"seed": seed}, "packages": {"python": "3.11.7", "torch": "2.14.1"},
        "dataset": {"name": "mni152-lesions", "root": "/data/[my]_*root*", "fingerprint": "f00d", "n_images": 80,
                    "n_skipped": 1, "has_masks": True, "bootstrap_unit": "subject"},
        "split": {"hash": "5p1i7", "manifest": "split.csv",
                  "counts": {"train": {"tumor": 24, "no_tumor": 24}, "val": {"tumor": 8, "no_tumor": 8},
                             "test": {"tumor": 8, "no_tumor": 8}},
                  "subjects": {s: {"with_tumor": 3, "without": 2, "strata": {"T1": 2, "T2": 3}}
                               for s in ("train", "val", "test")},
                  "n_duplicate_groups": 0, "n_cross_label_duplicates": 0},
        "methods": methods, "timings": {"data": 3.2, "split": 0.4, "eda": 2.0, "total": 100.0},
        "notes": ["Inception weights missing: Inception-v3 rows have no values"],
    }
    (folder / "run.json").write_text(json.dumps(run))
    labels = np.array([0] * 20 + [1] * 20)
    rows, score_rows = [], []
    shift = {"resnet18": 2.0, "intensity": 1.0, "cyclegan": 0.5}
    for method, d in shift.items():
        for split in ("val", "test"):
            scores = rng.normal(labels * d, 1.0)
            score_rows += [[method, split, f"sub-{i:03d}/z{i:03d}", int(l), float(s)]
                           for i, (l, s) in enumerate(zip(labels, scores))]
        auroc = float(0.5 + 0.15 * d)
        rows += [{"method": method, "split": "test", "domain": "all", "metric": m, "feature_space": None, "n": 40,
                  **_ci(v, 0.05), "note": "threshold=0.5" if m in ("sensitivity", "specificity") else None}
                 for m, v in (("auroc", auroc), ("ap", auroc - 0.02), ("sensitivity", 0.8),
                              ("specificity", 0.7), ("balanced_accuracy", 0.75))]
        rows.append({"method": method, "split": "test", "domain": "all", "metric": "ap_chance", "feature_space": None,
                     "value": 0.5, "std": None, "ci_low": None, "ci_high": None, "n": 40, "note": None})
    for stratum, auroc, note in (("FLAIR", 0.99, None), ("T1", None, "not computed: only one class in test")):
        for m, v in (("auroc", auroc), ("ap", auroc), ("sensitivity", 0.9), ("specificity", 0.8)):
            ci = _ci(v, 0.04) if v is not None else {"value": None, "std": None, "ci_low": None, "ci_high": None}
            rows.append({"method": "intensity", "split": "test", "domain": f"stratum:{stratum}", "metric": m,
                         "feature_space": None, "n": 20, **ci, "note": note})
    rows += [{"method": "cyclegan", "split": "test", "domain": "all", "metric": "pixel_auroc", "feature_space": None,
              "n": 40, **_ci(0.81, 0.03)},
             {"method": "cyclegan", "split": "test", "domain": "all", "metric": "best_dice", "feature_space": None,
              "value": 0.31, "std": None, "ci_low": None, "ci_high": None, "n": 40, "note": "threshold 0.42"}]
    for domain in ("tumor", "no_tumor"):
        for space in ("inception-v3", "mri-resnet18"):
            missing = space == "inception-v3"
            note = "Inception weights missing (--inception-weights PATH)" if missing else None
            for metric, value, std in (("fid", 40.0 + seed, None), ("isc", 1.8, 0.1), ("kid", 0.012, 0.003),
                                       ("fid_reference", 10.0, None), ("fid_relative", 4.0 + seed / 10, None)):
                rows.append({"method": "cyclegan", "split": "test", "domain": domain, "metric": metric,
                             "feature_space": space, "value": None if missing else value,
                             "std": None if missing else std, "ci_low": None, "ci_high": None, "n": 20, "note": note})
    (folder / "metrics.json").write_text(json.dumps({"schema_version": 1, "rows": rows}))
    with (folder / "scores.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "split", "id", "label", "score"])
        writer.writerows(score_rows)
    curves = detection_curves(pd.DataFrame(score_rows, columns=["method", "split", "id", "label", "score"]))
    (folder / "curves").mkdir()
    (folder / "curves" / "detection.json").write_text(json.dumps({"schema_version": 1, **curves}))
    for method, series in (("resnet18", {"train_loss": [0.7, 0.5, 0.4], "val_auroc": [0.6, 0.7, 0.8]}),
                           ("cyclegan", {"loss_G": [5.0, 3.0, 2.5], "loss_D_A": [0.5, 0.3, None]})):
        (folder / "methods" / method).mkdir(parents=True)
        (folder / "methods" / method / "curves.json").write_text(json.dumps({"epoch": [1, 2, 3], **series}))
    (folder / "examples").mkdir()
    arrays = {}
    for domain in ("tumor", "no_tumor"):
        arrays[f"{domain}_real"] = rng.random((2, 16, 16), dtype=np.float32)
        arrays[f"{domain}_translated"] = rng.random((2, 16, 16), dtype=np.float32)
        arrays[f"{domain}_map"] = rng.random((2, 16, 16), dtype=np.float32)
        arrays[f"{domain}_mask"] = rng.random((2, 16, 16)) > 0.8
        arrays[f"{domain}_ids"] = np.array(["sub-001/z010", "we$ird_$id$"])
        arrays[f"{domain}_scores"] = np.array([0.9, 0.1])
        arrays[f"{domain}_kind"] = np.array(["best", "worst"])
    np.savez(folder / "examples" / "cyclegan.npz", **arrays)
    np.savez(folder / "examples" / "resnet18.npz",
             **{k: v for k, v in arrays.items() if "translated" not in k and "map" not in k})
    eda = eda if eda is not None else {  # the shape harness.data.eda writes
        "eda_version": 1, "dataset": {"name": "mni152-lesions", "root": "/data", "n_images": 80, "n_skipped": 1},
        "labels": ["no_tumor", "tumor"],
        "counts": {"per_label": {"tumor": 40, "no_tumor": 40}, "per_split": {"train": {"tumor": 24, "no_tumor": 24}}},
        "resolution": {"width": {"min": 64, "median": 64, "max": 64}, "height": {"min": 64, "median": 64, "max": 64},
                       "n_distinct": 1, "most_common": [[64, 64, 80]]},
        "intensity": {"bin_edges": np.linspace(0, 1, 33).tolist(),
                      "per_label": {"tumor": {"n_images": 8, "hist": [1 / 32] * 32, "mean": 0.31}}},
        "skipped": {"count": 1, "by_reason": {"not an image": 1}, "files": [{"path": EVIL, "reason": "not an image"}]},
        "duplicates": {"split_hash": "5p1i7", "n_groups": 0, "groups": [], "n_cross_label": 0, "cross_label": []},
        "shortcut_audit": {"threshold": 0.7, "n": 80, "flagged": ["mean_brightness"],
                           "features": [{"feature": "mean_brightness", "auroc": 0.93, "strength": 0.93,
                                         "flagged": True, "note": None}]},
        "figures": ["intensity_histogram.png"], "sample_ids": {"tumor": ["sub-001/z010"]},
    }
    (folder / "eda" / "eda.json").write_text(json.dumps(eda))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().hist(rng.random(50))
    fig.savefig(folder / "eda" / "intensity_histogram.png")
    return folder


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def _compare(runs: Path, out: Path, run_a: str, run_b: str) -> Path:
    """What ``python -m harness compare`` does: the harness writes the comparison, the report renders it."""
    written = compare_runs(run_a, run_b, runs)
    assert render_comparison(written, runs, out) == 0
    return written


def _mtimes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_escape_text_escapes_every_metacharacter():
    out = escape_text("a*b_c[d](e)<f>#|`{g}` h\nnext")
    for ch in "*_[]()<>#|`{}":
        assert f"\\{ch}" in out
    assert "\n" not in out
    assert fence("x ```` y").startswith("`````text\n")
    assert slug("20260101-100000-1a2b3c4d") == "20260101-100000-1a2b3c4d"
    assert slug("a b") != slug("a-b") and "/" not in slug("../x")


def test_report_renders_pages_index_and_figures(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "20260101-100000-aaaaaaaa", seed=0, created="2026-01-01T10:00:00+00:00")
    make_run(runs, "20260102-100000-bbbbbbbb", seed=1, created="2026-01-02T10:00:00+00:00",
             status="failed", cyclegan_status="failed")
    make_run(runs, "20260103-100000-cccccccc", status="running", created="2026-01-03T10:00:00+00:00")
    (runs / "20260104-broken").mkdir()
    (runs / "20260104-broken" / "run.json").write_text("{not json")
    assert report_command(_args(runs=str(runs), out=str(out))) == 0

    page = (out / "20260101-100000-aaaaaaaa.md").read_text()
    assert page.startswith("% report-stamp: ")
    # results first: the headline block and the forest plot come before provenance and the dataset
    assert page.index("::::{container} headline") < page.index("forest.png") < page.index("## What ran") \
        < page.index("## Dataset")
    (headline,) = [ln for ln in page.splitlines() if ln.startswith("| **resnet18** | supervised |")]
    assert "0.800 [0.75–0.85]{.ci}" in headline  # resnet18 AUROC with its CI, compact
    assert r"| Method | Supervision | AUROC | AP \(chance 0.500\) | Pixel AUROC | Dice \(oracle threshold\) |" in page
    # best_dice of older runs, read as dice_oracle, titled as the schema-1 infos say (the run has none)
    (threshold_header,) = [ln for ln in page.splitlines() if ln.startswith("| Method | Threshold")]
    assert threshold_header.endswith(r"| Dice \(oracle threshold\) |")
    assert "1.800 [± 0.100]{.ci}" in page and "0.0120 [± 0.0030]{.ci}" in page
    # the all-empty space is one line, not a table of dashes
    assert _section(page, "### Generated images").count("Inception weights missing") == 1
    assert "resampling whole subjects" in page
    assert "| split | with tumor | without | T1 | T2 |" in page and "| test | 3 | 2 | 2 | 3 |" in page
    # a known threshold has its own column, not a note per rate; cyclegan's (no threshold in run.json) is one footnote
    assert page.count("threshold=0.5") == 1
    assert "### By stratum" in page and "0.990 [0.95–1.03]{.ci}" in page  # intensity on FLAIR
    assert r"**T1** \(20 test images, tumor share —\): no method has a value: not computed: only one class" in page
    assert "### Shortcut audit of the files" in page and "Flagged: mean brightness" in page
    assert "### Skipped files" in page
    assert "{download}`metrics.csv <20260101-100000-aaaaaaaa/metrics.csv>`" in page
    assert "{download}`scores.csv <20260101-100000-aaaaaaaa/scores.csv>`" in page
    figs = out / "20260101-100000-aaaaaaaa"
    for name in ("forest.png", "roc.png", "pr.png", "training-resnet18.png", "training-cyclegan.png",
                 "grid-cyclegan-tumor.png", "grid-resnet18-no_tumor.png", "eda/intensity_histogram.png"):
        assert (figs / name).stat().st_size > 1000, name
        assert f"20260101-100000-aaaaaaaa/{name}" in page
    assert (figs / "scores.csv").read_bytes() == (runs / "20260101-100000-aaaaaaaa" / "scores.csv").read_bytes()
    for name in ("forest", "roc", "pr"):  # the paper figures link their vector files, which exist
        for fmt in ("pdf", "svg"):
            assert f"{{download}}`{fmt.upper()} <20260101-100000-aaaaaaaa/{name}.{fmt}>`" in page, (name, fmt)
            assert (figs / f"{name}.{fmt}").stat().st_size > 1000

    failed = (out / "20260102-100000-bbbbbbbb.md").read_text()
    assert "**Not every method finished:** cyclegan failed: RuntimeError: out of memory" in failed
    assert failed.index("Not every method finished") < failed.index("## Results")
    assert "out of memory" in failed[failed.index("## Failures"):]
    running = (out / "20260103-100000-cccccccc.md").read_text()
    assert "**No results yet:** still running" in running
    assert "## Results" not in running and "roc.png" not in running

    index = (out / "index.md").read_text()
    board = index[index.index("## Test AUROC by method"):index.index("## Translated images against real ones")]
    assert board.index("[20260102-100000-bbbbbbbb]") < board.index("[20260101-100000-aaaaaaaa]")  # newest first
    assert "20260103-100000-cccccccc" not in board  # no results: not a column
    (row,) = [ln for ln in board.splitlines() if ln.startswith("| **cyclegan** |")]
    assert row.split(" | ")[2:] == ["failed", "0.575 [0.52–0.62]{.ci} |"]  # failed in b, its AUROC in a
    fid = index[index.index("## Translated images against real ones"):index.index("## Runs with results")]
    # the relative FID first, the raw FID and its real-vs-real reference beside it
    assert "### Relative FID, mri-resnet18 features" in fid
    assert "| **cyclegan** | tumor | failed | 4.000 [FID 40.00 · ref 10.00]{.ci} |" in fid
    assert "FID, inception-v3 features: no value in any run shown" in fid
    assert ":hidden:" in index[index.index(":caption: Runs"):]  # the runs table lists them; no second list
    runs_table = index[index.index("## Runs with results"):]
    assert r"partial: cyclegan failed" in runs_table
    unfinished = index[index.index("## Runs without results"):]
    assert "[20260103-100000-cccccccc](20260103-100000-cccccccc.md)" in unfinished and "**running**" in unfinished
    assert "could not be read" in index and "20260104-broken" in index


def test_index_pools_no_runs_itself_and_points_to_the_series_summary(tmp_path):
    """Reports compute nothing: runs made one seed at a time get no across-seed numbers on the
    index (a `run --seeds` series has its grid's stored summary); the index says where they are."""
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "20260101-100000-aaaaaaaa", seed=0, created="2026-01-01T10:00:00+00:00")
    make_run(runs, "20260102-100000-bbbbbbbb", seed=1, created="2026-01-02T10:00:00+00:00")
    assert report_command(_args(runs=str(runs), out=str(out))) == 0
    index = (out / "index.md").read_text()
    assert "## Across seeds" not in index and "mean ± sd" not in index.split("## Runs with results")[1]
    assert "--table seeds" in index


def _spread_entry(dataset: str, method: str, metric: str, values: dict[int, float], **extra) -> dict:
    """One table/paired entry of grid.json (harness/grid.py collect); mean and sd are not read."""
    return {"dataset": dataset, "method": method, "metric": metric, "seeds": list(values),
            "values": list(values.values()), "mean": 0.0, "sd": 0.0, **extra}


def _share(values: list[float]) -> dict:
    """A table entry's share of the floor-to-ceiling gap (harness/seed_inference.py); a t-interval with two seeds."""
    mean = sum(values) / len(values)
    ci = (mean - 1.59, mean + 1.59) if len(values) > 1 else (None, None)
    return {"seeds": list(range(len(values))), "values": values, "mean": mean, "ci_low": ci[0], "ci_high": ci[1],
            "excluded": []}


def make_grid(runs: Path, grid_id: str, cell_runs: dict[tuple[str, int], tuple[str | None, str, str | None]]) -> Path:
    """A collected grid.json of resnet18 and intensity x seeds 0, 1 on the embedded cohort;
    ``cell_runs``: (method, seed) -> (run id, status, error)."""
    ds = "mni152-lesions"
    cells = [{"key": f"{m}-seed{s}-embedded", "method": m, "seed": s, "dataset": ds, "role": "cell", "run_id": run_id,
              "status": status, "error": error, "log": f"/cluster/grids/{grid_id}/submitit/{s}_0_log.err",
              "run_log": f"/cluster/runs/{run_id}/log.txt" if run_id else None, "split_hash": "5p1i7"}
             for (m, s), (run_id, status, error) in cell_runs.items()]
    grid = {"schema_version": 1, "grid_id": grid_id, "created": "2026-01-03T09:00:00+00:00",
            "collected": "2026-01-03T11:00:00+00:00",
            "spec": {"methods": ["resnet18", "intensity"], "seeds": [0, 1], "datasets": [None], "profile": "smoke",
                     "overrides": [], "config": None, "device": "cpu", "inception_weights": None,
                     "runs_dir": str(runs)},
            "submissions": [], "cells": cells,
            "gap": {"floor": "intensity", "ceiling": "resnet18", "ci": 0.95},
            "table": [_spread_entry(ds, "resnet18", "auroc", {0: 0.80, 1: 0.90}, trainings=[[0.78, 0.82], [0.90]],
                                    share={**_share([1.0]), "excluded": [1]}),
                      _spread_entry(ds, "resnet18", "ap", {0: 0.70, 1: 0.75}),
                      _spread_entry(ds, "intensity", "auroc", {0: 0.60}, share=_share([0.0])),
                      _spread_entry(ds, "intensity", "ap", {0: 0.55}),
                      _spread_entry(ds, "autoencoder", "auroc", {0: 0.70, 1: 0.75}, share=_share([0.5, 0.25]))],
            "paired": [_spread_entry(ds, "resnet18", "auroc_delta", {0: 0.20}, other="intensity", agree=1,
                                     exploratory=False, n=1, wilcoxon_p=None, wilcoxon_p_holm=None, t_p=None,
                                     min_p=1.0, floor_note="1 seed(s) cannot reach p < 0.05 in a rank test",
                                     note="one seed: nothing to test across seeds"),
                       _spread_entry(ds, "resnet18", "auroc_delta", {0: 0.10, 1: 0.15}, other="autoencoder", agree=2,
                                     exploratory=True, n=2, wilcoxon_p=0.5, wilcoxon_p_holm=None, t_p=0.1257,
                                     min_p=0.5, floor_note="2 seed(s) cannot reach p < 0.05 in a rank test",
                                     note=None)],
            "warnings": []}
    folder = runs / "grids" / grid_id
    folder.mkdir(parents=True)
    (folder / "grid.json").write_text(json.dumps(grid))
    return folder


def test_index_shows_a_grid_as_one_table_and_a_malformed_grid_as_a_notice(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "r18-s0")
    make_run(runs, "int-s1", status="failed")
    make_grid(runs, "20260103-090000-abcd1234", {
        ("resnet18", 0): ("r18-s0", "complete", None), ("resnet18", 1): ("r18-s1", "complete", None),
        ("intensity", 0): ("int-s0", "complete", None),
        ("intensity", 1): ("int-s1", "failed", "intensity: RuntimeError: broke <*on purpose*>"),
    })
    (runs / "grids" / "20260104-bad").mkdir(parents=True)
    (runs / "grids" / "20260104-bad" / "grid.json").write_text('{"schema_version": 1, "spec": {"profile": 3}')
    (runs / "grids" / "20260105-odd").mkdir()
    (runs / "grids" / "20260105-odd" / "grid.json").write_text('{"schema_version": 1, "spec": {"profile": 3}}')
    assert report_command(_args(runs=str(runs), out=str(out))) == 0
    assert "skipped grid" in capsys.readouterr().out
    index = (out / "index.md").read_text()
    section = index[index.index("## Grids"):index.index("To compare two runs")]
    assert "### Grid 20260103-090000-abcd1234" in section
    assert "Profile smoke; 2 method\\(s\\) x 2 seed\\(s\\) \\(0, 1\\) x 1 dataset\\(s\\); 3 of 4 cells complete" in section
    assert (r"| Method | AUROC mean ± sd \(min-max\) | AP mean ± sd \(min-max\) "
            r"| AUROC share of the intensity → resnet18 gap \[95% CI\] | Seed 0 | Seed 1 |") in section
    table, paired_table = section.split("Paired differences on mni152-lesions, each method minus a fixed reference")
    (r18,) = [ln for ln in table.splitlines() if ln.startswith("| **resnet18** |")]
    # mean ± sd over seeds, split and training noise, the share of the floor-to-ceiling gap; each
    # seed's AUROC / AP linked to the cell's page when that page exists
    assert r18 == ("| **resnet18** | 0.850 ± 0.071 \\(0.800-0.900\\); split / train sd 0.066 / 0.028 "
                   "| 0.725 ± 0.035 \\(0.700-0.750\\) | 1.00 \\(n=1, 1 without a gap\\) | [0.800 / 0.700](r18-s0.md) | 0.900 / 0.750 |")
    (intensity,) = [ln for ln in table.splitlines() if ln.startswith("| **intensity** |")]
    assert intensity == "| **intensity** | 0.600 | 0.550 | 0.00 \\(n=1\\) | 0.600 / 0.550 | [failed](int-s1.md) |"
    (ae,) = [ln for ln in table.splitlines() if ln.startswith("| **autoencoder** |")]
    assert r"| 0.38 \[-1.22, 1.97\] \(n=2\) |" in ae  # a t-interval over two seeds is wide
    reference, exploratory = paired_table.split("Exploratory pairs on mni152-lesions")
    (paired,) = [ln for ln in reference.splitlines() if ln.startswith("| **resnet18** | **intensity** |")]
    assert r"| AUROC | \+0.200 | 1/1 seeds | 1 | — | — | — | \+0.200 \(seed 0\) |" in paired
    (explored,) = [ln for ln in exploratory.splitlines() if ln.startswith("| **resnet18** | **autoencoder** |")]
    assert "| 2/2 seeds | 2 | 0.500 | — | 0.126 |" in explored
    assert r"*Note:* 2 seed\(s\) cannot reach p \< 0.05 in a rank test" in exploratory
    assert "*Note:* resnet18 − intensity: one seed: nothing to test across seeds" in exploratory
    (failed,) = [ln for ln in section.splitlines() if ln.startswith("- intensity-seed1-embedded")]
    assert "**failed**: intensity: RuntimeError: broke \\<\\*on purpose\\*\\>; run [int-s1](int-s1.md)" in failed
    assert "/cluster/runs/int-s1/log.txt" in failed and "submitit/1\\_0\\_log.err" in failed
    assert "20260104-bad: grid.json is not valid JSON" in section
    assert "20260105-odd: grid.json: spec.profile is 3" in section
    # submitted, not yet collected: says how to collect, lists no cell as failed
    pending = json.loads((make_grid(runs, "20260106-pending", {("resnet18", 0): (None, "missing", None)})
                          / "grid.json").read_text())
    for key in ("collected", "table", "paired"):
        del pending[key]
    pending["cells"] = [{k: c[k] for k in ("key", "method", "seed", "dataset", "role")} for c in pending["cells"]]
    (runs / "grids" / "20260106-pending" / "grid.json").write_text(json.dumps(pending))
    render_all(runs, out)
    index = (out / "index.md").read_text()
    section = index[index.index("### Grid 20260106-pending"):index.index("### Grid 20260103-090000-abcd1234")]
    assert "0 of 1 cells complete" in section and "Not collected yet: `python -m harness grid collect`" in section
    assert "|" not in section and "Cells without a complete run" not in section
    # collected before the across-seed tests: the tables as they were, the tests as dashes
    path = runs / "grids" / "20260103-090000-abcd1234" / "grid.json"
    older = json.loads(path.read_text())
    del older["gap"]
    older["table"] = [{k: v for k, v in e.items() if k not in ("share", "trainings")} for e in older["table"]]
    older["paired"] = [{k: v for k, v in e.items() if k in ("dataset", "method", "other", "metric", "seeds", "values",
                                                           "mean", "sd", "agree")} for e in older["paired"]]
    path.write_text(json.dumps(older))
    render_all(runs, out)
    index = (out / "index.md").read_text()
    section = index[index.index("### Grid 20260103-090000-abcd1234"):]
    assert r"| Method | AUROC mean ± sd \(min-max\) | AP mean ± sd \(min-max\) | Seed 0 | Seed 1 |" in section
    assert r"| AUROC | \+0.200 | 1/1 seeds | — | — | — | — | \+0.200 \(seed 0\) |" in section


def test_second_render_rewrites_nothing(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "r1")
    render_all(runs, out)
    before = _mtimes(out)
    summary = render_all(runs, out)
    assert summary.written == [] and _mtimes(out) == before
    # a changed run is re-rendered, the other page is not
    make_run(runs, "r2", seed=3)
    (runs / "r1" / "run.json").write_text((runs / "r1" / "run.json").read_text().replace('"smoke"', '"quick"'))
    summary = render_all(runs, out)
    assert out / "r1.md" in summary.written and "quick" in (out / "r1.md").read_text()
    shutil.rmtree(runs / "r2")  # its page stays, listed as an older page so the toctree covers it
    render_all(runs, out)
    assert "Older pages" in (out / "index.md").read_text() and (out / "r2.md").exists()


def test_compare_page_deltas_and_ci_overlap(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "ra", seed=0)
    make_run(runs, "rb", seed=5)
    written = _compare(runs, out, "ra", "rb")
    assert written == runs / "compares" / "ra-vs-rb.json"
    doc = json.loads(written.read_text())
    assert doc["same_split"] and doc["paired"]["reason"] is None and set(doc["paired"]["methods"]) == {
        "resnet18", "intensity", "cyclegan"}
    page = (out / "compare-ra-vs-rb.md").read_text()
    fid = next(l for l in page.splitlines() if "| fid |" in l and "mri" in l)
    assert "40.00" in fid and "45.00" in fid and "5.0000" in fid
    auroc = next(l for l in page.splitlines() if l.startswith("| resnet18 |") and "| auroc |" in l)
    assert auroc.endswith("| 0.0000 | yes |")
    assert "compare-*" in (out / "index.md").read_text()
    assert "resample different units" not in page
    run_json = runs / "rb" / "run.json"
    older = json.loads(run_json.read_text())
    del older["dataset"]["bootstrap_unit"]  # as written before subject-level CIs
    run_json.write_text(json.dumps(older))
    _compare(runs, out, "ra", "rb")
    assert "resample different units" in (out / "compare-ra-vs-rb.md").read_text()
    make_run(runs, "rc", status="interrupted")
    with pytest.raises(ValueError, match="interrupted"):
        compare_runs("ra", "rc", runs)
    with pytest.raises(FileNotFoundError):
        compare_runs("ra", "nope", runs)


def test_eda_section_tolerates_missing_and_unknown_keys(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "r1", eda={"something_new": {"a": [1, 2]}, "sizes": [[64, 64], [128, 128]],
                              "skipped": [["a.png", "zero-byte file"]], "shortcut_audit": None})
    (runs / "r1" / "examples" / "resnet18.npz").write_bytes(b"not a zip")
    shutil.rmtree(runs / "r1" / "methods")
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    assert "### Something new" in page and "### Sizes" in page and "zero-byte file" in page
    assert "resnet18.npz unreadable" in page


def _sphinx(src: Path, dest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(src), str(dest)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sphinx_builds_without_runs_and_shows_evil_names_as_text(tmp_path):
    for module in ("sphinx", "myst_parser", "furo"):  # the [docs] extra (tox and CI install it)
        pytest.importorskip(module)
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs, ignore=shutil.ignore_patterns("_build", "reports"))
    empty = _sphinx(docs, tmp_path / "html-empty")
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert "No runs have been rendered yet" in (tmp_path / "html-empty" / "reports" / "index.html").read_text()

    runs = tmp_path / "runs"
    make_run(runs, "20260101-100000-aaaaaaaa")
    make_run(runs, "20260102-100000-bbbbbbbb", seed=2, status="failed", cyclegan_status="failed")
    make_grid(runs, "20260103-090000-abcd1234", {
        ("resnet18", 0): ("20260101-100000-aaaaaaaa", "complete", None), ("resnet18", 1): ("gone", "complete", None),
        ("intensity", 0): ("20260101-100000-aaaaaaaa", "complete", None),
        ("intensity", 1): ("20260102-100000-bbbbbbbb", "failed", "RuntimeError: <*grid*> [x](y)")})
    (runs / "grids" / "20260104-bad").mkdir()
    (runs / "grids" / "20260104-bad" / "grid.json").write_text("[1")
    render_all(runs, docs / "reports")
    _compare(runs, docs / "reports", "20260101-100000-aaaaaaaa", "20260102-100000-bbbbbbbb")
    built = _sphinx(docs, tmp_path / "html")
    assert built.returncode == 0, built.stdout + built.stderr
    html = (tmp_path / "html" / "reports" / "20260101-100000-aaaaaaaa.html").read_text()
    assert "evil_&lt;script&gt;alert(1)&lt;/script&gt;_*bold*_[link](x)_|pipe|.png" in html
    assert "<script>alert" not in html and "<em>bold</em>" not in html
    assert "/data/[my]_*root*" in html
    failed = (tmp_path / "html" / "reports" / "20260102-100000-bbbbbbbb.html").read_text()
    assert "RuntimeError: out of memory &lt;*here*&gt;" in failed
    assert (tmp_path / "html" / "reports" / "compare-20260101-100000-aaaaaaaa-vs-20260102-100000-bbbbbbbb.html").exists()
    index = (tmp_path / "html" / "reports" / "index.html").read_text()
    assert "Grid 20260103-090000-abcd1234" in index and 'href="20260101-100000-aaaaaaaa.html"' in index
    assert "RuntimeError: &lt;*grid*&gt; [x](y)" in index and "20260104-bad: grid.json is not valid JSON" in index


def test_report_package_imports_no_torch_or_sklearn():
    """The docs env (tox -e docs) has no ML stack: rendering must not import it, directly or
    through what reports/ imports from harness (results, config, seed_summary)."""
    code = ("import sys, reports.__main__, reports.render, reports.run_page, reports.figures, reports.eda_section, "
            "reports.compare\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'sklearn', "
            "'torch_fidelity', 'scipy'})\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_curves_are_drawn_from_stored_points_and_an_older_run_gets_a_note(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    stored = json.loads((folder / "curves" / "detection.json").read_text())["methods"]
    stored["resnet18"]["roc"] = {"fpr": [0.0, 1.0], "tpr": [0.0]}  # malformed: a note, not a crash
    stored["intensity"] = {"n": 40, "positives": 0, "note": "test scores hold one class only; no curve"}
    (folder / "curves" / "detection.json").write_text(json.dumps({"schema_version": 1, "methods": stored}))
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    assert "r1/roc.png" in page and (out / "r1" / "pr.png").stat().st_size > 1000  # cyclegan is drawn
    assert "resnet18: no stored curve points" in page and "intensity: test scores hold one class only" in page

    (folder / "curves" / "detection.json").unlink()  # as written before the harness stored curves
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    assert "roc.png" not in page and not (out / "r1" / "roc.png").exists()
    (note,) = [ln for ln in page.splitlines() if "No ROC or PR curves" in ln]
    assert "curves/detection.json" in note


def _add_rows(folder: Path, rows: list[dict]) -> None:
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["rows"] += rows
    path.write_text(json.dumps(metrics))


def _pair(method: str, other: str, value: float, p: float | None, p_holm: float | None = None, **extra) -> list[dict]:
    """The auroc_delta and ap_delta rows of ``method`` minus ``other`` (p_holm left out when None:
    a schema-1 row has no such key)."""
    base = {"split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40, "note": None,
            "method": method, "other": other, "value": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
            "p_value": p, **({} if p_holm is None else {"p_holm": p_holm}), **extra}
    return [{**base, "metric": m} for m in ("auroc_delta", "ap_delta")]


def _section(page: str, heading: str) -> str:
    start = page.index(heading)
    end = page.find("\n### ", start + len(heading))
    return page[start:end if end > 0 else None]


def test_run_page_shows_each_method_minus_the_fixed_references_never_a_best_by_test(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")  # run order resnet18, intensity, cyclegan; resnet18 has the highest test AUROC
    family = "p: subject permutation test, exact over all 4096 swap patterns of 12 subjects; Holm over the 3 " \
             "comparisons against the shortcut floor"
    paired = [*_pair("resnet18", "intensity", 0.05, 0.3, 0.3), *_pair("intensity", "resnet18", -0.05, 0.3, 0.3),
              *_pair("cyclegan", "intensity", 0.3, 0.01, 0.02), *_pair("intensity", "cyclegan", -0.3, 0.01, 0.02),
              *_pair("resnet18", "cyclegan", -0.25, None), *_pair("cyclegan", "resnet18", 0.25, None),
              *_pair("resnet18", "shortcut-floor", 0.15, 0.001, 0.003, note=family),
              *_pair("intensity", "shortcut-floor", 0.1, 0.04, 0.12, note=family),
              *_pair("cyclegan", "shortcut-floor", 0.4, 0.0002, 0.0006, note=family)]
    _add_rows(folder, paired + [
        {"split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40, "note": None,
         "method": "cyclegan", "metric": "dice", "value": 0.21, "ci_low": 0.1, "ci_high": 0.3},
        {"split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40, "note": None,
         "method": "shortcut-floor", "metric": "auroc", "value": 0.55, "ci_low": 0.45, "ci_high": 0.65},
        {"split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40, "note": None,
         "method": "resnet18", "metric": "brand_new_metric", "value": 0.123, "ci_low": None, "ci_high": None},
    ])
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "schema_version": 2}))
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    headline = page[page.index("::::{container} headline"):page.index("::::\n", page.index("container} headline") + 30)]
    assert "| Dice |" in headline and "0.210 [0.10–0.30]{.ci}" in headline  # validation-threshold Dice
    assert "| *shortcut floor* | image labels | 0.550 [0.45–0.65]{.ci}" in headline
    section = _section(page, "### Paired differences against fixed references")
    against_intensity = section[section.index(r"#### Minus the intensity floor \(intensity\)"):
                                section.index("#### Minus the shortcut floor")]
    lines = [ln for ln in against_intensity.splitlines() if ln.startswith("| **")]
    # the run's order, not the order of the differences; the reference itself is not listed
    assert [ln.split(" | ")[0] for ln in lines] == ["| **resnet18**", "| **cyclegan**"]
    assert lines[0].startswith("| **resnet18** | supervised | 0.050 [-0.05–0.15]{.ci} | 0.300 | 0.300 |")
    assert "| 0.300 [0.20–0.40]{.ci} | 0.010 | 0.020 |" in lines[1]  # raw p, then Holm's
    against_floor = section[section.index("#### Minus the shortcut floor"):]
    assert "| **intensity** | none | 0.100 [0.00–0.20]{.ci} | 0.040 | 0.120 |" in against_floor
    assert "| **cyclegan** | image labels | 0.400 [0.30–0.50]{.ci} | < 0.001 | < 0.001 |" in against_floor
    assert against_floor.count("Holm over the 3 comparisons against the shortcut floor") == 1  # each note once
    # no best-by-test: resnet18 (highest AUROC) minus the others is not a table of its own
    assert "0.250 [" not in section and "best" not in section
    assert "written before the harness tested pairs by permutation" not in page
    assert r"right: each method minus the intensity floor \(intensity\), a reference fixed in advance" in page
    assert (out / "r1" / "forest.png").stat().st_size > 1000
    assert "### Other metrics" in page and "brand\\_new\\_metric" in page and "0.123" in page

    with (out / "r1" / "metrics.csv").open(newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(json.loads((folder / "metrics.json").read_text())["rows"])
    (row,) = [r for r in table if (r["metric"], r["method"], r["other"]) == ("auroc_delta", "cyclegan", "intensity")]
    assert row["p_value"] == "0.01" and row["p_holm"] == "0.02"


def _add_variant(folder: Path) -> None:
    """cyclegan+tuned as the runner writes a variant: run.json names its method, its own rows."""
    run = json.loads((folder / "run.json").read_text())
    run["methods"]["cyclegan+tuned"] = {
        "status": "complete", "variant_of": "cyclegan", "supervision": "image_labels+val_masks",
        "capabilities": ["maps", "scores"], "threshold": 0.3, "aggregate": "top1",
        "selected": {"map": "ssim", "aggregate": "top1", "criterion": "pixel AUROC (map) + image AUROC (aggregate)"}}
    (folder / "run.json").write_text(json.dumps(run))
    shared = "a slice is tumor when its lesion covers at least 0.5% of its brain area"
    row = {"method": "cyclegan+tuned", "split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40}
    _add_rows(folder, [
        {**row, "metric": "auroc", **_ci(0.9, 0.05), "note": "map ssim chosen on validation masks"},
        {**row, "metric": "ap", **_ci(0.85, 0.05)},
        {**row, "metric": "pixel_auroc", **_ci(0.93, 0.02)},
        {**row, "metric": "dice", **_ci(0.44, 0.04), "note": f"threshold=0.3 chosen on validation; {shared}"},
        {**row, "method": "cyclegan", "metric": "dice", **_ci(0.21, 0.05),
         "note": f"threshold=0.42 chosen on validation; {shared}"},
    ])


def test_variants_have_their_own_table_beside_their_methods_not_headline_rows(tmp_path, monkeypatch):
    from reports import figures

    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    _add_variant(folder)
    curves = json.loads((folder / "curves" / "detection.json").read_text())
    curves["methods"]["cyclegan+tuned"] = curves["methods"]["cyclegan"]
    (folder / "curves" / "detection.json").write_text(json.dumps(curves))
    forest_rows: list[str] = []
    drawn = figures.forest_plot
    monkeypatch.setattr(figures, "forest_plot", lambda methods, deltas, path: (
        forest_rows.extend(m.label for m in methods), drawn(methods, deltas, path))[1])
    curve_rows: list[str] = []
    draw_curves = figures.detection_curves
    monkeypatch.setattr(figures, "detection_curves", lambda methods, roc, pr: (
        curve_rows.extend(methods), draw_curves(methods, roc, pr))[1])
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    start = page.index("::::{container} headline")
    headline = page[start:page.index("::::\n", start + 30)]
    assert "cyclegan+tuned" not in headline and "| **cyclegan** | image labels |" in headline
    caption = "**Tuned variants: the same models, map and aggregate chosen on validation lesion masks.**"
    # directly after the headline block and its notes, before the forest plot
    assert page.index("::::\n", start + 30) < page.index(caption) < page.index("forest.png")
    variants = page[page.index(caption):page.index("forest.png")]
    (header,) = [ln for ln in variants.splitlines() if ln.startswith("| Variant |")]
    assert header.startswith(r"| Variant | Supervision | Map, aggregate | AUROC \(base\) | AUROC")
    assert r"| Pixel AUROC \(base\) | Pixel AUROC | Dice \(base\) | Dice" in header
    (row,) = [ln for ln in variants.splitlines() if ln.startswith(r"| **cyclegan+tuned** |")]
    # the base method's value beside the variant's, which has its CI
    assert row.startswith(r"| **cyclegan+tuned** | image labels + validation masks | ssim, top1 | 0.575 | "
                          "0.900 [0.85–0.95]{.ci}")
    assert "| 0.810 | 0.930 [0.91–0.95]{.ci} | 0.210 | 0.440 [0.40–0.48]{.ci}" in row
    # one set of footnotes for both tables: the Dice note they share is defined once, the
    # variant's own note under its table
    results = page[start:page.index("forest.png")]
    assert results.count("a slice is tumor when its lesion covers at least 0.5% of its brain area") == 1
    assert "map ssim chosen on validation masks" in variants
    assert forest_rows == ["resnet18", "intensity", "cyclegan"]  # the forest shows no variant
    assert "cyclegan" in curve_rows and "cyclegan+tuned" not in curve_rows  # nor do the ROC/PR curves
    # the detail tables keep the variant's rows, labelled as a variant
    (threshold_row,) = [ln for ln in _section(page, "### At the validation threshold").splitlines()
                        if ln.startswith("| **cyclegan+tuned**")]
    assert threshold_row.startswith(r"| **cyclegan+tuned** *(variant)* | 0.3000 |")
    index = (out / "index.md").read_text()
    (board_row,) = [ln for ln in index.splitlines() if ln.startswith(r"| **cyclegan+tuned**")]
    assert board_row.startswith(r"| **cyclegan+tuned** *(variant)* | image labels + validation masks | 0.900")


def test_a_schema_1_run_with_bootstrap_p_values_still_loads_and_renders(tmp_path):
    from harness.results import SCHEMA_VERSION, load_run, read_run

    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "old")  # run.json and metrics.json schema 1: no p_holm anywhere
    _add_rows(folder, [*_pair("cyclegan", "intensity", 0.3, 0.0004), *_pair("intensity", "cyclegan", -0.3, 0.0004),
                       *_pair("resnet18", "cyclegan", -0.25, 0.01)])
    loaded = load_run(folder)  # the strict reader, then the report's
    assert loaded["run"]["schema_version"] == SCHEMA_VERSION == 2
    for rows in (loaded["metrics"], read_run(folder).metrics):
        assert all(r["p_holm"] is None for r in rows) and any(r["p_value"] == 0.0004 for r in rows)
    render_all(runs, out)
    page = (out / "old.md").read_text()
    section = _section(page, "### Paired differences against fixed references")
    assert "| **cyclegan** | image labels | 0.300 [0.20–0.40]{.ci} | < 0.001 | — |" in section  # raw p, no Holm
    assert "written before the harness tested pairs by permutation" in section
    assert "| **resnet18** |" not in section  # an exploratory pair is not tested on the page


def test_failed_run_states_its_cause_first_and_blames_no_method(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = runs / "20260105-100000-dddddddd"
    folder.mkdir(parents=True)
    pending = {"status": "pending", "error": None, "supervision": "supervised"}
    (folder / "run.json").write_text(json.dumps({
        "schema_version": 1, "run_id": folder.name, "status": "failed", "created": "2026-01-05T10:00:00+00:00",
        "methods": {"resnet18": pending, "intensity": pending}, "dataset": {}, "split": {},
        "notes": ["run stopped: DatasetError: data path '/nope' does not exist"]}))
    make_run(runs, "20260101-100000-aaaaaaaa")
    render_all(runs, out)
    page = (out / f"{folder.name}.md").read_text()
    body = page[page.index("# Run"):]
    assert body.index("**This run failed before any method finished:** DatasetError: data path") \
        < body.index("## What ran")
    assert "no error message recorded" not in page and "## Failures" not in page and "## Results" not in page
    index = (out / "index.md").read_text()
    unfinished = index[index.index("## Runs without results"):]
    assert "**failed**: DatasetError: data path '/nope' does not exist" in unfinished
    assert folder.name not in index[:index.index("## Runs without results")]  # not in the leaderboard


def test_grids_show_each_subject_once():
    from reports.grid_cases import distinct_subject_rows

    ids = ["a/1", "a/2", "b/1", "c/1", "c/2", "a/3", "d/1", "b/2"]
    kinds = ["best"] * 4 + ["worst"] * 4
    subjects = {i: i.split("/")[0] for i in ids}
    rows, dropped = distinct_subject_rows(ids, kinds, subjects)
    assert [ids[i] for i in rows] == ["a/1", "b/1", "c/1", "d/1"] and dropped == 4
    # a kind whose every subject was already shown keeps one row
    rows, _ = distinct_subject_rows(["a/1", "a/2"], ["best", "worst"], {"a/1": "a", "a/2": "a"})
    assert rows == [0, 1]


def test_grid_page_uses_split_subjects(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    arrays = dict(np.load(folder / "examples" / "cyclegan.npz"))
    arrays["tumor_ids"] = np.array(["sub-001/z010", "sub-001/z011"])
    np.savez(folder / "examples" / "cyclegan.npz", **arrays)
    (folder / "split.csv").write_text("path,sha256,label,subject,split,dup_group\n"
                                      "sub-001/z010,x,tumor,sub-001,test,-1\nsub-001/z011,y,tumor,sub-001,test,-1\n")
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    assert "cyclegan, Tumor images: best- and worst-scored cases, one per subject" in page
    assert "cyclegan, No tumor images: best- and worst-scored cases, one per subject\n" in page  # nothing dropped


def test_eda_reads_as_prose_not_json(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    shutil.copyfile(folder / "eda" / "intensity_histogram.png", folder / "eda" / "brightness.png")
    render_all(runs, out)
    section = (out / "r1.md").read_text().split("## Dataset", 1)[1]
    assert r"80 images \(40 tumor, 40 no tumor\) from mni152-lesions; 1 file\(s\) skipped." in section
    assert "No exact or near-duplicate images across subjects." in section
    for dump in ("per_given_split", "n_cross_label", "None.", '{"', "bin_edges"):
        assert dump not in section, dump
    # the figure sits in the section of its numbers, not piled at the end
    brightness = section[section.index("### Brightness"):section.index("### Shortcut audit")]
    assert "Near-white" in brightness and "r1/eda/brightness.png" in brightness
    assert "Mean brightness per image, per label" in brightness  # a caption, not the file name
    assert "brightness.png" not in section.replace(brightness, "")


def test_python_m_reports_renders_without_the_harness_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "reports", "--runs", str(tmp_path / "none"), "--out",
                          str(tmp_path / "site")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "no runs yet" in out.stdout
    assert "No runs have been rendered yet" in (tmp_path / "site" / "index.md").read_text()


def test_run_page_takes_titles_and_digits_from_the_runs_infos_and_gives_a_new_family_its_table(tmp_path):
    """A run's metrics.json ``metrics`` block, not a list in reports/, says how a metric reads: a
    retitled built-in shows its new title, and a plugin suite's family gets a table of its own."""
    from harness.metric_info import SCHEMA1_METRICS, MetricInfo, infos_to_document

    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    infos = dict(SCHEMA1_METRICS) | {
        "auroc": MetricInfo("auroc", "Image AUROC", "detection", higher_is_better=True, summarised=True),
        "spread": MetricInfo("spread", "Score spread", "score shape", digits=1, higher_is_better=False)}
    doc = json.loads((folder / "metrics.json").read_text())
    doc["metrics"] = infos_to_document(infos.values())
    doc["rows"].append({"method": "intensity", "split": "test", "domain": "all", "metric": "spread",
                        "feature_space": None, "value": 2.345, "std": None, "ci_low": 1.5, "ci_high": 3.25,
                        "n": 40, "note": "spread of the test scores", "other": None, "p_value": None})
    (folder / "metrics.json").write_text(json.dumps(doc))
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    assert "| Method | Supervision | Image AUROC |" in page
    section = page[page.index("### Score shape"):]
    assert "| Method | Supervision | Score spread ↓ |" in section
    # one digit, as the info says; the one cell's note is a footnote marked in it
    assert "| **intensity** | none | 2.3 [1.50–3.25]{.ci}[^family0-1] |" in section
    assert "[^family0-1]: spread of the test scores" in section
    assert "### Other metrics" not in page  # described metrics are not "other"


def _set_notes(folder: Path, notes: dict[tuple[str, str, str], str]) -> None:
    """Set the note of the (method, metric, domain) rows of a run's metrics.json."""
    path = folder / "metrics.json"
    metrics = json.loads(path.read_text())
    for row in metrics["rows"]:
        key = (row["method"], row["metric"], row.get("domain") or "all")
        if key in notes and not row.get("feature_space"):
            row["note"] = notes[key]
    path.write_text(json.dumps(metrics))


def _notes_of(page: str, heading: str) -> list[str]:
    """The footnote definitions (without their labels) of the page section under ``heading``."""
    return [ln.split("]: ", 1)[1] for ln in _section(page, heading).splitlines() if ln.startswith("[^")]


def test_a_note_repeated_on_several_rows_appears_once_with_markers(tmp_path):
    """Each distinct note once per section, as a footnote marked where it applies: a column's
    header when it concerns the whole column, a row's label for the whole row; notes that differ
    only in a number are one footnote listing each value with its rows."""
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    ci = "CI resamples 3 subjects with tumor images and 2 without"
    _add_rows(folder, [{"split": "test", "domain": "all", "feature_space": None, "std": None, "n": 40,
                        "method": m, "metric": "dice", "value": 0.2, "ci_low": 0.1, "ci_high": 0.3,
                        "note": f"threshold={t} chosen on validation; all 40 images pooled (healthy ones count)"}
                       for m, t in (("resnet18", 0.25), ("intensity", 0.5), ("cyclegan", 0.5))])
    _set_notes(folder, {**{(m, "auroc", "all"): ci for m in ("resnet18", "intensity")},
                        ("cyclegan", "auroc", "all"): f"maps at 32 px; {ci}",
                        ("cyclegan", "ap", "all"): "maps at 32 px",
                        **{("intensity", m, "stratum:FLAIR"): f"{ci}; FLAIR only" for m in ("auroc", "ap")}})
    render_all(runs, out)
    page = (out / "r1.md").read_text()
    results = page[page.index("## Results"):page.index("### At the validation threshold")]
    assert results.count(ci) == 1 and page.count(ci) == 2  # once under the headline, once in the strata
    header = next(ln for ln in results.splitlines() if ln.startswith("| Method | Supervision |"))
    assert "| AUROC[^headline-1] |" in header  # every AUROC: its column
    assert "| Dice[^headline-2] |" in header  # the thresholds, one footnote
    assert "[^headline-1]: CI resamples 3 subjects with tumor images and 2 without" in results
    assert "[^headline-2]: threshold=*a* chosen on validation; all 40 images pooled \\(healthy ones count\\); " \
           "*a*: 0.25 \\(resnet18\\); 0.5 \\(intensity, cyclegan\\)" in results
    (row,) = [ln for ln in results.splitlines() if ln.startswith("| **cyclegan**")]
    assert "| 0.575 [0.52–0.62]{.ci}[^headline-3] | 0.555 [0.50–0.60]{.ci}[^headline-3] |" in row
    assert "[^headline-3]: maps at 32 px" in results
    # the strata: two clauses on the same cells are one footnote
    strata = _section(page, "### By stratum")
    assert "| 0.990 [0.95–1.03]{.ci}[^strata-1] | 0.990 [0.95–1.03]{.ci}[^strata-1] |" in strata
    assert _notes_of(page, "### By stratum") == [f"{ci}; FLAIR only"]
    for heading in ("## Results", "### At the validation threshold", "### By stratum", "### Generated images"):
        notes = _notes_of(page[:page.index("## What ran")], heading)
        assert len(notes) == len(set(notes)), (heading, notes)


def test_a_feature_space_with_no_value_is_one_line_that_says_why(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    make_run(runs, "r1")  # inception-v3: every row None, note "Inception weights missing (--inception-weights PATH)"
    render_all(runs, out)
    section = _section((out / "r1.md").read_text(), "### Generated images")
    assert "#### Features: mri-resnet18" in section and section.count("inception-v3") == 1
    (line,) = [ln for ln in section.splitlines() if "inception-v3" in ln]
    assert line == r"**Features: inception-v3.** No value for any method (cyclegan): " \
                   r"Inception weights missing \(--inception-weights PATH\)"
    assert "| — | — |" not in section  # no table of dashes


def test_an_undefined_std_shows_as_a_dash(tmp_path):
    """A std of one sample, or one that measures no spread (KID whose every subset is the whole
    set: float32 noise around 0), is a dash, never "± 0.0000"."""
    from reports.tables import fmt_compact, fmt_mean_std

    assert fmt_compact({"value": 2.6165, "std": 2.1e-6, "n": 24}, 4) == "2.6165 [± —]{.ci}"
    assert fmt_compact({"value": 0.8, "std": 0.05, "n": 1}, 3) == "0.800 [± —]{.ci}"
    assert fmt_mean_std({"value": 1.8, "std": 0.1, "n": 20}) == "1.800 ± 0.100"
    assert fmt_compact({"value": 0.0, "std": 0.0, "n": 5}) == "0.000 [± 0.000]{.ci}"  # a measured spread of 0
    runs, out = tmp_path / "runs", tmp_path / "reports"
    folder = make_run(runs, "r1")
    metrics = json.loads((folder / "metrics.json").read_text())
    for row in metrics["rows"]:
        if row["metric"] == "kid" and row["feature_space"] == "mri-resnet18":
            row["std"] = row["value"] * 1e-8
    (folder / "metrics.json").write_text(json.dumps(metrics))
    render_all(runs, out)
    section = _section((out / "r1.md").read_text(), "### Generated images")
    assert "0.0120 [± —]{.ci}" in section and "± 0.0000" not in section


def test_footnotes_keep_their_numbers_in_step_with_the_cells():
    from reports.footnotes import NotedTable, clauses, footnoted

    assert clauses("a; b (c; d); e;f") == ["a", "b (c; d)", "e;f"]
    table = NotedTable(["Method", "AUROC", "AP"])
    for name, n in (("a", 2), ("b", 2), ("c", 3)):
        row = table.add_row([name, "0.5", "0.4"], name)
        table.attach(row, 1, f"CI resamples {n} subjects; all {n * 10} images")
        table.attach(row, 2, "run once" if name == "c" else None)
    table.attach(2, 1, "run once")
    ((md, notes),) = footnoted([table], "t")
    lines = md.splitlines()
    assert lines[0] == "| Method | AUROC[^t-1] | AP |"  # the whole column
    assert lines[4] == "| c[^t-2] | 0.5 | 0.4 |"  # the whole row
    # two clauses whose numbers change in step: one footnote, a value list per row
    assert notes == [r"[^t-1]: CI resamples *a* subjects; all *b* images; *a*, *b*: 2, 20 \(a, b\); 3, 30 \(c\)",
                     "[^t-2]: run once"]
