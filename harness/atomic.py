"""Atomic file writes: a temporary file in the target's folder, then a rename, so a reader or a
killed run never sees half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync it, rename it over ``path``.

    Files get mode 0644 (``mkstemp`` makes 0600), since the docs build and other users read them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_copy(source: str | Path, target: str | Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file, so a reader never sees part of it."""
    def copy(fh: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh)

    atomic_write(target, copy)


def atomic_link(source: str | Path, target: str | Path) -> None:
    """Make ``target`` the same file as ``source`` (a hard link swapped in by a rename), so a
    second name costs no second write; a copy where the filesystem has no hard links."""
    source, target = Path(source), Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (some network and FAT filesystems)
        atomic_copy(source, target)
        return
    os.replace(tmp, target)
