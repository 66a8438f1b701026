"""The parts of a run that describe its data rather than measure methods: the EDA and the input
audit. A failure there is noted in run.json and the run goes on, since no result depends on them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.data.eda import add_input_audit
from harness.data.types import DataSource, ImageSet

__all__ = ["input_audit_or_note", "eda_or_note"]


def eda_or_note(run_eda: Any, source: DataSource, split: Any, out_dir: Path, progress: bool, notes: list[str],
                logger: logging.Logger) -> None:
    """``run_eda(source, split, out_dir, progress)``; a failure becomes a note."""
    try:
        run_eda(source, split, out_dir, progress)
    except Exception as exc:
        notes.append(f"EDA failed: {type(exc).__name__}: {exc}")
        logger.warning("EDA failed; the run goes on", exc_info=True)


def input_audit_or_note(eda_json: Path, sets: Mapping[str, ImageSet], positions: Mapping[str, float],
                        strata: Mapping[str, str], notes: list[str], logger: logging.Logger) -> None:
    """The audit of the model's inputs added to eda.json; a failure becomes a note."""
    try:
        add_input_audit(eda_json, sets, positions, strata)
    except Exception as exc:
        notes.append(f"input audit failed: {type(exc).__name__}: {exc}")
        logger.warning("input audit failed; the run goes on", exc_info=True)
