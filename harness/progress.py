"""Progress bars that belong on a terminal only.

Bars redraw with carriage returns; in a log file or a CI console that is kilobytes of noise, so a
bar is shown only when stderr is a terminal (and never with ``HARNESS_NO_PROGRESS=1``). Methods
log one plain line per epoch either way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm


def bars_enabled(enabled: bool = True) -> bool:
    return enabled and os.environ.get("HARNESS_NO_PROGRESS") != "1" and sys.stderr.isatty()


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enabled: bool = True,
             unit: str = "it") -> Iterator:
    """A tqdm bar (with ETA) on stderr when it is a terminal; the plain iterable otherwise."""
    return tqdm(iterable, total=total, desc=desc, disable=not bars_enabled(enabled), unit=unit, leave=False,
                dynamic_ncols=True)
