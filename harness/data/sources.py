"""The dataset factory: ``--data PATH`` or the embedded default."""

from __future__ import annotations

from pathlib import Path

from harness.config import Profile
from harness.data.types import DataSource

EMBEDDED = "mni152-lesions"
DATASETS: dict[str, str] = {
    EMBEDDED: "embedded default: virtual subjects from the MNI152 template with 3D lesions and "
              "ground-truth masks; no download (used when --data is not given)",
    "folder": "your images via --data PATH (label folders yes/no, tumor/notumor, glioma, "
              "meningioma, pituitary, ...; Training/ + Testing/ kept)",
}


def open_dataset(data: str | None, profile: Profile, seed: int, progress: bool = True) -> DataSource:
    """``None`` (or the name ``mni152-lesions`` when no such folder exists) -> the embedded cohort
    sized by ``profile.cohort``; anything else is a folder path."""
    if data is None or (data == EMBEDDED and not Path(data).exists()):
        from harness.data.embedded import load_embedded_cohort

        return load_embedded_cohort(profile.cohort, seed, progress=progress)
    from harness.data.folders import FolderDataset

    return FolderDataset(data, progress=progress)
