"""Find the subjects of a folder of NIfTI volumes, and each one's sequence images and masks, from
file names alone.

Why one rule for every layout: BraTS, IXI, MSLUB, ATLAS and most exports name a file by a subject
part and a *role* token: a sequence (``flair``, ``t2w``, ``T2``), a lesion mask (``seg``,
``consensus_gt``, ``..._mask``) or a brain mask (``brainmask``). Tokens are the name's parts
between ``-``, ``_``, ``.`` or spaces, compared case-insensitively; the last token that names a
role gives the file's role, and the name without that token is the file's *subject part*:

* ``BraTS2021_00000/BraTS2021_00000_flair.nii.gz`` -> subject ``BraTS2021_00000``, ``flair``;
* ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2f.nii.gz`` -> ``BraTS-GLI-00000-000``, ``flair``;
* ``IXI-T2/IXI002-Guys-0828-T2.nii.gz`` -> ``IXI002-Guys-0828``, ``t2``;
* ``patient01/T2W.nii.gz`` with ``patient01/consensus_gt.nii.gz`` (MSLUB) -> ``patient01``.

A folder whose images have two or more different subject parts holds one subject per part (IXI's
flat folders; files of one subject in different folders join up). Otherwise the folder is one
subject, named by its images' subject part when that is a BraTS or IXI name, else by the folder's
path (MSLUB's ``patient01``), and every mask in it is that subject's. Which token names what is a setting
(:class:`harness.data.volumes.VolumeSettings`).

The layout of a subject (``brats2021``, ``brats2023``, ``ixi`` or ``generic``) comes from its
name and decides what a missing mask means: a BraTS subject without ``seg`` is unlabelled
(the BraTS validation and test releases carry none) and skipped; an IXI or generic subject without
a lesion mask is healthy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.data.folders import is_hidden
from harness.data.nifti import stem
from harness.data.types import SkippedFile

__all__ = ["LAYOUT_LABELS", "Naming", "VolumeCase", "find_cases", "holds_volumes", "is_nifti", "layout_of"]

_TOKEN = re.compile(r"[^-_.\s]+")
_LAYOUTS = (("brats2021", re.compile(r"^BraTS20\d\d_\d+$", re.IGNORECASE)),
            ("brats2023", re.compile(r"^BraTS-[A-Z]+-\d+-\d+$", re.IGNORECASE)),
            ("ixi", re.compile(r"^IXI\d+", re.IGNORECASE)))
# the lesion labels each layout documents (any label > 0 is lesion; others are counted)
LAYOUT_LABELS = {"brats2021": frozenset({1, 2, 4}), "brats2023": frozenset({1, 2, 3}),
                 "ixi": frozenset({1}), "generic": frozenset({1})}
CLAIM_DEPTH = 4  # folder levels searched for a NIfTI file by ``holds_volumes`` (ATLAS nests 4 deep)


@dataclass(frozen=True)
class Naming:
    """Which name tokens mean what: sequence -> its tokens, lesion-mask and brain-mask tokens."""

    sequences: Mapping[str, tuple[str, ...]]
    lesion: tuple[str, ...]
    brain: tuple[str, ...]


@dataclass
class VolumeCase:
    """One subject's files: its sequence images and optional lesion and brain masks."""

    subject: str
    layout: str
    images: dict[str, Path] = field(default_factory=dict)
    lesion: Path | None = None
    brain: Path | None = None


def is_nifti(name: str) -> bool:
    return name.lower().endswith((".nii", ".nii.gz"))


def holds_volumes(root: Path) -> bool:
    """Whether a NIfTI file lies within :data:`CLAIM_DEPTH` folder levels of ``root`` (stops at the first)."""
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base
        dirnames[:] = [d for d in dirnames if not is_hidden(d)] if depth < CLAIM_DEPTH else []
        if any(is_nifti(f) for f in filenames if not is_hidden(f)):
            return True
    return False


def layout_of(subject: str) -> str:
    name = PurePosixPath(subject).name
    return next((layout for layout, pattern in _LAYOUTS if pattern.match(name)), "generic")


def find_cases(root: Path, naming: Naming) -> tuple[list[VolumeCase], list[SkippedFile]]:
    """Every subject under ``root`` with its files, and the files (or subjects) that cannot be used."""
    skipped: list[SkippedFile] = []
    folders: dict[str, list[tuple[str, str, str | None, str]]] = {}  # folder -> (file, role, sequence, part)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(f for f in filenames if is_nifti(f) and not is_hidden(f)):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            role = _role(stem(name), naming)
            if role is None:
                skipped.append(SkippedFile(rel, "file name names no known sequence, lesion mask or brain mask "
                                                "(see the volumes.sequence_names, lesion_names and brain_names settings)"))
            else:
                folders.setdefault(rel_dir, []).append((rel, *role))
    cases: dict[str, VolumeCase] = {}
    problems: dict[str, list[str]] = {}
    for folder, files in folders.items():
        parts = {part for _, role, _, part in files if role == "image"}
        flat = len(parts) >= 2 and all(parts)
        for rel, role, sequence, part in files:
            if flat:
                subject = part
                if role != "image" and part not in parts:
                    skipped.append(SkippedFile(rel, f"mask with no image of subject {part!r} beside it"))
                    continue
            else:
                subject = _folder_subject(folder, parts, root)
            _add(cases.setdefault(subject, VolumeCase(subject, layout_of(subject))), rel, role, sequence,
                 root, problems.setdefault(subject, []))
    usable = []
    for subject in sorted(cases):
        case = cases[subject]
        reasons = problems[subject]
        if not case.images:
            reasons.append("no sequence image, only masks")
        if case.layout.startswith("brats") and case.lesion is None and not reasons:
            reasons.append("BraTS subject without a seg file (the BraTS validation and test releases carry no "
                           "labels)")
        if reasons:
            skipped.append(SkippedFile(subject, "; ".join(reasons)))
        else:
            usable.append(case)
    return usable, skipped


def _folder_subject(folder: str, parts: set[str], root: Path) -> str:
    """A one-subject folder's subject: its images' subject part when that is a BraTS or IXI name
    (the files then join up with that subject's files elsewhere), else the folder's path."""
    part = next(iter(parts)) if len(parts) == 1 else ""
    if part and layout_of(part) != "generic":
        return part
    return root.name if folder == "." else folder


def _add(case: VolumeCase, rel: str, role: str, sequence: str | None, root: Path, problems: list[str]) -> None:
    path = root / rel
    if role == "image":
        assert sequence is not None
        if sequence in case.images:
            problems.append(f"two {sequence} images ({case.images[sequence].name}, {path.name})")
        case.images[sequence] = path
        return
    attribute = "lesion" if role == "lesion" else "brain"
    present = getattr(case, attribute)
    if present is not None:
        problems.append(f"two {role} masks ({present.name}, {path.name})")
    setattr(case, attribute, path)


def _role(name: str, naming: Naming) -> tuple[str, str | None, str] | None:
    """(role, sequence, subject part) of a file name without its extension; None when no token
    names a role. A brain-mask name may span two tokens (``brain_mask``)."""
    spans = [(m.start(), m.end(), m.group().lower()) for m in _TOKEN.finditer(name)]
    sequence_of = {token: seq for seq, tokens in naming.sequences.items() for token in tokens}
    for i in range(len(spans) - 1, -1, -1):
        start, end, token = spans[i]
        if i > 0 and spans[i - 1][2] + token in naming.brain:
            return "brain", None, _without(name, spans[i - 1][0], end)
        if token in naming.brain:
            return "brain", None, _without(name, start, end)
        if token in naming.lesion:
            return "lesion", None, _without(name, start, end)
        if token in sequence_of:
            return "image", sequence_of[token], _without(name, start, end)
    return None


def _without(name: str, start: int, end: int) -> str:
    """``name`` with ``name[start:end]`` and the separators around it removed."""
    return (name[:start].rstrip("-_. ") + name[end:]).strip("-_. ")
