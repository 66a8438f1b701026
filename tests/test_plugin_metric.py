"""The example metric plugin (examples/plugin-metric) behaves like a built-in suite: its rows in
metrics.json, its title on the run page and in the ``run --seeds`` summary, and nothing under
harness/ or reports/ names it.

CI installs it (`pip install -e examples/plugin-metric`); elsewhere the test is skipped with the
command that installs it, and under CI a missing plugin is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

PLUGIN, METRIC, TITLE = "score-overlap", "score_overlap", "Score overlap"
REPO = Path(__file__).resolve().parents[1]
INSTALLED = any(ep.name == PLUGIN for ep in entry_points(group="harness.metrics"))

if not INSTALLED:
    if os.environ.get("CI"):
        pytest.fail("CI must install the example metric plugin: pip install -e examples/plugin-metric", pytrace=False)
    pytest.skip("example metric plugin not installed: pip install -e examples/plugin-metric", allow_module_level=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HARNESS_NO_PROGRESS": "1"})


def test_no_file_of_the_harness_or_the_report_names_the_plugin():
    names = ("score-overlap", "score_overlap", "harness_score_overlap", "Score overlap")
    hits = [str(p.relative_to(REPO)) for folder in ("harness", "reports") for p in (REPO / folder).rglob("*")
            if p.is_file() and p.suffix in (".py", ".j2", ".toml", ".json", ".md")
            and any(n in p.read_text(encoding="utf-8", errors="replace") for n in names)]
    assert hits == []


def test_the_suite_is_registered_after_the_built_ins_and_measures_overlap():
    from harness.registry import METRICS, metric_suites
    from harness_score_overlap import overlap_coefficient

    assert [s.name for s in metric_suites()][:7] == ["detection", "localisation", "generative", "fidelity",
                                                    "comparison", "volume", PLUGIN]
    assert PLUGIN not in METRICS.load_errors
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 300)
    apart = overlap_coefficient(np.r_[rng.normal(8, 1, 300), rng.normal(0, 1, 300)], labels)[0]
    alike = overlap_coefficient(rng.normal(0, 1, 600), labels)[0]
    shifted = np.r_[rng.normal(1, 1, 300), rng.normal(0, 1, 300)]
    assert apart < 0.01 < 0.8 < alike <= 1.0
    assert overlap_coefficient(shifted, labels)[0] == pytest.approx(overlap_coefficient(5 * shifted - 2, labels)[0])


@pytest.mark.slow
def test_plugin_rows_reach_metrics_json_the_seed_summary_and_the_run_page(tmp_path):
    runs, pages = tmp_path / "runs", tmp_path / "reports"
    result = _cli("run", "--method", "intensity", "--profile", "smoke", "--seeds", "0", "1", "--output", str(runs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"test {TITLE}:" in result.stdout  # the `run --seeds` summary shows it by its title
    folders = sorted(p for p in runs.iterdir() if (p / "metrics.json").is_file())
    assert len(folders) == 2
    doc = json.loads((folders[0] / "metrics.json").read_text())
    assert doc["metrics"][METRIC]["title"] == TITLE and doc["metrics"][METRIC]["higher_is_better"] is False
    (row,) = [r for r in doc["rows"] if r["metric"] == METRIC]
    assert row["method"] == "intensity" and 0 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 1

    result = _cli("report", "--runs", str(runs), "--out", str(pages))
    assert result.returncode == 0, result.stderr[-3000:]
    page = (pages / f"{folders[0].name}.md").read_text()
    section = page[page.index("### Score distribution"):]
    assert f"| Method | Supervision | {TITLE} ↓ |" in section and "| **intensity** |" in section
    assert TITLE in (pages / "index.md").read_text()  # the index's across-seeds table
