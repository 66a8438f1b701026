"""Decoded slices of volumes, cached on disk by the content of their files.

Why: decompressing and reorienting a ``.nii.gz`` costs far more than reading its slices back, and
a benchmark opens the same volumes for every run, seed and ``data eda``. The key is the SHA-256
of the image and mask files' bytes with every setting that changes the slices, so a renamed or
moved file hits the cache and an edited one misses it.

Each entry is a folder ``$HARNESS_CACHE/volumes/<key>/`` with ``images.npy`` (uint8), ``masks.npy``
(bool) and ``stack.json`` (the per-slice facts), written into a temporary folder and renamed
into place, so a reader never sees half an entry. The arrays are uncompressed so that one slice
is read by memory-mapping without reading the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.embedded import default_cache_dir
from harness.data.volume_slices import SliceStack

__all__ = ["CACHE_VERSION", "cache_key", "entry_folder", "file_digest", "read_facts", "read_slice", "stack_facts",
           "write_stack"]

CACHE_VERSION = "volumes-v1"  # bump when the decoding or the slice rule changes
_CHUNK = 1 << 20
_FACTS = ("z", "labels", "sha256", "phash", "mean_brightness", "n_ambiguous", "skull_stripped", "nan_voxels",
          "unexpected_labels")


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(digests: Iterable[str | None], settings: dict[str, Any]) -> str:
    blob = json.dumps({"version": CACHE_VERSION, "files": list(digests), "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_folder(key: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir if cache_dir is not None else default_cache_dir()) / "volumes" / key


def read_facts(folder: Path) -> dict[str, Any] | None:
    """The entry's facts (the :class:`SliceStack` fields but its arrays), or None when the entry is missing or incomplete. The
    slices stay on disk (:func:`read_slice`): holding thousands of memory maps would hold as many
    open files."""
    try:
        facts = json.loads((folder / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or any(k not in facts for k in _FACTS):
        return None
    if not ((folder / "images.npy").is_file() and (folder / "masks.npy").is_file()):
        return None
    return facts


def stack_facts(stack: SliceStack) -> dict[str, Any]:
    """What :func:`read_facts` returns for ``stack``'s entry."""
    return {k: getattr(stack, k) for k in _FACTS}


def read_slice(folder: Path, index: int, what: str) -> np.ndarray:
    """One slice of an entry's ``images`` or ``masks``, read without loading the others."""
    return np.array(np.load(folder / f"{what}.npy", mmap_mode="r")[index])


def write_stack(folder: Path, stack: SliceStack) -> None:
    """Write the entry atomically (a temporary folder renamed into place); a concurrent writer of
    the same key wins the race harmlessly, since both wrote the same content."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        os.chmod(tmp, 0o755)
        np.save(tmp / "images.npy", np.ascontiguousarray(stack.images))
        np.save(tmp / "masks.npy", np.ascontiguousarray(stack.masks))
        (tmp / "stack.json").write_text(json.dumps(stack_facts(stack)), encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "stack.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
