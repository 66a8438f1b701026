"""The example plugin (examples/plugin-method) behaves like a built-in method: listed with its
settings, run by `run --all`, and configured with `--set edge-energy.KEY=VALUE`.

CI installs it (`pip install -e examples/plugin-method`); elsewhere the test is skipped with
the command that installs it, and under CI a missing plugin is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PLUGIN = "edge-energy"
INSTALLED = any(ep.name == PLUGIN for ep in entry_points(group="harness.methods"))

if not INSTALLED:
    if os.environ.get("CI"):
        pytest.fail("CI must install the example plugin: pip install -e examples/plugin-method",
                    pytrace=False)
    pytest.skip("example plugin not installed: pip install -e examples/plugin-method", allow_module_level=True)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, **(env or {})})


def test_plugin_is_listed_with_its_settings():
    out = _cli("list", "edge*").stdout
    assert "edge-energy  [maps, scores; supervision: none]" in out
    assert "edge-energy.percentile" in out and "edge-energy.blur_px" in out


def test_plugin_bad_setting_is_one_error_line(tmp_path):
    result = _cli("run", "--method", PLUGIN, "--set", "edge-energy.percentil=90", "--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown setting edge-energy.percentil; did you mean edge-energy.percentile? "
        "(valid keys: percentile, blur_px)"]


def test_run_all_selects_the_plugin():
    from harness.cli import build_parser
    from harness.request import selected_methods

    assert PLUGIN in selected_methods(build_parser().parse_args(["run", "--all"]))


@pytest.mark.slow
def test_plugin_runs_and_set_reaches_it(tmp_path):
    result = _cli("run", "--method", PLUGIN, "--method", "intensity", "--profile", "smoke",
                  "--set", "edge-energy.percentile=90", "--output", str(tmp_path),
                  env={"HARNESS_NO_PROGRESS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in Path(tmp_path).iterdir() if p.is_dir()]
    info = json.loads((run_dir / "run.json").read_text())
    assert PLUGIN in info["config"]["methods"]
    assert info["config"]["method_settings"][PLUGIN] == {"percentile": 90.0, "blur_px": 1}
    entry = info["methods"][PLUGIN]
    assert entry["status"] == "complete" and entry["selected"]["percentile"] == 90.0
    rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
    assert any(r["method"] == PLUGIN and r["metric"] == "auroc" and r["value"] is not None for r in rows)
