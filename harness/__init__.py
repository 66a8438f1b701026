"""Benchmark harness for anomaly detection in brain MRI.

Public types that methods may import live in :mod:`harness.api`; everything else is internal.
The Python entry points, :func:`run_benchmark` and :func:`load_results` (returning
:class:`Results`), are imported on first use, so ``import harness`` stays light (no torch,
no pandas) and the command line starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "run_benchmark", "load_results", "Results"]

if TYPE_CHECKING:
    from harness.benchmark import run_benchmark
    from harness.results_frames import Results, load_results

_LAZY = {"run_benchmark": "harness.benchmark", "load_results": "harness.results_frames",
         "Results": "harness.results_frames"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
