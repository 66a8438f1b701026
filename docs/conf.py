"""Sphinx configuration of the benchmark's report site (MyST markdown, furo theme).

Imports only the torch-free part of the project (``harness/__init__``, ``reports``, and through
autodoc the Python API's modules): the docs env of ``tox -e docs`` installs no ML stack.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # build from a plain checkout too

from harness import __version__  # noqa: E402
from reports.render import ensure_placeholder  # noqa: E402

# docs/reports/ is generated and gitignored; without runs the site still needs its index page.
ensure_placeholder(DOCS / "reports")

project = "Brain MRI anomaly-detection benchmark"
author = "The harness authors"
copyright = "the harness authors"
version = release = __version__

# autodoc: the Python API page (python-api.md) documents harness.run_benchmark and friends, whose
# modules import no torch; mocked anyway, so a stray import there fails the tests, not the site.
extensions = ["myst_parser", "sphinx.ext.autodoc"]
autodoc_mock_imports = ["torch", "torchvision"]
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# attrs_inline: "[0.69–1.00]{.ci}" sets a CI in a span styled by _static/report.css
myst_enable_extensions = ["colon_fence", "attrs_inline"]
myst_heading_anchors = 3
# Report pages define each section's footnotes under its table (reports/footnotes.py): keep them
# there rather than gathered at the page's end (needs myst-parser >= 4.0).
myst_footnote_sort = False
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
# File names and error messages must show exactly as written ("--" and quotes untouched).
smartquotes = False

html_theme = "furo"
html_title = f"Brain MRI anomaly benchmark {__version__}"
html_static_path = ["_static"]
html_css_files = ["report.css"]  # wide tables scroll in their own box, first column sticky
