"""The data contract shared by every source, the splitter, the EDA, the runner and the methods.

It sits below everything that touches data and imports neither torch nor the method registry,
so that scanning or loading a dataset does not drag in the methods (``harness.api``
re-exports :class:`ImageSet` and the labels for methods). :class:`ImageSet` holds torch
tensors but imports torch only where one of its methods builds new tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

# The two labels every dataset is mapped to, and their integer codes (index = code).
TUMOR = "tumor"
NO_TUMOR = "no_tumor"
LABELS = (NO_TUMOR, TUMOR)  # 0 no_tumor, 1 tumor


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
    # how image labels follow from lesion masks, said beside every Dice ("" when labels come
    # from elsewhere, e.g. folder names): which slices no split holds changes what Dice means
    label_rule: str

    def fingerprint(self) -> str:
        """Hash of the dataset's content (ids, labels, sha256s); names the dataset in results."""
        ...

    def load_image(self, record: Record) -> np.ndarray:
        """Float32 (H, W) in [0, 1] at native resolution."""
        ...

    def load_mask(self, record: Record) -> np.ndarray | None:
        """Bool (H, W) lesion mask aligned with the image, or None."""
        ...


def label_rule(source: DataSource) -> str:
    """A source's ``label_rule``; "" for a third-party source written before sources had one."""
    return str(getattr(source, "label_rule", ""))


def lesion_size_rule(min_lesion_fraction: float) -> str:
    """The label rule of sources that label slices by their lesion masks."""
    return (f"a slice is tumor when its lesion covers at least {min_lesion_fraction:.1%} of its brain area; "
            "slices with a smaller lesion are left out of every split")


class DatasetError(Exception):
    """A dataset that cannot be used as asked; the CLI prints its message as one line."""


@dataclass
class ImageSet:
    """A split, decoded and resized, held in memory.

    ``images`` are single-channel float32 in [0, 1], shape (N, 1, H, W). ``masks`` are the
    ground-truth lesion masks (bool, same shape) when the dataset has them, else None.
    ``brain`` is a brain/foreground mask (bool) computed from the image, so that scores and
    maps ignore the background. ``strata`` are the images' acquisition strata (``Record.stratum``:
    the MRI sequence for the embedded cohort and volume sources, ``source/sequence`` for a
    multi-source cohort, "" when unknown), None when the loader did not record them; a method
    whose choice depends on the sequence (which lesions are bright) reads :meth:`sequences`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    brain: torch.Tensor
    masks: torch.Tensor | None = None
    strata: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray | list[int]) -> ImageSet:
        import torch

        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            ids=[self.ids[i] for i in idx.tolist()],
            brain=self.brain[idx],
            masks=None if self.masks is None else self.masks[idx],
            strata=None if self.strata is None else [self.strata[i] for i in idx.tolist()],
        )

    def sequences(self) -> list[str]:
        """Each image's MRI sequence in lower case: the last part of its stratum ("" when unknown).
        In a multi-source cohort a source that names no sequence gives its source name here,
        which matches no sequence rule."""
        if self.strata is None:
            return [""] * len(self)
        return [s.rsplit("/", 1)[-1].strip().lower() for s in self.strata]

    def of_label(self, label: int) -> ImageSet:
        return self.subset((self.labels == label).nonzero().flatten())

    def resized(self, size: int) -> ImageSet:
        """Bilinear resize of images (nearest for masks) to ``size`` x ``size``."""
        if self.images.shape[-1] == size and self.images.shape[-2] == size:
            return self
        import torch.nn.functional as F

        def nearest(m: torch.Tensor) -> torch.Tensor:
            return F.interpolate(m.float(), size=(size, size), mode="nearest") > 0.5

        return ImageSet(
            images=F.interpolate(self.images, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True).clamp(0, 1),
            labels=self.labels,
            ids=self.ids,
            brain=nearest(self.brain),
            masks=None if self.masks is None else nearest(self.masks),
            strata=self.strata,
        )
