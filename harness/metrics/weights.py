"""Where pretrained weights are found, and the ``python -m harness weights`` command.

The harness never downloads at run time: metrics and methods look for weights in an explicit
path or the torch hub cache, and say what is missing. Only ``weights --fetch``, run by hand on
a connected machine, downloads into the hub cache (the same place and file names torch-fidelity
and torchvision use, so a copied cache folder works offline).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
from pathlib import Path

import torch.hub
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from harness.api import KnownWeights
from harness.registry import METHODS

INCEPTION_WEIGHTS_FILE = URL_INCEPTION_V3.rsplit("/", 1)[-1]  # weights-inception-2015-12-05-6726825d.pth
INCEPTION = KnownWeights("inception-v3", INCEPTION_WEIGHTS_FILE, URL_INCEPTION_V3,
                         "FID/IS/KID in the inception-v3 feature space (torch-fidelity)",
                         "run --inception-weights PATH")


def known_weights() -> tuple[KnownWeights, ...]:
    """Inception for the metrics, then every registered method's declared weights."""
    return (INCEPTION, *(w for name in METHODS.names() for w in METHODS.get(name).weights))


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``, read at call time so TORCH_HOME changes apply."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(entry: KnownWeights, explicit: str | None) -> tuple[Path | None, list[str]]:
    """Look for ``entry``: only at ``explicit`` when given (a wrong path is not silently
    replaced by another file), else in the torch hub cache. Returns (found path, places looked)."""
    if explicit:
        path = Path(explicit).expanduser()
        return (path if path.is_file() else None), [str(path)]
    path = hub_checkpoints_dir() / entry.file
    return (path if path.is_file() else None), [str(path)]


def find_inception_weights(explicit: str | None) -> tuple[Path | None, list[str]]:
    """The torch-fidelity Inception-v3 weights: ``explicit`` path, else the torch hub cache."""
    return find_weights(INCEPTION, explicit)


def inception_missing_reason(explicit: str | None) -> str:
    """Why Inception rows are empty and how to fix it (one line, for a metrics note)."""
    if explicit:
        where = f"--inception-weights {explicit} does not exist"
    else:
        where = f"expected {INCEPTION_WEIGHTS_FILE} in {hub_checkpoints_dir()}"
    return (f"Inception weights not found: {where} or --inception-weights PATH; "
            f"run `python -m harness weights --fetch` on a connected machine")


def _fetch(entry: KnownWeights) -> Path:
    """Download ``entry`` into the hub cache, verifying the hash prefix in its file name."""
    dest = hub_checkpoints_dir() / entry.file
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {entry.url}\n         -> {dest}")
    torch.hub.download_url_to_file(entry.url, str(dest), hash_prefix=entry.hash_prefix, progress=True)
    return dest


def weights_command(args: argparse.Namespace) -> int:
    """Print found/missing for every known weights file; with ``--fetch`` download the missing.

    Exit status 0 when everything asked for is present afterwards, 2 on a download failure.
    """
    entries = known_weights()
    explicit = {INCEPTION.name: getattr(args, "inception_weights", None)}
    fetch = bool(getattr(args, "fetch", False))
    print(f"torch hub cache: {hub_checkpoints_dir()}")
    rows: list[tuple[str, str, str]] = []
    for entry in entries:
        found, looked = find_weights(entry, explicit.get(entry.name))
        if found is None and fetch:
            if explicit.get(entry.name):
                print(f"note: {explicit[entry.name]} does not exist; fetching into the hub cache instead")
            try:
                found = _fetch(entry)
            except (urllib.error.URLError, OSError, RuntimeError) as exc:
                print(f"error: could not download {entry.name} from {entry.url}: {exc}", file=sys.stderr)
                return 2
            looked = [str(found)]
        status = "found" if found is not None else "missing"
        rows.append((entry.name, status, str(found) if found else ", ".join(looked)))
    width = max(len(r[0]) for r in rows)
    print(f"{'weights':<{width}}  {'status':<7}  where")
    for (name, status, where), entry in zip(rows, entries):
        print(f"{name:<{width}}  {status:<7}  {where}")
        print(f"{'':<{width}}  {'':<7}  used by: {entry.used_by}; local copy: {entry.option}")
    if any(status == "missing" for _, status, _ in rows):
        print("missing weights are never downloaded during a run; "
              "run `python -m harness weights --fetch` on a connected machine, "
              f"or copy the files into {hub_checkpoints_dir()}")
    return 0
