"""The data contract shared by every source, the splitter, the EDA and the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Record:
    """One usable image of a dataset.

    ``id`` is unique within the dataset: the path relative to the dataset root for folder
    datasets (POSIX separators), ``sub-001/z062`` (subject, slice height) for the embedded
    cohort. ``subject`` groups images that must stay in one split (the id itself when subjects
    are unknown).
    ``given_split`` is ``"test"`` for images from a dataset's own ``Testing/`` folder.
    ``phash`` is a 64-bit perceptual hash (hex) for near-duplicate grouping.
    ``stratum`` is an acquisition group the splits keep balanced within each label (the MRI
    sequence of the embedded cohort; empty when unknown).
    ``meta`` holds non-anatomical facts for the EDA and shortcut audit: width, height,
    mode, channels, format, file_size, mean_brightness (raw, 0-1 by dtype range).
    """

    id: str
    label: str  # "tumor" | "no_tumor"
    subject: str
    sha256: str
    phash: str = ""
    given_split: str | None = None
    has_mask: bool = False
    stratum: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why (shown in the EDA report)."""

    path: str
    reason: str


class DataSource(Protocol):
    """What the splitter, EDA and runner need from a dataset."""

    name: str
    root: str  # a folder path, or a description for the embedded cohort
    records: list[Record]
    skipped: list[SkippedFile]
    notices: list[str]

    def fingerprint(self) -> str:
        """Hash of the dataset's content (ids, labels, sha256s); names the dataset in results."""
        ...

    def load_image(self, record: Record) -> np.ndarray:
        """Float32 (H, W) in [0, 1] at native resolution."""
        ...

    def load_mask(self, record: Record) -> np.ndarray | None:
        """Bool (H, W) lesion mask aligned with the image, or None."""
        ...


class DatasetError(Exception):
    """A dataset that cannot be used as asked; the CLI prints its message as one line."""
