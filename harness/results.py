"""The run folder (``runs/<run_id>/``) and its versioned schema; see docs/results-schema.md.

Every file is written atomically (temporary file in the same folder, then ``os.replace``) so
a killed run never leaves half a JSON file. Runs are never overwritten. ``load_run`` reads any
older schema version through an explicit table of upgrade steps (``UPGRADES``).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.atomic import atomic_write_bytes
from harness.config import RunConfig

SCHEMA_VERSION = 1
ROW_KEYS = ("method", "split", "domain", "metric", "feature_space", "value", "std",
            "ci_low", "ci_high", "n", "note", "other", "p_value")
SCORES_COLUMNS = ("method", "split", "id", "label", "score")
STRATUM_PREFIX = "stratum:"  # domain of detection rows measured on one acquisition stratum
FLOOR_METHOD = "shortcut-floor"  # method of the rows of the strongest input feature (the shortcut floor)


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
               ) -> dict[str, Any]:
    """One metrics.json row with every schema key present; ``other`` and ``p_value`` are set on
    paired rows (``method`` minus ``other``), None elsewhere."""
    def num(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(float(x)) else float(x)

    return {"method": method, "split": split, "domain": domain, "metric": metric,
            "feature_space": feature_space, "value": num(value), "std": num(std),
            "ci_low": num(ci_low), "ci_high": num(ci_high), "n": None if n is None else int(n),
            "note": note, "other": other, "p_value": num(p_value)}


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
    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_json(self.file("metrics.json"), {"schema_version": SCHEMA_VERSION, "rows": rows})

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file("metrics.json")
        return upgrade_metrics(_read_json(path)) if path.exists() else []

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


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path} is not valid JSON: {exc}") from exc


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


# from-version -> step to the next version, for each file
UPGRADES: dict[str, dict[int, Callable[[Any], Any]]] = {
    "run": {0: _upgrade_run_0_to_1},
    "metrics": {0: _upgrade_metrics_0_to_1},
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
    ``isc`` is ``is`` (in an MRI space it was a 2-class IS, which has no direction)."""
    row = {**dict.fromkeys(ROW_KEYS), **row}
    if row["metric"] == "best_dice":
        note = row.get("note")
        row.update(metric="dice_oracle", note=f"threshold chosen on test: {note}" if note else "threshold chosen on test")
    elif row["metric"] == "isc":
        old = "" if row["feature_space"] == "inception-v3" else \
            "2-class IS of the MRI classifier (no direction: replaced by target_rate); "
        row.update(metric="is", note=f"{old}{row.get('note') or ''}" or None)
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
    files["examples"] = {p.stem: str(p) for p in sorted(folder.path.glob("examples/*.npz"))}
    files["curves"] = {p.parent.name: str(p) for p in sorted(folder.path.glob("methods/*/curves.json"))}
    return {"run_id": run.get("run_id", folder.run_id), "path": str(folder.path), "run": run,
            "metrics": folder.read_metrics(), "files": files}


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every run under ``runs_dir``, oldest first; a run that cannot be read is listed as
    ``{"run_id", "path", "error"}`` rather than hiding the others."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = []
    for path in sorted(p for p in runs_dir.iterdir() if (p / "run.json").is_file()):
        try:
            out.append(load_run(path))
        except (SchemaError, OSError, ValueError, KeyError) as exc:
            out.append({"run_id": path.name, "path": str(path), "error": f"{type(exc).__name__}: {exc}"})
    return out
