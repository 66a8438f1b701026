"""The embedded default dataset ``mni152-lesions``: a seeded cohort of virtual subjects.

Why: the harness must run, and its numbers must mean something, without any download. Real
anatomy comes from the MNI152 2009 template and its GM/WM maps inside the ``nilearn`` wheel.

What is simulated, per subject (see :mod:`harness.data.virtual_subject` and its helpers):

* anatomy: a small random affine (rotation, size, shift) and a smooth random warp of the template
  (:mod:`~harness.data.anatomy`);
* contrast: one sequence per subject, T1 (post-contrast), T2 or FLAIR, balanced within each label
  so the sequence does not give the label away; tissue intensities jittered per subject
  (:mod:`~harness.data.mri_contrast`);
* tumour subjects: 1-2 lesions built in 3D, with necrotic core, enhancing rim, oedema and mass
  effect (:mod:`~harness.data.lesions`), so neighbouring slices agree;
* acquisition: bias field, k-space resolution loss, motion, ghosting, Rician or Gaussian noise,
  brightness and gamma (:mod:`~harness.data.mri_artifacts`).

Samples are axial slices from one fixed band of heights for every subject (so axial level, brain
area and brightness do not predict the label). The ground-truth mask is the whole tumour (core +
rim + oedema). A slice is ``tumor`` when its mask covers at least ``min_lesion_fraction`` of the slice's brain area,
``no_tumor`` when it has no lesion at all (healthy subjects and lesion-free slices of tumour
subjects); slices in between are left out as ambiguous and counted in ``notices``.

The cohort is cached as a compressed ``.npz`` keyed by (generator version, seed, settings) in
``$HARNESS_CACHE`` or ``~/.cache/brain-mri-harness/``; the file is written atomically.

Registered as the data source ``mni152-lesions`` (the default without ``--data``); its settings
are the ``cohort`` section (``--set cohort.n_subjects=8``), sized per profile.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from pydantic import Field

from harness.atomic import atomic_write
from harness.data.mri_contrast import SEQUENCES
from harness.data.sources import DEFAULT_DATASET, DatasetSettings, DatasetSource
from harness.data.types import DatasetError, DataSource, Record, SkippedFile, lesion_size_rule
from harness.data.virtual_subject import MNI_Z_OFFSET, SubjectPlan, simulate_subject, slice_heights
from harness.progress import progress as progress_bar
from harness.registry import register_dataset

GENERATOR_VERSION = "v3"
NAME = DEFAULT_DATASET


class CohortSettings(DatasetSettings):
    """Size and difficulty of the embedded ``mni152-lesions`` cohort. The fields and their order
    are part of the cache key: the same settings give the same cohort."""

    n_subjects: int = Field(48, ge=1, description="virtual subjects")
    tumor_fraction: float = Field(0.6, ge=0.0, le=1.0, description="share of subjects with lesions "
                                  "(their lesion-free slices are no_tumor too)")
    slice_size: int = Field(128, ge=16, description="slice size (px); the load size when no method sets one")
    slices_per_subject: int = Field(24, ge=1, description="axial slices per subject, from one band of heights")
    lesion_radius_mm: tuple[float, float] = Field((8.0, 22.0), description="lesion radius range (mm)")
    lesion_contrast: float = Field(1.0, ge=0.0, description="lesion intensity contrast (0: invisible)")
    # slices with a smaller lesion are left out as ambiguous (neither clearly tumor nor healthy)
    min_lesion_fraction: float = Field(0.005, gt=0.0, lt=1.0, description="a slice is tumor when its "
                                       "lesion covers at least this share of its brain area")


@register_dataset(NAME)
class EmbeddedSource(DatasetSource):
    """The embedded cohort as a registered source: no path, chosen when ``--data`` is not given."""

    description = ("embedded default: virtual subjects from the MNI152 template with 3D lesions and "
                   "ground-truth masks; no download (used when --data is not given)")
    expects = "no path: made by the harness"
    section = "cohort"
    takes_path = False
    Settings = CohortSettings
    profile_defaults = {
        "smoke": {"n_subjects": 12, "slice_size": 64, "slices_per_subject": 12},
        "paper": {"n_subjects": 120, "slice_size": 256, "slices_per_subject": 32},
    }

    @classmethod
    def open(cls, path: Path | None, settings: CohortSettings, seed: int, progress: bool) -> DataSource:
        return load_embedded_cohort(settings, seed, progress=progress)

    @classmethod
    def working_size(cls, settings: CohortSettings) -> int:
        return settings.slice_size
_CACHE_FIELDS = ("images", "masks", "ids", "labels", "subjects", "sha256", "phash", "sequence", "z",
                 "mean_brightness", "notices", "key")


class EmbeddedCohort:
    """The generated cohort as a :class:`harness.data.types.DataSource`."""

    name = NAME

    def __init__(self, root: str, images: np.ndarray, masks: np.ndarray, records: list[Record],
                 notices: list[str], label_rule: str) -> None:
        self.root = root
        self.label_rule = label_rule
        self.records = records
        self.skipped: list[SkippedFile] = []
        self.notices = notices
        self._images = images
        self._masks = masks
        self._index = {record.id: i for i, record in enumerate(records)}

    def fingerprint(self) -> str:
        lines = "\n".join(f"{r.id}\t{r.label}\t{r.sha256}" for r in sorted(self.records, key=lambda r: r.id))
        return hashlib.sha256(lines.encode()).hexdigest()

    def load_image(self, record: Record) -> np.ndarray:
        return self._images[self._position(record)].astype(np.float32) / 255.0

    def load_mask(self, record: Record) -> np.ndarray | None:
        return self._masks[self._position(record)].copy()

    def _position(self, record: Record) -> int:
        try:
            return self._index[record.id]
        except KeyError:
            raise DatasetError(f"record {record.id!r} is not part of {self.root}") from None


def load_embedded_cohort(settings: CohortSettings, seed: int, cache_dir: Path | None = None,
                         progress: bool = True) -> EmbeddedCohort:
    """The cohort for (settings, seed): from the cache when present, else generated and cached."""
    _validate(settings, seed)
    seed = int(seed)
    key = _cache_key(settings, seed)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{NAME}-{GENERATOR_VERSION}-seed{seed}-{key[:16]}.npz"
    root = (f"embedded:{NAME} {GENERATOR_VERSION} seed={seed} subjects={settings.n_subjects} "
            f"tumor_fraction={settings.tumor_fraction} size={settings.slice_size} "
            f"slices={settings.slices_per_subject} radius={settings.lesion_radius_mm[0]:g}-"
            f"{settings.lesion_radius_mm[1]:g}mm contrast={settings.lesion_contrast:g} "
            f"min_lesion={settings.min_lesion_fraction:g}")
    transient: list[str] = []  # about this call only; never written into the cache
    if path.exists():
        try:
            return _cohort(root, _read_cache(path, key), lesion_size_rule(settings.min_lesion_fraction))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            transient.append(f"{NAME}: cache file {path.name} was unreadable ({exc}); regenerated it")
    arrays = _generate(settings, seed, progress)
    arrays["key"] = np.array(key)
    try:
        _write_cache(path, arrays)
    except OSError as exc:
        transient.append(f"{NAME}: could not write cache {path} ({exc}); the cohort will be regenerated next time")
    cohort = _cohort(root, arrays, lesion_size_rule(settings.min_lesion_fraction))
    cohort.notices.extend(transient)
    return cohort


def default_cache_dir() -> Path:
    env = os.environ.get("HARNESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "brain-mri-harness"


def _validate(settings: CohortSettings, seed: int) -> None:
    problems = []
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed must be a non-negative integer, got {seed!r}")
    if settings.n_subjects < 1:
        problems.append(f"n_subjects must be >= 1, got {settings.n_subjects}")
    if not 0.0 <= settings.tumor_fraction <= 1.0:
        problems.append(f"tumor_fraction must be in [0, 1], got {settings.tumor_fraction}")
    if settings.slice_size < 16:
        problems.append(f"slice_size must be >= 16 px, got {settings.slice_size}")
    if settings.slices_per_subject < 1:
        problems.append(f"slices_per_subject must be >= 1, got {settings.slices_per_subject}")
    r_min, r_max = settings.lesion_radius_mm
    if not 0.0 < r_min <= r_max:
        problems.append(f"lesion_radius_mm must be (min, max) with 0 < min <= max, got {settings.lesion_radius_mm}")
    if not 0.0 < settings.min_lesion_fraction < 1.0:
        problems.append(f"min_lesion_fraction must be in (0, 1), got {settings.min_lesion_fraction}")
    if settings.lesion_contrast < 0.0:
        problems.append(f"lesion_contrast must be >= 0, got {settings.lesion_contrast}")
    if problems:
        raise DatasetError(f"{NAME}: " + "; ".join(problems))


def _cache_key(settings: CohortSettings, seed: int) -> str:
    blob = json.dumps({"version": GENERATOR_VERSION, "seed": seed, "settings": settings.model_dump()},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def _plan(settings: CohortSettings, seed: int) -> list[SubjectPlan]:
    """Which subjects have tumours, and their sequence, head size and brightness strata.

    Within each label group the sequences are dealt evenly and the size, brightness and lesion
    height quantiles are stratified (one per equal-width stratum, shuffled): the two groups then match on these
    subject-level traits by design, not only in expectation.
    """
    rng = np.random.default_rng([seed, 0])
    n = settings.n_subjects
    n_tumour = int(round(n * settings.tumor_fraction))
    if 0.0 < settings.tumor_fraction < 1.0 and n >= 2:
        n_tumour = min(max(n_tumour, 1), n - 1)
    tumour = np.zeros(n, dtype=bool)
    tumour[rng.permutation(n)[:n_tumour]] = True
    sequence = np.empty(n, dtype=object)
    size_q = np.zeros(n)
    bright_q = np.zeros(n)
    lesion_q = np.zeros(n)
    for flag in (True, False):
        members = np.flatnonzero(tumour == flag)
        k = len(members)
        dealt = np.resize(np.roll(SEQUENCES, int(rng.integers(len(SEQUENCES)))), k)
        sequence[members] = rng.permutation(dealt)
        size_q[members] = (rng.permutation(k) + rng.uniform(size=k)) / max(k, 1)
        bright_q[members] = (rng.permutation(k) + rng.uniform(size=k)) / max(k, 1)
        lesion_q[members] = (rng.permutation(k) + rng.uniform(size=k)) / max(k, 1)
    width = max(3, len(str(n)))
    return [SubjectPlan(f"sub-{i + 1:0{width}d}", bool(tumour[i]), str(sequence[i]), float(size_q[i]),
                        float(bright_q[i]), float(lesion_q[i])) for i in range(n)]


def _generate(settings: CohortSettings, seed: int, progress: bool) -> dict[str, np.ndarray]:
    z_mm = slice_heights(settings.slices_per_subject)
    z_index = (z_mm + MNI_Z_OFFSET).astype(int)
    columns: dict[str, list] = {name: [] for name in ("images", "masks", "ids", "labels", "subjects",
                                                       "sequence", "z")}
    ambiguous = 0
    no_lesion_subjects = 0
    plan = _plan(settings, seed)
    for i, subject_plan in enumerate(
            progress_bar(plan, total=len(plan), desc=f"{NAME} (seed {seed})", enabled=progress,
                         unit="subject")):
        rng = np.random.default_rng([seed, 1, i])
        made = simulate_subject(rng, subject_plan, settings, z_mm)
        subject, sequence = subject_plan.subject, subject_plan.sequence
        if subject_plan.tumour and made.n_lesions == 0:
            no_lesion_subjects += 1
        area = made.masks.sum(axis=(1, 2))
        for k in range(len(z_mm)):
            if area[k] == 0:
                label = "no_tumor"
            elif area[k] >= settings.min_lesion_fraction * max(int(made.brain_area[k]), 1):
                label = "tumor"
            else:
                ambiguous += 1
                continue
            columns["images"].append(made.images[k])
            columns["masks"].append(made.masks[k])
            columns["ids"].append(f"{subject}/z{z_index[k]:03d}")
            columns["labels"].append(label)
            columns["subjects"].append(subject)
            columns["sequence"].append(sequence)
            columns["z"].append(int(z_index[k]))
    notices = []
    if ambiguous:
        notices.append(f"{NAME}: {ambiguous} slice(s) of tumour subjects left out as ambiguous (lesion area "
                       f"above 0 but below {settings.min_lesion_fraction:.1%} of the slice's brain area)")
    if no_lesion_subjects:
        notices.append(f"{NAME}: {no_lesion_subjects} tumour subject(s) got no lesion (no white matter found "
                       f"in the slice band); their slices are no_tumor")
    images = np.stack(columns["images"])
    masks = np.stack(columns["masks"])
    return {
        "images": images,
        "masks": masks,
        "ids": np.array(columns["ids"], dtype=str),
        "labels": np.array(columns["labels"], dtype=str),
        "subjects": np.array(columns["subjects"], dtype=str),
        "sequence": np.array(columns["sequence"], dtype=str),
        "z": np.array(columns["z"], dtype=np.int32),
        "sha256": np.array([hashlib.sha256(img.tobytes()).hexdigest() for img in images], dtype=str),
        "phash": np.array([str(imagehash.phash(Image.fromarray(img))) for img in images], dtype=str),
        "mean_brightness": images.reshape(len(images), -1).mean(axis=1) / 255.0,
        "notices": np.array(notices, dtype=str),
    }


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def _read_cache(path: Path, key: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        missing = [name for name in _CACHE_FIELDS if name not in data.files]
        if missing:
            raise ValueError(f"missing arrays {missing}")
        arrays = {name: data[name] for name in _CACHE_FIELDS}
    if str(arrays["key"]) != key:
        raise ValueError("settings key does not match")
    return arrays


def _cohort(root: str, arrays: dict[str, np.ndarray], label_rule: str) -> EmbeddedCohort:
    images = arrays["images"]
    _, height, width = images.shape
    records = [
        Record(
            id=str(arrays["ids"][i]),
            label=str(arrays["labels"][i]),
            subject=str(arrays["subjects"][i]),
            sha256=str(arrays["sha256"][i]),
            phash=str(arrays["phash"][i]),
            given_split=None,
            has_mask=True,
            stratum=str(arrays["sequence"][i]),
            meta={
                "width": int(width), "height": int(height), "mode": "L", "channels": 1,
                "format": "synthetic", "file_size": int(images[i].nbytes),
                "mean_brightness": float(arrays["mean_brightness"][i]),
                "sequence": str(arrays["sequence"][i]), "z": int(arrays["z"][i]),
            },
        )
        for i in range(len(images))
    ]
    return EmbeddedCohort(root, images, arrays["masks"].astype(bool), records,
                          [str(n) for n in arrays["notices"]], label_rule)
