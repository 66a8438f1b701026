"""Folder datasets (``--data PATH``): the Kaggle brain-tumor layouts as they come.

Registered as the data source ``folder``; its layout rules are its settings
(:class:`FolderSettings`, ``--set folder.KEY=VALUE``), with the Kaggle layouts as defaults.
The label of an image is the nearest ancestor folder whose name is in ``tumor_folders`` or
``no_tumor_folders`` (case-insensitive; spaces, ``-`` and ``_`` ignored, so ``No Tumor``,
``no-tumor`` and ``no_tumor`` agree). Images under a ``Testing``/``test`` folder keep that split.
Lesion masks may sit in a ``masks/`` folder beside the images. Every file that cannot be used is
listed in ``skipped`` with its reason; hidden and OS files (``.DS_Store``, ``._*``, ``Thumbs.db``,
``desktop.ini``, ``__MACOSX/``) are ignored and only counted in a notice, since they are never
meant as data (so they are constants, not settings).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from pydantic import Field, ValidationInfo, field_validator

from harness.data.imageio import IMAGE_EXTENSIONS, DecodeError, Decoded, decode_file
from harness.data.sources import DatasetSettings, DatasetSource
from harness.data.types import NO_TUMOR, TUMOR, DatasetError, DataSource, Record, SkippedFile
from harness.progress import progress as progress_bar
from harness.registry import register_dataset

SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_folder_name(name: str) -> str:
    """``"No Tumor"``, ``"no-tumor"``, ``"No_Tumor"`` -> ``"notumor"``."""
    return _SEPARATORS.sub("", name.strip().lower())


class FolderSettings(DatasetSettings):
    """The folder layout rules; the defaults read the public Kaggle layouts as they come."""

    extensions: tuple[str, ...] = Field(tuple(sorted(IMAGE_EXTENSIONS)), min_length=1,
                                        description="file extensions read as images (.dcm needs pydicom)")
    tumor_folders: tuple[str, ...] = Field(
        ("yes", "tumor", "tumour", "glioma", "meningioma", "pituitary", "gliomatumor", "meningiomatumor",
         "pituitarytumor"), min_length=1,
        description="folder names whose images are tumor (case, spaces, - and _ ignored)")
    no_tumor_folders: tuple[str, ...] = Field(("no", "notumor", "notumour", "normal", "healthy"), min_length=1,
                                              description="folder names whose images are no_tumor")
    test_folders: tuple[str, ...] = Field(("testing", "test"),
                                          description="images below such a folder form the test split as given")
    mask_folders: tuple[str, ...] = Field(("masks", "mask"),
                                          description="folders of lesion masks beside the images (never read as images)")
    mask_suffix: str = Field("_mask", description="a mask may also be named <image stem><suffix>")
    unlabeled_folders: tuple[str, ...] = Field(("pred",), description="unlabelled folders ignored with a notice")
    image_size: int = Field(128, ge=16, description="load size (px) when no method of the run sets one")

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() if v.startswith(".") else "." + v.lower() for v in values)

    @field_validator("tumor_folders", "no_tumor_folders")
    @classmethod
    def _normalised(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_folder_name(v) for v in values)

    @field_validator("test_folders", "mask_folders", "unlabeled_folders")
    @classmethod
    def _lower(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.lower() for v in values)

    @field_validator("no_tumor_folders")
    @classmethod
    def _disjoint(cls, values: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        both = sorted(set(values) & set(info.data.get("tumor_folders", ())))
        if both:
            raise ValueError(f"{', '.join(both)} also in tumor_folders")
        return values

    def label_table(self) -> dict[str, str]:
        """Normalised folder name -> label."""
        return {**{k: TUMOR for k in self.tumor_folders}, **{k: NO_TUMOR for k in self.no_tumor_folders}}


def label_of(parts: tuple[str, ...], table: Mapping[str, str]) -> str | None:
    """Label from the nearest ancestor folder in ``table`` (``parts`` exclude the file)."""
    for part in reversed(parts):
        label = table.get(normalise_folder_name(part))
        if label is not None:
            return label
    return None


def is_hidden(name: str) -> bool:
    low = name.lower()
    return name.startswith(".") or low in SYSTEM_FILES or low in SYSTEM_FOLDERS


class FolderDataset:
    """A DataSource over a folder tree; decodes every file once while scanning."""

    name = "folder"

    def __init__(self, path: str | Path, progress: bool = True, workers: int | None = None,
                 settings: FolderSettings | None = None) -> None:
        self.settings = settings if settings is not None else FolderSettings()
        root = Path(path).expanduser()
        if not root.exists():
            raise DatasetError(f"data path {str(path)!r} does not exist")
        if not root.is_dir():
            raise DatasetError(f"data path {str(path)!r} is not a directory (pass the folder that "
                               "holds the label folders, e.g. yes/ and no/)")
        self.root = str(root.resolve())
        self.records: list[Record] = []
        self.skipped: list[SkippedFile] = []
        self.notices: list[str] = []
        self.label_rule = ""  # labels come from the folder names, masks (if any) as given
        self._masks: dict[str, str] = {}
        self._workers = workers or min(8, os.cpu_count() or 1)
        self._scan(progress)

    # -- DataSource ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for r in sorted(self.records, key=lambda r: r.id):
            h.update(f"{r.id}\t{r.label}\t{r.sha256}\t{r.given_split or ''}\n".encode())
        return h.hexdigest()[:16]

    def load_image(self, record: Record) -> np.ndarray:
        return decode_file(Path(self.root) / record.id).image

    def load_mask(self, record: Record) -> np.ndarray | None:
        rel = self._masks.get(record.id)
        if rel is None:
            return None
        mask = decode_file(Path(self.root) / rel).image > 0.5
        target = self.load_image(record).shape
        if mask.shape != target:  # a mask saved at another size: bring it onto the image grid
            pil = Image.fromarray(mask.astype(np.uint8) * 255)
            mask = np.asarray(pil.resize((target[1], target[0]), Image.NEAREST)) > 127
        return mask

    # -- scanning -----------------------------------------------------------------------------
    def _scan(self, progress: bool) -> None:
        root = Path(self.root)
        images, mask_files, hidden = self._walk(root)
        rules = self.settings
        table = rules.label_table()
        unlabeled: Counter = Counter()
        labelled: list[tuple[str, str]] = []
        for rel in images:
            parts = PurePosixPath(rel).parts[:-1]
            label = label_of(parts, table)
            if label is not None:
                labelled.append((rel, label))
            elif any(p.lower() in rules.unlabeled_folders for p in parts):
                unlabeled[next(p for p in parts if p.lower() in rules.unlabeled_folders)] += 1
            else:
                self.skipped.append(SkippedFile(rel, "no label folder (expected a folder named "
                                                     "like yes/no, tumor/notumor, glioma, ...)"))
        for folder, n in sorted(unlabeled.items()):
            self.notices.append(f"ignored the unlabeled folder {folder}/ ({n} files)")
        if hidden:
            self.notices.append(f"ignored {hidden} hidden or system file(s) (.DS_Store, Thumbs.db, ...)")
        self._masks = _match_masks([rel for rel, _ in labelled], mask_files, rules)

        with ThreadPoolExecutor(self._workers) as pool:
            results = pool.map(_decode_one, [root / rel for rel, _ in labelled])
            for (rel, label), result in progress_bar(zip(labelled, results), total=len(labelled),
                                                     desc="scan images", enabled=progress, unit="img"):
                if isinstance(result, str):
                    self.skipped.append(SkippedFile(rel, result))
                    continue
                decoded = result
                parts = PurePosixPath(rel).parts[:-1]
                given = "test" if any(p.lower() in rules.test_folders for p in parts) else None
                self.records.append(Record(
                    id=rel, label=label, subject=rel, sha256=decoded.sha256, phash=decoded.phash,
                    given_split=given, has_mask=rel in self._masks, meta=decoded.meta,
                ))
        self.skipped.sort(key=lambda s: s.path)
        if self._masks:
            self.notices.append(f"found lesion masks for {len(self._masks)} image(s)")
        self._check_usable()

    def _walk(self, root: Path) -> tuple[list[str], list[str], int]:
        """Relative POSIX paths of candidate images and of mask files, sorted; the count of
        hidden files; skipped non-image files go straight to ``skipped``."""
        images: list[str] = []
        masks: list[str] = []
        hidden = 0
        for dirpath, dirnames, filenames in os.walk(root, onerror=self._walk_error):
            rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
            kept = []
            for d in dirnames:
                if is_hidden(d):
                    hidden += sum(len(f) for _, _, f in os.walk(Path(dirpath) / d))
                else:
                    kept.append(d)
            dirnames[:] = sorted(kept)
            in_masks = any(p.lower() in self.settings.mask_folders for p in rel_dir.parts)
            for name in sorted(filenames):
                rel = (rel_dir / name).as_posix() if rel_dir.parts else name
                if is_hidden(name):
                    hidden += 1
                    continue
                suffix = Path(name).suffix.lower()
                if in_masks:
                    if suffix in self.settings.extensions:
                        masks.append(rel)
                elif suffix in self.settings.extensions:
                    images.append(rel)
                else:
                    self.skipped.append(SkippedFile(rel, f"not an image file ({suffix or 'no extension'})"))
        return sorted(images), sorted(masks), hidden

    def _walk_error(self, exc: OSError) -> None:
        where = Path(exc.filename).relative_to(self.root).as_posix() if exc.filename else "?"
        self.skipped.append(SkippedFile(where, f"unreadable folder: {exc.strerror or exc}"))

    def _check_usable(self) -> None:
        if not self.records:
            n = len(self.skipped)
            top = Counter(_reason_kind(s.reason) for s in self.skipped).most_common(3)
            reasons = "; ".join(f"{k} ({v})" for k, v in top) or "the folder has no image files"
            raise DatasetError(f"no usable images under {self.root}: {n} file(s) skipped, top "
                               f"reasons: {reasons}")
        labels = {r.label for r in self.records}
        if len(labels) < 2:
            (found,) = labels
            folders = sorted({PurePosixPath(r.id).parts[-2] for r in self.records
                              if len(PurePosixPath(r.id).parts) > 1})
            other = self.settings.no_tumor_folders if found == TUMOR else self.settings.tumor_folders
            missing = ", ".join(f"{n}/" for n in other[:-1]) + f" or {other[-1]}/" if len(other) > 1 else f"{other[0]}/"
            raise DatasetError(f"only one label found ({found!r}, from folder(s) "
                               f"{', '.join(folders) or '(root)'}); need images in both label "
                               f"folders, expected also {missing}")


def _decode_one(path: Path) -> Decoded | str:
    """Decode + pHash one file, or the skip reason (a string) for a file that cannot be used."""
    try:
        return decode_file(path, phash=True)
    except DecodeError as exc:
        return str(exc)


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0].split(":")[0]


def _match_masks(images: list[str], mask_files: list[str], rules: FolderSettings) -> dict[str, str]:
    """Image id -> mask path. A mask lives in a ``masks/`` folder of any ancestor D of the image,
    at the image's path relative to D (any extension), or under the same stem (also ``<stem>_mask``)."""
    if not mask_files:
        return {}
    suffix = rules.mask_suffix.lower()
    by_key: dict[tuple[str, str], str] = {}
    for rel in mask_files:
        parts = PurePosixPath(rel).parts
        i = max(k for k, p in enumerate(parts) if p.lower() in rules.mask_folders)
        base = "/".join(parts[:i])
        inner = PurePosixPath(*parts[i + 1:])
        stem = inner.stem
        if suffix and stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
        by_key.setdefault((base, inner.with_suffix("").as_posix()), rel)
        by_key.setdefault((base, "stem:" + stem), rel)
    out: dict[str, str] = {}
    for rel in images:
        path = PurePosixPath(rel)
        parts = path.parts
        for depth in range(len(parts) - 1, -1, -1):
            base = "/".join(parts[:depth])
            inner = PurePosixPath(*parts[depth:]).with_suffix("").as_posix()
            hit = by_key.get((base, inner)) or by_key.get((base, "stem:" + path.stem))
            if hit is not None:
                out[rel] = hit
                break
    return out


@register_dataset("folder")
class FolderSource(DatasetSource):
    """Folders of 2D images as a registered source: claims a folder that holds image files."""

    description = ("your 2D images via --data PATH: label folders yes/no, tumor/notumor, glioma, "
                   "meningioma, pituitary, ... (Kaggle layouts as they come); Training/ + Testing/ kept; "
                   "masks/ beside the images")
    expects = "a folder of 2D images (.png .jpg .jpeg .bmp .tif .tiff .dcm) in label folders such as yes/ and no/"
    Settings = FolderSettings
    profile_defaults = {"smoke": {"image_size": 64}, "paper": {"image_size": 256}}

    @classmethod
    def claims(cls, path: Path) -> bool:
        return path.is_dir() and _holds_image(path, FolderSettings().extensions)

    @classmethod
    def open(cls, path: Path | None, settings: FolderSettings, seed: int, progress: bool) -> DataSource:
        return FolderDataset(path, progress=progress, settings=settings)


def _holds_image(root: Path, extensions: tuple[str, ...]) -> bool:
    """Whether any non-hidden file below ``root`` has an image extension (stops at the first)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        if any(Path(f).suffix.lower() in extensions for f in filenames if not is_hidden(f)):
            return True
    return False
