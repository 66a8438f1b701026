"""The run folder (``runs/<run_id>/``) and its versioned schema; see docs/results-schema.md.

Every file is written atomically (:mod:`harness.atomic`: temporary file in the same folder, then
``os.replace``) so a killed run never leaves half a JSON file. Runs are never overwritten.

This module is the one reader of run folders, and it imports no torch, so the report site builds
without it: :class:`RunFolder` knows each file's name and format, ``load_run`` reads a run strictly
(the Python API), :func:`read_run` reads whatever a run left behind (the report and ``compare``).
Both read any older schema version through an explicit table of upgrade steps (``UPGRADES``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.atomic import atomic_write_bytes
from harness.config import RunConfig
from harness.metric_info import RENAMED_METRICS, MetricInfo, infos_from_document, infos_to_document

SCHEMA_VERSION = 2  # 2: metrics.json rows carry p_holm
ROW_KEYS = ("method", "split", "domain", "metric", "feature_space", "value", "std",
            "ci_low", "ci_high", "n", "note", "other", "p_value", "p_holm")
SCORES_COLUMNS = ("method", "split", "id", "label", "score")
DETECTION_CURVES = "curves/detection.json"
STRATUM_PREFIX = "stratum:"  # domain of detection rows measured on one acquisition stratum
FLOOR_METHOD = "shortcut-floor"  # method of the rows of the strongest input feature (the shortcut floor)
LR_FLOOR_METHOD = "shortcut-floor-lr"  # a logistic regression over every input feature, fitted on train labels
FLOOR_METHODS = (FLOOR_METHOD, LR_FLOOR_METHOD)  # the input-feature floors: rows of no registered method
# The references of the paired tests, fixed before any test number is seen (never the best
# method on test): every method is tested against each, and each reference's comparisons form
# one family of the Holm adjustment (harness.metrics.paired).
PAIRED_REFERENCES = ("intensity", FLOOR_METHOD, LR_FLOOR_METHOD)


class SchemaError(ValueError):
    """A run folder that this version of the harness cannot read."""


# ---------------------------------------------------------------- atomic writes

def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write_bytes(path, frame.to_csv(index=False, lineterminator="\n").encode())


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def metric_row(method: str, metric: str, value: float | None, *, split: str = "test",
               domain: str = "all", feature_space: str | None = None, std: float | None = None,
               ci_low: float | None = None, ci_high: float | None = None, n: int | None = None,
               note: str | None = None, other: str | None = None, p_value: float | None = None,
               p_holm: float | None = None) -> dict[str, Any]:
    """One metrics.json row with every schema key present; ``other`` and ``p_value`` are set on
    paired rows (``method`` minus ``other``), ``p_holm`` on those against a fixed reference
    (:data:`PAIRED_REFERENCES`), None elsewhere."""
    def num(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(float(x)) else float(x)

    return {"method": method, "split": split, "domain": domain, "metric": metric,
            "feature_space": feature_space, "value": num(value), "std": num(std),
            "ci_low": num(ci_low), "ci_high": num(ci_high), "n": None if n is None else int(n),
            "note": note, "other": other, "p_value": num(p_value), "p_holm": num(p_holm)}


# ---------------------------------------------------------------- the run folder

def utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def make_run_id(config: RunConfig, when: _dt.datetime) -> str:
    return f"{when.strftime('%Y%m%d-%H%M%S')}-{config.short_hash()}"


class RunFolder:
    """One run's folder: typed, atomic writers and readers for the files of the schema."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, runs_dir: str | Path, config: RunConfig,
               when: _dt.datetime | None = None) -> RunFolder:
        """Make a new, empty run folder; an existing id moves on by a second, never overwrites."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        when = when or utc_now()
        for _ in range(3600):
            path = runs_dir / make_run_id(config, when)
            try:
                path.mkdir()
            except FileExistsError:
                when += _dt.timedelta(seconds=1)
                continue
            return cls(path)
        raise RuntimeError(f"could not find a free run id in {runs_dir}")

    @classmethod
    def open(cls, runs_dir: str | Path, run_id: str) -> RunFolder:
        path = Path(runs_dir) / run_id
        if not (path / "run.json").is_file():
            raise FileNotFoundError(f"no run {run_id!r} in {runs_dir} (no {path / 'run.json'})")
        return cls(path)

    def file(self, relative: str) -> Path:
        return self.path / relative

    def method_dir(self, method: str) -> Path:
        path = self.path / "methods" / method
        path.mkdir(parents=True, exist_ok=True)
        return path

    # run.json
    def write_run(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.file("run.json"), {"schema_version": SCHEMA_VERSION, **info})

    def read_run(self) -> dict[str, Any]:
        return upgrade_run(_read_json(self.file("run.json")))

    # metrics.json
    def write_metrics(self, rows: list[dict[str, Any]], infos: Mapping[str, MetricInfo] | None = None) -> None:
        """The rows and, beside them, the :class:`MetricInfo` of each metric id the run's suites write."""
        doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if infos is not None:
            doc["metrics"] = infos_to_document(infos.values())
        atomic_write_json(self.file("metrics.json"), {**doc, "rows": rows})

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file("metrics.json")
        return upgrade_metrics(_read_json(path)) if path.exists() else []

    def read_metric_infos(self) -> dict[str, MetricInfo]:
        """The run's metric infos (the schema-1 built-ins for a run written before it had them)."""
        path = self.file("metrics.json")
        return infos_from_document(_read_json(path)) if path.exists() else {}

    # scores.csv
    def write_scores(self, frame: pd.DataFrame) -> None:
        missing = set(SCORES_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"scores frame lacks column(s) {sorted(missing)}")
        atomic_write_csv(self.file("scores.csv"), frame[list(SCORES_COLUMNS)])

    def read_scores(self) -> pd.DataFrame:
        path = self.file("scores.csv")
        if not path.exists():
            return pd.DataFrame(columns=list(SCORES_COLUMNS))
        return pd.read_csv(path, dtype={"id": str, "method": str, "split": str})

    def write_curves(self, method: str, curves: dict[str, list[float]]) -> Path:
        path = self.method_dir(method) / "curves.json"
        atomic_write_json(path, curves)
        return path

    def write_examples(self, method: str, arrays: dict[str, np.ndarray]) -> Path:
        path = self.file(f"examples/{method}.npz")
        atomic_write_npz(path, arrays)
        return path

    # curves/detection.json: ROC and PR points of the test scores (harness.metrics.curves)
    def write_detection_curves(self, curves: dict[str, Any]) -> Path:
        path = self.file(DETECTION_CURVES)
        atomic_write_json(path, {"schema_version": SCHEMA_VERSION, **curves})
        return path

    def read_detection_curves(self) -> dict[str, Any] | None:
        """None for a run written before the harness stored curves."""
        path = self.file(DETECTION_CURVES)
        return _versioned(_read_json(path), DETECTION_CURVES) if path.exists() else None

    # the other files a report shows
    def read_subjects(self) -> dict[str, str]:
        """Image id -> subject from the split manifest (empty without split.csv)."""
        path = self.file("split.csv")
        if not path.is_file():
            return {}
        with path.open(encoding="utf-8", newline="") as fh:
            return {row["path"]: row["subject"] for row in csv.DictReader(fh) if row.get("subject")}

    def read_eda(self) -> dict[str, Any] | None:
        path = self.file("eda/eda.json")
        if not path.is_file():
            return None
        eda = _read_json(path)
        return eda if isinstance(eda, dict) else None

    def example_files(self) -> dict[str, Path]:
        return {p.stem: p for p in sorted(self.path.glob("examples/*.npz"))}

    def eda_images(self) -> list[Path]:
        return sorted(self.path.glob("eda/*.png"))


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from exc


def _versioned(doc: Any, name: str) -> dict[str, Any]:
    """A file that has been versioned from its first version on: refuse a newer one."""
    if not isinstance(doc, dict):
        raise SchemaError(f"{name} is not a JSON object")
    if _version_of(doc) > SCHEMA_VERSION:
        raise SchemaError(f"{name} schema version {_version_of(doc)} is newer than this harness reads "
                          f"({SCHEMA_VERSION}); upgrade the harness")
    return doc


# ---------------------------------------------------------------- schema upgrades

def _upgrade_run_0_to_1(run: dict[str, Any]) -> dict[str, Any]:
    """Version 0 had no schema_version, notes, per-method timings or dataset/split blocks."""
    run = dict(run)
    run.setdefault("notes", [])
    run.setdefault("finished", None)
    run.setdefault("git_commit", None)
    run.setdefault("dataset", {})
    run.setdefault("split", {})
    run.setdefault("timings", {})
    methods = {}
    for name, info in (run.get("methods") or {}).items():
        info = dict(info)
        for key in ("error", "traceback", "threshold", "aggregate", "checkpoint", "checkpoint_sha256"):
            info.setdefault(key, None)
        info.setdefault("capabilities", ["scores"])
        info.setdefault("timings", {})
        methods[name] = info
    run["methods"] = methods
    return run


def _upgrade_metrics_0_to_1(metrics: Any) -> dict[str, Any]:
    """Version 0 was a bare list of rows without ``split``, ``std``, ``n`` or ``note``."""
    rows = metrics["rows"] if isinstance(metrics, dict) else metrics
    upgraded = []
    for row in rows:
        row = {"split": "test", "domain": "all", "feature_space": None, "std": None,
               "ci_low": None, "ci_high": None, "n": None, "note": None, **row}
        upgraded.append({key: row.get(key) for key in ROW_KEYS})
    return {"rows": upgraded}


def _upgrade_run_1_to_2(run: dict[str, Any]) -> dict[str, Any]:
    """Version 2 changed metrics.json only; run.json is as it was."""
    return dict(run)


def _upgrade_metrics_1_to_2(metrics: dict[str, Any]) -> dict[str, Any]:
    """Version 1 rows had no ``p_holm``: their paired p-values were never adjusted (and came from
    the bootstrap, not the permutation test)."""
    return {**metrics, "rows": [{**row, "p_holm": None} for row in metrics["rows"]]}


# from-version -> step to the next version, for each file
UPGRADES: dict[str, dict[int, Callable[[Any], Any]]] = {
    "run": {0: _upgrade_run_0_to_1, 1: _upgrade_run_1_to_2},
    "metrics": {0: _upgrade_metrics_0_to_1, 1: _upgrade_metrics_1_to_2},
}


def _version_of(obj: Any) -> int:
    if isinstance(obj, dict):
        return int(obj.get("schema_version", 0))
    return 0  # a bare list is version 0


def _upgrade(kind: str, obj: Any) -> Any:
    version = _version_of(obj)
    if version > SCHEMA_VERSION:
        raise SchemaError(f"{kind} schema version {version} is newer than this harness reads "
                          f"({SCHEMA_VERSION}); upgrade the harness")
    while version < SCHEMA_VERSION:
        step = UPGRADES[kind].get(version)
        if step is None:
            raise SchemaError(f"no upgrade for {kind} schema version {version}")
        obj = step(obj)
        version += 1
        obj["schema_version"] = version
    return obj


def upgrade_run(run: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(run, dict):
        raise SchemaError("run.json is not a JSON object")
    return _upgrade("run", run)


def _current_row(row: dict[str, Any]) -> dict[str, Any]:
    """Rows written before paired rows and the honest Dice: every key present, and the old
    ``best_dice`` (an oracle, its threshold chosen on test) under its current name; the old
    ``isc`` is ``is`` (in an MRI space it was a 2-class IS, which has no direction); other renamed
    ids (:data:`harness.metric_info.RENAMED_METRICS`) take their current names."""
    row = {**dict.fromkeys(ROW_KEYS), **row}
    if row["metric"] == "best_dice":
        note = row.get("note")
        row.update(metric="dice_oracle", note=f"threshold chosen on test: {note}" if note else "threshold chosen on test")
    elif row["metric"] == "isc":
        old = "" if row["feature_space"] == "inception-v3" else \
            "2-class IS of the MRI classifier (no direction: replaced by target_rate); "
        row.update(metric="is", note=f"{old}{row.get('note') or ''}" or None)
    elif row["metric"] in RENAMED_METRICS:
        was = row["metric"]
        row.update(metric=RENAMED_METRICS[was].id, note=f"written as {was}: {row.get('note') or ''}")
    return row


def upgrade_metrics(metrics: Any) -> list[dict[str, Any]]:
    return [_current_row(row) for row in _upgrade("metrics", metrics)["rows"]]


# ---------------------------------------------------------------- loading runs

def load_run(path: str | Path) -> dict[str, Any]:
    """Read one run folder at the current schema version.

    Returns ``{"run_id", "path", "run": <run.json>, "metrics": [rows], "files": {...}}`` where
    ``files`` holds absolute paths of the optional files that exist (``scores``, ``split``,
    ``eda``, ``log``) and per-method ``examples`` and ``curves`` mappings.
    """
    folder = RunFolder(path)
    if not folder.file("run.json").is_file():
        raise FileNotFoundError(f"{folder.path} is not a run folder (no run.json)")
    run = folder.read_run()
    files: dict[str, Any] = {}
    for key, rel in (("scores", "scores.csv"), ("split", "split.csv"), ("eda", "eda/eda.json"),
                     ("log", "log.txt")):
        if folder.file(rel).exists():
            files[key] = str(folder.file(rel))
    if folder.file(DETECTION_CURVES).exists():
        files["detection_curves"] = str(folder.file(DETECTION_CURVES))
    files["examples"] = {name: str(p) for name, p in folder.example_files().items()}
    files["curves"] = {p.parent.name: str(p) for p in sorted(folder.path.glob("methods/*/curves.json"))}
    return {"run_id": run.get("run_id", folder.run_id), "path": str(folder.path), "run": run,
            "metrics": folder.read_metrics(), "files": files}


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every run under ``runs_dir``, oldest first; a run that cannot be read is listed as
    ``{"run_id", "path", "error"}`` rather than hiding the others."""
    out = []
    for path in run_folders(runs_dir):
        try:
            out.append(load_run(path))
        except (SchemaError, OSError, ValueError, KeyError) as exc:
            out.append({"run_id": path.name, "path": str(path), "error": f"{type(exc).__name__}: {exc}"})
    return out


def run_folders(runs_dir: str | Path) -> list[Path]:
    """Folders under ``runs_dir`` that hold a ``run.json``, sorted by name (oldest first)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(p for p in runs_dir.iterdir() if p.is_dir() and (p / "run.json").is_file())


# ---------------------------------------------------------------- reading a run for a report

class RunReadError(SchemaError):
    """A folder that looks like a run but whose ``run.json`` cannot be used."""


@dataclass
class RunData:
    """A run folder as far as it can be read: what the report and ``compare`` show. A part that
    could not be read is left empty and named in ``problems``, so a page still renders."""

    path: Path
    run: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    infos: dict[str, MetricInfo] = field(default_factory=dict)  # metric id -> how to show it
    detection_curves: dict[str, Any] | None = None  # curves/detection.json; None for older runs
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> training curves
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


_UNREADABLE = (OSError, UnicodeDecodeError, csv.Error, SchemaError, TypeError, KeyError, ValueError)


def read_run(path: str | Path) -> RunData:
    """Read one run folder for a report, tolerating optional and damaged parts (a run still
    going, a failed method, an older schema); raises :class:`RunReadError` only when
    ``run.json`` itself is unusable."""
    folder = RunFolder(path)
    try:
        run = folder.read_run()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunReadError(f"run.json unreadable: {exc}") from exc
    except (SchemaError, TypeError, ValueError) as exc:
        raise RunReadError(str(exc)) from exc
    data = RunData(path=folder.path, run=run, examples=folder.example_files(), eda_images=folder.eda_images())

    def part(name: str, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except _UNREADABLE as exc:
            data.problems.append(f"{name} unreadable: {exc}")
            return default

    rows = part("metrics.json", folder.read_metrics, None)
    if rows is not None:
        data.metrics = [r for r in rows if isinstance(r, dict) and "method" in r and "metric" in r]
        data.infos = part("metrics.json", folder.read_metric_infos, {})
    data.detection_curves = part(DETECTION_CURVES, folder.read_detection_curves, None)
    for curves in sorted(folder.path.glob("methods/*/curves.json")):
        method = curves.parent.name
        series = part(f"{method}/curves.json", lambda: _read_json(curves), None)
        if isinstance(series, dict) and series:
            data.curves[method] = series
    data.eda = part("eda/eda.json", folder.read_eda, None)
    data.subjects = part("split.csv", folder.read_subjects, {})
    return data
