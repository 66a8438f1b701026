"""Content hashes of files (checkpoints, weights) recorded beside the numbers they produced."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, length: int = 12) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
