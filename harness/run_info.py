"""The blocks of run.json that describe a run rather than measure it: the new run's header, its
dataset and split, and each method's entry.

Why apart from the runner: run.json's shape is part of the results schema
(docs/results-schema.md); keeping its blocks in one module keeps the schema in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from harness.config import RunConfig
from harness.data.types import DataSource
from harness.hashing import file_sha256
from harness.registry import METHODS, method_variants, split_variant
from harness.results import utc_now
from harness.run_env import capture_environment

__all__ = ["checkpoint_entry", "completed_checkpoint", "dataset_info", "jsonable", "mark_interrupted", "mark_stopped",
           "method_entry", "new_run_info", "split_info"]


def new_run_info(run_id: str, config: RunConfig, device: torch.device, argv: list[str] | None) -> dict[str, Any]:
    """run.json of a run that starts now: environment, config, a pending entry per method."""
    return {
        "run_id": run_id, "status": "running", "created": utc_now().isoformat(), "finished": None,
        **capture_environment(device, argv), "profile": config.profile.name, "seed": config.seed,
        "config": config.to_dict(), "dataset": {}, "split": {},
        "methods": {n: method_entry(n) for name in config.methods for n in (name, *method_variants(name))},
        "timings": {}, "notes": [],
    }


def method_entry(name: str) -> dict[str, Any]:
    """A method's run.json entry before it ran. A variant's (``dae+tuned``) has its own
    supervision and names the method it scores with in ``variant_of``."""
    base, variant = split_variant(name)
    cls = METHODS.get(base)
    entry = {"status": "pending", "error": None, "traceback": None, "capabilities": [],
             "supervision": cls.supervision if variant is None else method_variants(base)[name], "description": "",
             "timings": {}, "threshold": None, "aggregate": None, "checkpoint": None, "checkpoint_sha256": None}
    return entry if variant is None else {**entry, "variant_of": base}


def dataset_info(source: DataSource) -> dict[str, Any]:
    return {"name": source.name, "root": str(source.root), "fingerprint": source.fingerprint(),
            "n_images": len(source.records), "n_skipped": len(source.skipped),
            "has_masks": any(r.has_mask for r in source.records)}


def split_info(split: Any, strata: dict[str, str]) -> dict[str, Any]:
    """The split block: hash, manifest file, counts, subjects per split (None: images are subjects)."""
    return {"hash": split.hash, "manifest": "split.csv", "counts": split.counts(),
            "subjects": split.subject_counts(strata), "n_duplicate_groups": len(split.duplicate_groups),
            "n_cross_label_duplicates": len(split.cross_label_duplicates)}


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars as numbers and anything else unknown as its string."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def checkpoint_entry(path: Path | None, run_folder: Path) -> dict[str, Any]:
    """A method's ``checkpoint`` (relative to the run folder when inside it) and its sha256."""
    if path is None or not Path(path).is_file():
        return {"checkpoint": None, "checkpoint_sha256": None}
    path = Path(path).resolve()
    try:
        shown = str(path.relative_to(run_folder.resolve()))
    except ValueError:
        shown = str(path)
    return {"checkpoint": shown, "checkpoint_sha256": file_sha256(path)}


def completed_checkpoint(info: dict[str, Any], run_folder: Path, name: str) -> Path | None:
    """Method ``name``'s checkpoint when the run trained it to completion (None otherwise)."""
    entry = info["methods"].get(name)
    if not (entry and entry["status"] == "complete" and entry.get("checkpoint")):
        return None
    path = Path(entry["checkpoint"])
    path = path if path.is_absolute() else run_folder / path
    return path if path.is_file() else None


def mark_interrupted(info: dict[str, Any]) -> None:
    """Ctrl-C or SIGTERM: the run and the method that was running are "interrupted" (resumable)."""
    info["status"] = "interrupted"
    for method in info["methods"].values():
        if method["status"] == "running":
            method["status"] = "interrupted"


def mark_stopped(info: dict[str, Any], exc: Exception) -> None:
    """An error outside any one method stopped the run: "failed", with the reason as a note."""
    info.update(status="failed", finished=utc_now().isoformat())
    info["notes"].append(f"run stopped: {type(exc).__name__}: {exc}")
