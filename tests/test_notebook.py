"""examples/quickstart.ipynb runs end to end (smoke profile) and shows what it promises.

The notebook is kept without outputs in git; this test executes a copy in a fresh kernel with
nbclient, in a temporary folder (its runs/ and figures/ go there), and reads the outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbclient
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def _text(output: dict) -> str:
    """Everything an output shows as text: stream text, plain and HTML reprs, markdown."""
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(str(data.get(k, "")) for k in ("text/plain", "text/html", "text/markdown"))


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert any("%pip install" in c.source for c in code)  # install lines for a fresh kernel, commented


@pytest.mark.slow
def test_notebook_runs_end_to_end_in_the_smoke_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_NOTEBOOK_PROFILE", "smoke")
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if not os.environ.get("HARNESS_CACHE"):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(_text(o) for o in outputs)
    # the headline table: its header, both methods and the shortcut floor, the caption's provenance
    assert "AUROC [95% CI]" in text and "AP [95% CI]" in text
    for row in ("intensity", "resnet18", "shortcut floor"):
        assert row in text
    assert "Profile smoke; seed 100; split hash" in text
    # the forest plot and the image grid are shown inline, and their files exist
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2
    assert (tmp_path / "figures" / "forest.png").is_file() and (tmp_path / "figures" / "forest.pdf").is_file()
    # the LaTeX export printed at the end is the run's
    assert "\\toprule" in text and "\\bottomrule" in text
    (run,) = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    info = json.loads((run / "run.json").read_text())
    assert info["profile"] == "smoke" and info["seed"] == 100 and info["status"] == "complete"
    assert "--method=intensity --method=resnet18" in info["command"]  # the command line that does the same
    rows = json.loads((run / "metrics.json").read_text())["rows"]
    auroc = next(r for r in rows if r["method"] == "resnet18" and r["metric"] == "auroc" and r["domain"] == "all")
    assert f"{auroc['value']:.3f} [{auroc['ci_low']:.3f}, {auroc['ci_high']:.3f}]" in text
