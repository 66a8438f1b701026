"""Read a run folder (``docs/results-schema.md``) for the report, tolerating optional parts.

The report must render whatever a run left behind: a run that is still going, a method that
failed, a dataset without masks, an older schema. Each file is optional here; what could not be
read is recorded in ``RunData.problems`` (shown on the page) instead of raising.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import SchemaError, upgrade_metrics, upgrade_run

__all__ = ["RunData", "RunReadError", "content_hash", "input_files", "list_runs", "read_run"]

class RunReadError(Exception):
    """A folder that looks like a run but whose ``run.json`` cannot be used."""


@dataclass
class RunData:
    """What the report needs from one run folder."""

    path: Path
    run: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)  # method, split, id, label, score
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    examples: dict[str, Path] = field(default_factory=dict)  # method -> npz path
    eda: dict[str, Any] | None = None
    eda_images: list[Path] = field(default_factory=list)
    subjects: dict[str, str] = field(default_factory=dict)  # image id -> subject (split.csv)
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id") or self.path.name)

    @property
    def status(self) -> str:
        return str(self.run.get("status") or "unknown")

    @property
    def methods(self) -> dict[str, dict[str, Any]]:
        methods = self.run.get("methods")
        return methods if isinstance(methods, dict) else {}


def list_runs(runs_dir: Path) -> list[Path]:
    """Folders under ``runs_dir`` that hold a ``run.json``, sorted by name (oldest first)."""
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / "run.json").is_file())


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def read_run(path: Path) -> RunData:
    """Load one run folder; raises :class:`RunReadError` only when ``run.json`` is unusable."""
    try:
        run = _read_json(path / "run.json")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunReadError(f"run.json unreadable: {exc}") from exc
    try:
        run = upgrade_run(run)  # older schema versions are read through harness.results' upgrades
    except (SchemaError, TypeError, ValueError) as exc:
        raise RunReadError(str(exc)) from exc
    data = RunData(path=path, run=run)
    _read_metrics(data)
    _read_scores(data)
    _read_curves(data)
    _read_eda(data)
    _read_subjects(data)
    examples = path / "examples"
    if examples.is_dir():
        data.examples = {p.stem: p for p in sorted(examples.glob("*.npz"))}
    return data


def _read_metrics(data: RunData) -> None:
    path = data.path / "metrics.json"
    if not path.is_file():
        return
    try:
        rows = upgrade_metrics(_read_json(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SchemaError, TypeError, KeyError, ValueError) as exc:
        data.problems.append(f"metrics.json unreadable: {exc}")
        return
    data.metrics = [r for r in rows if isinstance(r, dict) and "method" in r and "metric" in r]


def _read_scores(data: RunData) -> None:
    path = data.path / "scores.csv"
    if not path.is_file():
        return
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                data.scores.append({
                    "method": row["method"], "split": row["split"], "id": row["id"],
                    "label": int(row["label"]), "score": float(row["score"]),
                })
    except (OSError, UnicodeDecodeError, KeyError, ValueError, TypeError) as exc:
        data.scores = []
        data.problems.append(f"scores.csv unreadable: {exc}")


def _read_subjects(data: RunData) -> None:
    """Image id -> subject from the split manifest (grids show each subject once)."""
    path = data.path / "split.csv"
    if not path.is_file():
        return
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            data.subjects = {row["path"]: row["subject"] for row in csv.DictReader(fh) if row.get("subject")}
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as exc:
        data.problems.append(f"split.csv unreadable: {exc}")


def _read_curves(data: RunData) -> None:
    methods_dir = data.path / "methods"
    if not methods_dir.is_dir():
        return
    for path in sorted(methods_dir.glob("*/curves.json")):
        try:
            curves = _read_json(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            data.problems.append(f"{path.parent.name}/curves.json unreadable: {exc}")
            continue
        if isinstance(curves, dict) and curves:
            data.curves[path.parent.name] = curves


def _read_eda(data: RunData) -> None:
    eda_dir = data.path / "eda"
    if not eda_dir.is_dir():
        return
    data.eda_images = sorted(eda_dir.glob("*.png"))
    if (eda_dir / "eda.json").is_file():
        try:
            eda = _read_json(eda_dir / "eda.json")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            data.problems.append(f"eda/eda.json unreadable: {exc}")
            return
        data.eda = eda if isinstance(eda, dict) else None


def input_files(path: Path) -> list[Path]:
    """The files a run page is made from (not checkpoints or logs), in a stable order."""
    patterns = ["run.json", "metrics.json", "scores.csv", "split.csv", "eda/eda.json", "eda/*.png",
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
