"""3D NIfTI volumes (``--data PATH``): BraTS 2021, BraTS 2023+, IXI and per-subject folders, read
as the axial slices every published brain-MRI anomaly benchmark uses.

Registered as the data source ``volumes`` (settings: ``--set volumes.KEY=VALUE``). A subject's
files are found by name (:mod:`harness.data.volume_layouts`), read in canonical RAS orientation and
optionally resampled (:mod:`harness.data.nifti`), scaled per volume inside the brain, sliced
and labelled as the embedded cohort is (:mod:`harness.data.volume_slices`), and cached by file
content (:mod:`harness.data.volume_cache`). The subject is the volume's subject, so splits never
separate a volume's slices; the stratum is the sequence.

Every volume or subject that cannot be used is skipped with its reason (``skipped``, shown by the
EDA); facts a user must know about the volumes that were used (not skull-stripped, NaN voxels,
undocumented mask labels, ambiguous slices left out) are ``notices``. A path with no NIfTI file, or
none usable, is a :class:`~harness.data.types.DatasetError`.

The harness expects co-registered, skull-stripped volumes, as BraTS ships them; IXI needs the
usual preprocessing first (registration to SRI24 or MNI, skull-stripping, bias correction; see
the README).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from harness.data.nifti import VolumeError, read_pair
from harness.data.sources import DatasetSettings, DatasetSource
from harness.data.types import DatasetError, DataSource, Record, SkippedFile, lesion_size_rule
from harness.data.volume_cache import (cache_key, entry_folder, file_digest, read_facts, read_slice,
                                       stack_facts, write_stack)
from harness.data.volume_layouts import LAYOUT_LABELS, Naming, VolumeCase, find_cases, holds_volumes
from harness.data.volume_slices import MAX_BRAIN_ML, SliceRule, SliceStack, slice_volume
from harness.progress import progress as progress_bar
from harness.registry import register_dataset

__all__ = ["ALL_SEQUENCES", "VolumeDataset", "VolumeSettings", "VolumeSource"]

NAME = "volumes"
ALL_SEQUENCES = "all"
SEQUENCE_NAMES = {"flair": ("flair", "t2f", "t2flair"), "t1": ("t1", "t1n", "t1w"), "t1ce": ("t1ce", "t1c", "t1gd"),
                  "t2": ("t2", "t2w"), "pd": ("pd", "pdw")}
_LIST_SHOWN = 5  # subjects named in a notice


class VolumeSettings(DatasetSettings):
    """How volumes are found, sliced and labelled; the defaults read BraTS, IXI and MSLUB-like
    folders as they come and take their T2 images (Behrendt et al.: IXI T2 -> BraTS T2)."""

    sequence: str = Field("t2", description="the sequence to read: a key of sequence_names, or 'all' (every "
                          "sequence a subject has; the sequence is the stratum)")
    sequence_names: dict[str, tuple[str, ...]] = Field(
        SEQUENCE_NAMES, description="sequence -> the file-name tokens that name it (case-insensitive)")
    lesion_names: tuple[str, ...] = Field(("seg", "lesion", "mask", "gt", "label", "labels"), min_length=1,
                                          description="file-name tokens of a lesion mask (any voxel > 0 is lesion)")
    brain_names: tuple[str, ...] = Field(("brainmask",), description="file-name tokens (or two tokens joined, "
                                         "brain_mask) of a brain mask; without one the non-zero voxels are the brain")
    slice_rule: Literal["brain_area", "index_range"] = Field(
        "brain_area", description="brain_area: slices with at least min_brain_fraction of the largest brain "
        "area; index_range: the axial indices slice_range")
    min_brain_fraction: float = Field(0.5, gt=0.0, le=1.0, description="brain_area rule: the share of the "
                                      "volume's largest slice brain area a slice needs")
    slice_range: tuple[int, int] = Field((60, 99), description="index_range rule: first and last axial index "
                                         "(inclusive, RAS after resampling; BMAD: 60-99 of BraTS 2021)")
    spacing: tuple[float, float, float] | None = Field(None, description="resample to this voxel size (mm) "
                                                       "first; null: keep the files' grid")
    min_lesion_fraction: float = Field(0.005, gt=0.0, lt=1.0, description="a slice is tumor when its lesion "
                                       "covers at least this share of its brain area (none: no_tumor)")
    image_size: int = Field(128, ge=16, description="load size (px) when no method of the run sets one")

    @model_validator(mode="after")
    def _check(self) -> VolumeSettings:
        names = {k.lower() for k in self.sequence_names}
        if self.sequence.lower() != ALL_SEQUENCES and self.sequence.lower() not in names:
            raise ValueError(f"sequence {self.sequence!r} is not one of {', '.join(sorted(names))} or "
                             f"{ALL_SEQUENCES!r}")
        if self.slice_range[0] > self.slice_range[1] or self.slice_range[0] < 0:
            raise ValueError(f"slice_range {list(self.slice_range)} must be [first, last] with 0 <= first <= last")
        if self.spacing is not None and min(self.spacing) <= 0:
            raise ValueError(f"spacing {list(self.spacing)} must be positive")
        return self

    def naming(self) -> Naming:
        return Naming(sequences={k.lower(): tuple(t.lower() for t in v) for k, v in self.sequence_names.items()},
                      lesion=tuple(t.lower() for t in self.lesion_names),
                      brain=tuple(t.lower() for t in self.brain_names))

    def rule(self) -> SliceRule:
        return SliceRule(self.slice_rule, self.min_brain_fraction, self.slice_range, self.min_lesion_fraction)


@dataclass(frozen=True)
class _Stack:
    """One read volume: where its slices are (a cache entry, or memory when none could be written)."""

    case: VolumeCase
    sequence: str
    facts: dict
    folder: Path | None
    memory: SliceStack | None
    file_size: int


class VolumeDataset:
    """A :class:`~harness.data.types.DataSource` over a folder of NIfTI volumes."""

    name = NAME

    def __init__(self, path: str | Path, settings: VolumeSettings | None = None, progress: bool = True,
                 cache_dir: Path | None = None, workers: int | None = None) -> None:
        self.settings = settings if settings is not None else VolumeSettings()
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DatasetError(f"data path {str(path)!r} is not a folder of NIfTI volumes")
        self.root = str(root.resolve())
        self.records: list[Record] = []
        self.skipped: list[SkippedFile] = []
        self.notices: list[str] = []
        self.label_rule = lesion_size_rule(self.settings.min_lesion_fraction)
        self._cache_dir = cache_dir
        self._where: dict[str, tuple[_Stack, int]] = {}
        self._scan(progress, workers or min(4, os.cpu_count() or 1))

    # -- DataSource ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        lines = "\n".join(f"{r.id}\t{r.label}\t{r.sha256}" for r in sorted(self.records, key=lambda r: r.id))
        return hashlib.sha256(lines.encode()).hexdigest()[:16]

    def load_image(self, record: Record) -> np.ndarray:
        return self._slice(record, "images").astype(np.float32) / np.float32(255.0)

    def load_mask(self, record: Record) -> np.ndarray | None:
        return self._slice(record, "masks").astype(bool) if record.has_mask else None

    def _slice(self, record: Record, what: str) -> np.ndarray:
        try:
            stack, index = self._where[record.id]
        except KeyError:
            raise DatasetError(f"record {record.id!r} is not part of {self.root}") from None
        if stack.memory is not None:
            return np.array(getattr(stack.memory, what)[index])
        assert stack.folder is not None
        return read_slice(stack.folder, index, what)

    # -- scanning -----------------------------------------------------------------------------
    def _scan(self, progress: bool, workers: int) -> None:
        root = Path(self.root)
        cases, self.skipped = find_cases(root, self.settings.naming())
        if not cases and not self.skipped:
            raise DatasetError(f"no NIfTI volumes (.nii, .nii.gz) under {self.root}")
        jobs = []
        for case in cases:
            sequences = self._sequences(case)
            jobs += [(case, s) for s in sequences]
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda job: self._read(*job), jobs)
            stacks = []
            for (case, sequence), result in progress_bar(zip(jobs, results), total=len(jobs), desc="read volumes",
                                                         enabled=progress, unit="vol"):
                if isinstance(result, str):
                    self.skipped.append(SkippedFile(case.images[sequence].relative_to(root).as_posix(), result))
                else:
                    stacks.append(result)
        for stack in stacks:
            self._add_records(stack)
        self.skipped.sort(key=lambda s: s.path)
        self._notices(stacks, cases)
        if not self.records:
            top = Counter(s.reason.split(" (")[0].split(":")[0] for s in self.skipped).most_common(3)
            raise DatasetError(f"no usable volumes under {self.root}: {len(self.skipped)} file(s) or subject(s) "
                               f"skipped, top reasons: {'; '.join(f'{k} ({v})' for k, v in top)}")

    def _sequences(self, case: VolumeCase) -> list[str]:
        wanted = self.settings.sequence.lower()
        if wanted == ALL_SEQUENCES:
            return sorted(case.images)
        if wanted not in case.images:
            self.skipped.append(SkippedFile(case.subject, f"no {wanted} image (has: {', '.join(sorted(case.images))}); "
                                                          f"choose with --set volumes.sequence=NAME"))
            return []
        return [wanted]

    def _read(self, case: VolumeCase, sequence: str) -> _Stack | str:
        """The volume's slices from the cache, else read, sliced and cached; or the skip reason."""
        files = (case.images[sequence], case.lesion, case.brain)
        try:
            digests = [None if f is None else file_digest(f) for f in files]
            size = files[0].stat().st_size
        except OSError as exc:
            return f"unreadable: {exc.strerror or exc}"
        s = self.settings
        decoding = {"spacing": s.spacing, "rule": [s.slice_rule, s.min_brain_fraction, list(s.slice_range)],
                    "min_lesion_fraction": s.min_lesion_fraction, "labels": sorted(LAYOUT_LABELS[case.layout])}
        folder = entry_folder(cache_key(digests, decoding), self._cache_dir)
        facts = read_facts(folder)
        if facts is not None:
            return _Stack(case, sequence, facts, folder, None, size)
        try:
            stack = slice_volume(read_pair(*files, spacing=s.spacing), s.rule(), LAYOUT_LABELS[case.layout])
        except VolumeError as exc:
            return str(exc)
        if not stack.z:
            return (f"no usable slice ({stack.n_ambiguous} ambiguous: lesion above 0 but below "
                    f"{s.min_lesion_fraction:.1%} of the brain area)")
        facts = stack_facts(stack)
        try:
            write_stack(folder, stack)
        except OSError:  # a read-only cache: keep the slices in memory for this run
            return _Stack(case, sequence, facts, None, stack, size)
        return _Stack(case, sequence, facts, folder, None, size)

    def _add_records(self, stack: _Stack) -> None:
        case, facts = stack.case, stack.facts
        height, width = self._shape(stack)
        for i, z in enumerate(facts["z"]):
            record = Record(
                id=f"{case.subject}/{stack.sequence}/z{z:03d}", label=facts["labels"][i], subject=case.subject,
                sha256=facts["sha256"][i], phash=facts["phash"][i], has_mask=case.lesion is not None,
                stratum=stack.sequence,
                meta={"width": width, "height": height, "mode": "L", "channels": 1, "format": "NIfTI",
                      "file_size": stack.file_size, "mean_brightness": facts["mean_brightness"][i],
                      "sequence": stack.sequence, "z": int(z), "layout": case.layout,
                      "skull_stripped": bool(facts["skull_stripped"])})
            self.records.append(record)
            self._where[record.id] = (stack, i)

    @staticmethod
    def _shape(stack: _Stack) -> tuple[int, int]:
        if stack.memory is not None:
            return tuple(stack.memory.images.shape[1:])  # type: ignore[return-value]
        assert stack.folder is not None
        return tuple(np.load(stack.folder / "images.npy", mmap_mode="r").shape[1:])  # type: ignore[return-value]

    def _notices(self, stacks: list[_Stack], cases: list[VolumeCase]) -> None:
        layouts = Counter(c.layout for c in cases)
        self.notices.append(f"{NAME}: {len(cases)} subject(s) found ({', '.join(f'{k}: {v}' for k, v in sorted(layouts.items()))}); "
                            f"{len(stacks)} volume(s) read, sequence {self.settings.sequence}")
        healthy = [c.subject for c in cases if c.lesion is None]
        if healthy:
            self.notices.append(f"{NAME}: {len(healthy)} subject(s) without a lesion mask read as healthy (IXI, or a "
                                f"folder without a seg/mask file): {_some(healthy)}")
        ambiguous = sum(int(s.facts["n_ambiguous"]) for s in stacks)
        if ambiguous:
            self.notices.append(f"{NAME}: {ambiguous} slice(s) left out as ambiguous (lesion area above 0 but below "
                                f"{self.settings.min_lesion_fraction:.1%} of the slice's brain area)")
        unstripped = [s.case.subject for s in stacks if not s.facts["skull_stripped"]]
        if unstripped:
            self.notices.append(f"{NAME}: {len(unstripped)} volume(s) do not look skull-stripped (non-zero background "
                                f"or a non-zero part over {MAX_BRAIN_ML / 1000:g} L): {_some(unstripped)}; their brain "
                                f"is a foreground estimate that still holds skull and scalp: skull-strip them first "
                                f"(e.g. HD-BET) or give brain masks")
        nans = [(s.case.subject, int(s.facts["nan_voxels"])) for s in stacks if s.facts["nan_voxels"]]
        if nans:
            self.notices.append(f"{NAME}: {len(nans)} volume(s) held non-finite voxels, read as 0 "
                                f"({sum(n for _, n in nans)} voxels): {_some([f'{k} ({n})' for k, n in nans])}")
        odd = [(s.case.subject, s.facts["unexpected_labels"]) for s in stacks if s.facts["unexpected_labels"]]
        if odd:
            values = sorted({v for _, vs in odd for v in vs})
            self.notices.append(f"{NAME}: {len(odd)} lesion mask(s) hold labels their layout does not document "
                                f"({', '.join(f'{v:g}' for v in values)}); every label > 0 is read as lesion: "
                                f"{_some([k for k, _ in odd])}")


def _some(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    more = f" and {len(unique) - _LIST_SHOWN} more" if len(unique) > _LIST_SHOWN else ""
    return ", ".join(unique[:_LIST_SHOWN]) + more


@register_dataset(NAME)
class VolumeSource(DatasetSource):
    """NIfTI volumes as a registered source: claims a folder that holds ``.nii``/``.nii.gz`` files."""

    description = ("3D NIfTI volumes via --data PATH: BraTS 2021/2023+, IXI and per-subject folders (MSLUB, ATLAS, "
                   "your own), co-registered and skull-stripped; axial slices, the subject is the volume")
    expects = "a folder of NIfTI volumes (.nii, .nii.gz), e.g. BraTS2021_00000/BraTS2021_00000_t2.nii.gz"
    Settings = VolumeSettings
    profile_defaults = {"smoke": {"image_size": 64}, "paper": {"image_size": 256}}

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_dir() and holds_volumes(path)

    @classmethod
    def open(cls, path: Path | None, settings: VolumeSettings, seed: int, progress: bool) -> DataSource:
        return VolumeDataset(path, settings, progress=progress)
