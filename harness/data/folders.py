"""Folder datasets (``--data PATH``): the Kaggle brain-tumor layouts as they come.

The label of an image is the nearest ancestor folder whose name is in :data:`LABEL_ALIASES`
(case-insensitive; spaces, ``-`` and ``_`` ignored, so ``No Tumor``, ``no-tumor`` and
``no_tumor`` agree). Images under a ``Testing``/``test`` folder keep that split. Lesion masks
may sit in a ``masks/`` folder beside the images. Every file that cannot be used is listed in
``skipped`` with its reason; hidden and OS files (``.DS_Store``, ``._*``, ``Thumbs.db``,
``desktop.ini``, ``__MACOSX/``) are ignored and only counted in a notice, since they are never
meant as data.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from harness.labels import NO_TUMOR, TUMOR
from harness.data.imageio import IMAGE_EXTENSIONS, DecodeError, Decoded, decode_file
from harness.data.types import DatasetError, Record, SkippedFile
from harness.progress import progress as progress_bar

LABEL_ALIASES: dict[str, str] = {
    **{k: TUMOR for k in ("yes", "tumor", "tumour", "glioma", "meningioma", "pituitary",
                          "gliomatumor", "meningiomatumor", "pituitarytumor")},
    **{k: NO_TUMOR for k in ("no", "notumor", "notumour", "normal", "healthy")},
}
TEST_FOLDERS = frozenset({"testing", "test"})
MASK_FOLDERS = frozenset({"masks", "mask"})
UNLABELED_FOLDERS = frozenset({"pred"})
SYSTEM_FILES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db"})
SYSTEM_FOLDERS = frozenset({"__macosx", "$recycle.bin", "system volume information"})
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_folder_name(name: str) -> str:
    """``"No Tumor"``, ``"no-tumor"``, ``"No_Tumor"`` -> ``"notumor"``."""
    return _SEPARATORS.sub("", name.strip().lower())


def label_of(parts: tuple[str, ...]) -> str | None:
    """Label from the nearest ancestor folder in the alias table (``parts`` exclude the file)."""
    for part in reversed(parts):
        label = LABEL_ALIASES.get(normalise_folder_name(part))
        if label is not None:
            return label
    return None


def is_hidden(name: str) -> bool:
    low = name.lower()
    return name.startswith(".") or low in SYSTEM_FILES or low in SYSTEM_FOLDERS


class FolderDataset:
    """A DataSource over a folder tree; decodes every file once while scanning."""

    name = "folder"

    def __init__(self, path: str | Path, progress: bool = True, workers: int | None = None) -> None:
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
        unlabeled: Counter = Counter()
        labelled: list[tuple[str, str]] = []
        for rel in images:
            parts = PurePosixPath(rel).parts[:-1]
            label = label_of(parts)
            if label is not None:
                labelled.append((rel, label))
            elif any(p.lower() in UNLABELED_FOLDERS for p in parts):
                unlabeled[next(p for p in parts if p.lower() in UNLABELED_FOLDERS)] += 1
            else:
                self.skipped.append(SkippedFile(rel, "no label folder (expected a folder named "
                                                     "like yes/no, tumor/notumor, glioma, ...)"))
        for folder, n in sorted(unlabeled.items()):
            self.notices.append(f"ignored the unlabeled folder {folder}/ ({n} files)")
        if hidden:
            self.notices.append(f"ignored {hidden} hidden or system file(s) (.DS_Store, Thumbs.db, ...)")
        self._masks = _match_masks([rel for rel, _ in labelled], mask_files)

        with ThreadPoolExecutor(self._workers) as pool:
            results = pool.map(_decode_one, [root / rel for rel, _ in labelled])
            for (rel, label), result in progress_bar(zip(labelled, results), total=len(labelled),
                                                     desc="scan images", enabled=progress, unit="img"):
                if isinstance(result, str):
                    self.skipped.append(SkippedFile(rel, result))
                    continue
                decoded = result
                parts = PurePosixPath(rel).parts[:-1]
                given = "test" if any(p.lower() in TEST_FOLDERS for p in parts) else None
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
            in_masks = any(p.lower() in MASK_FOLDERS for p in rel_dir.parts)
            for name in sorted(filenames):
                rel = (rel_dir / name).as_posix() if rel_dir.parts else name
                if is_hidden(name):
                    hidden += 1
                    continue
                suffix = Path(name).suffix.lower()
                if in_masks:
                    if suffix in IMAGE_EXTENSIONS:
                        masks.append(rel)
                elif suffix in IMAGE_EXTENSIONS:
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
            missing = "no/, notumor/, normal/ or healthy/" if found == TUMOR else \
                "yes/, tumor/, glioma/, meningioma/ or pituitary/"
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


def _match_masks(images: list[str], mask_files: list[str]) -> dict[str, str]:
    """Image id -> mask path. A mask lives in a ``masks/`` folder of any ancestor D of the image,
    at the image's path relative to D (any extension), or under the same stem (also ``<stem>_mask``)."""
    if not mask_files:
        return {}
    by_key: dict[tuple[str, str], str] = {}
    for rel in mask_files:
        parts = PurePosixPath(rel).parts
        i = max(k for k, p in enumerate(parts) if p.lower() in MASK_FOLDERS)
        base = "/".join(parts[:i])
        inner = PurePosixPath(*parts[i + 1:])
        stem = inner.stem
        if stem.lower().endswith("_mask"):
            stem = stem[: -len("_mask")]
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

