"""The report's view of run folders: :mod:`harness.results` reads them (one reader for the
harness, the report and ``compare``); this module adds what only the report needs, the files a
run page is made from and their hash (the page stamp).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.results import DETECTION_CURVES, RunData, RunReadError, read_run
from harness.results import run_folders as list_runs

__all__ = ["RunData", "RunReadError", "content_hash", "input_files", "list_runs", "read_run"]


def input_files(path: Path) -> list[Path]:
    """The files a run page is made from (not checkpoints or logs), in a stable order."""
    patterns = ["run.json", "metrics.json", "scores.csv", "split.csv", DETECTION_CURVES, "eda/eda.json", "eda/*.png",
                "methods/*/curves.json", "examples/*.npz"]
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in path.glob(pattern) if p.is_file())
    return sorted(files)


def content_hash(path: Path, extra: bytes = b"") -> str:
    """Hash of a run's report inputs (names and contents) plus ``extra`` (the renderer's own hash)."""
    digest = hashlib.sha256(extra)
    for file in input_files(path):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]
