"""A run's log (``log.txt`` in its folder and stderr) and its handling of SIGTERM.

Why: ``kill`` must leave a run "interrupted" and resumable like Ctrl-C, and every run's log
must land in its own folder whatever else the process logs.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from harness.data.types import DatasetError
from harness.registry import UnknownNameError
from harness.results import RunFolder

__all__ = ["LOG_FORMAT", "expected_error", "run_logger", "sigterm_as_interrupt"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """``kill`` (SIGTERM) unwinds like Ctrl-C, so the run is marked interrupted and resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_logger(folder: RunFolder) -> tuple[logging.Logger, list[logging.Handler]]:
    logger = logging.getLogger(f"harness.run.{folder.run_id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    file_handler = logging.FileHandler(folder.file("log.txt"), mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [file_handler, console]
    for handler in handlers:
        logger.addHandler(handler)
    return logger, handlers


def expected_error(exc: Exception) -> bool:
    """A usage or data error (bad path, unknown name, bad value): logged without a traceback."""
    return isinstance(exc, (DatasetError, UnknownNameError, FileNotFoundError, ValueError))
