"""Seeded, stratified, subject-grouped and de-duplicated splits, written as hashed manifests.

Rules (the README repeats them):

1. **Duplicates.** Two images of *different* subjects are duplicates when their files are
   byte-identical (same SHA-256) or their 64-bit perceptual hashes differ in at most
   :data:`NEAR_DUPLICATE_BITS` bits. Duplicates are chained into groups (connected
   components). Images of one subject are grouped anyway (rule 2), so slices of one volume are
   never called duplicates of each other.
2. **Groups.** Duplicate groups and subjects are merged; a group never crosses splits.
3. **Cross-label duplicates.** The *same picture* under both labels (byte-identical, or pHashes
   at most :data:`SAME_IMAGE_BITS` bits apart, as after re-encoding or resizing) contradicts
   itself. Every image of such a group is dropped and the group is listed in
   ``cross_label_duplicates``. Near duplicates further apart (3-4 bits) with both labels are
   different pictures that look alike at pHash resolution (a small lesion does not move the
   hash): they are kept, in one split, and listed in ``mixed_label_near_duplicates``, because
   dropping them would remove exactly the hard tumor images and flatter every method.
4. **Given test split.** Groups holding any image from the dataset's own ``Testing/`` folder go to
   test entirely; the rest is divided between train and val in the ratio ``train:val``.
5. **Stratification.** Groups (which may hold both labels, like a tumor subject's slices) are
   shuffled with the seed; each goes to the split furthest below its targets per (label,
   stratum), weighted by the images it holds, so every split's mix of labels, and of strata
   within each label (``Record.stratum``: the MRI sequence of the embedded cohort), stays close
   to the whole. A split left
   without a label takes the smallest group holding it from the split with most such groups.
   A split that still lacks a label is an error (too few subjects or groups).

The manifest is sorted by path and its CSV bytes (fixed columns, ``\\n`` line ends, no floats)
are hashed: the first 16 hex digits of their SHA-256 are the split hash every result names.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from harness.atomic import atomic_write_bytes
from harness.config import SplitSettings
from harness.data.types import LABELS, TUMOR, DatasetError, DataSource, Record
from harness.grouping import DisjointSets

SPLITS = ("train", "val", "test")
MANIFEST_COLUMNS = ["path", "sha256", "label", "subject", "split", "dup_group"]
NEAR_DUPLICATE_BITS = 4
SAME_IMAGE_BITS = 2
_CHUNK = 1024


@dataclass
class Split:
    """A split of a dataset: the manifest (one row per used image) and what was found."""

    manifest: pd.DataFrame
    hash: str
    duplicate_groups: list[list[str]] = field(default_factory=list)
    cross_label_duplicates: list[list[str]] = field(default_factory=list)
    mixed_label_near_duplicates: list[list[str]] = field(default_factory=list)

    @property
    def n_excluded(self) -> int:
        """Images dropped because they sit in a cross-label duplicate group."""
        return sum(len(g) for g in self.cross_label_duplicates)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {s: {label: 0 for label in LABELS} for s in SPLITS}
        for (s, label), n in self.manifest.groupby(["split", "label"]).size().items():
            out[s][label] = int(n)
        return out

    def subject_counts(self, strata: dict[str, str] | None = None) -> dict[str, dict[str, Any]] | None:
        """Subjects per split: ``with_tumor``, ``without`` and, when ``strata`` (image id ->
        stratum) names any, ``strata`` (subjects per stratum). None when every image is its own
        subject, since the image counts then say the same."""
        manifest = self.manifest
        if manifest["subject"].nunique() == len(manifest):
            return None
        has_tumor = manifest.groupby("subject")["label"].agg(lambda labels: bool((labels == TUMOR).any()))
        subjects = manifest.drop_duplicates("subject")
        tumor = subjects["subject"].map(has_tumor).astype(bool)
        stratum = subjects["path"].map(strata or {}).fillna("")
        names = sorted(set(stratum) - {""})
        out: dict[str, dict[str, Any]] = {}
        for s in SPLITS:
            here = (subjects["split"] == s).to_numpy()
            out[s] = {"with_tumor": int((here & tumor).sum()), "without": int((here & ~tumor).sum())}
            if names:
                out[s]["strata"] = {n: int((here & (stratum == n).to_numpy()).sum()) for n in names}
        return out

    def ids(self, split_name: str) -> list[str]:
        if split_name not in SPLITS:
            raise ValueError(f"unknown split {split_name!r}; expected one of {', '.join(SPLITS)}")
        return self.manifest.loc[self.manifest["split"] == split_name, "path"].tolist()

    def write_manifest(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, manifest_bytes(self.manifest))
        return path


def manifest_bytes(manifest: pd.DataFrame) -> bytes:
    """The canonical CSV bytes of a manifest (what the split hash is computed over)."""
    return manifest[MANIFEST_COLUMNS].to_csv(index=False, lineterminator="\n").encode("utf-8")


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :meth:`Split.write_manifest` back, types intact."""
    return pd.read_csv(path, dtype={"path": str, "sha256": str, "label": str, "subject": str,
                                    "split": str, "dup_group": int}, keep_default_na=False)


def make_split(source: DataSource, seed: int, settings: SplitSettings) -> Split:
    """Split ``source.records`` by the rules in the module docstring."""
    records = sorted(source.records, key=lambda r: r.id)
    if not records:
        raise DatasetError(f"cannot split {source.name}: it has no usable images")
    fractions = _fractions(settings)
    pair_a, pair_b, bits = _duplicate_pairs(records)
    same = bits <= SAME_IMAGE_BITS
    same_image = _components(len(records), pair_a[same], pair_b[same])
    cross = [m for m in _members(same_image) if len(m) > 1 and len({records[i].label for i in m}) > 1]
    excluded = {i for m in cross for i in m}

    keep = [i for i in range(len(records)) if i not in excluded]
    if not keep:
        raise DatasetError(f"cannot split {source.name}: every image is in a cross-label duplicate group")
    kept_pair = np.asarray([i not in excluded and j not in excluded for i, j in zip(pair_a, pair_b)], dtype=bool)
    near = _components(len(records), pair_a[kept_pair], pair_b[kept_pair])
    groups = _groups(records, keep, near)
    assignment = _assign(records, groups, fractions, seed, source.name)

    dup_groups = [m for m in _members(near) if len(m) > 1]
    duplicate_groups = sorted(sorted(records[i].id for i in m) for m in dup_groups)
    dup_index = {rid: k for k, ids in enumerate(duplicate_groups) for rid in ids}
    rows = [
        {"path": records[i].id, "sha256": records[i].sha256, "label": records[i].label,
         "subject": records[i].subject, "split": assignment[i], "dup_group": dup_index.get(records[i].id, -1)}
        for i in keep
    ]
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("path", kind="stable")
    manifest = manifest.reset_index(drop=True)
    digest = hashlib.sha256(manifest_bytes(manifest)).hexdigest()[:16]
    labels_of = {r.id: r.label for r in records}
    return Split(
        manifest=manifest, hash=digest, duplicate_groups=duplicate_groups,
        cross_label_duplicates=sorted(sorted(records[i].id for i in m) for m in cross),
        mixed_label_near_duplicates=[g for g in duplicate_groups if len({labels_of[i] for i in g}) > 1],
    )


def _fractions(settings: SplitSettings) -> dict[str, float]:
    values = {"train": settings.train, "val": settings.val, "test": settings.test}
    bad = [k for k, v in values.items() if not np.isfinite(v) or v <= 0]
    if bad:
        raise ValueError(f"split fractions must be positive, got {', '.join(f'{k}={values[k]}' for k in bad)}")
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def _duplicate_pairs(records: list[Record]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs of records of different subjects that are duplicates, with the pHash distance
    in bits (-1 for byte-identical files)."""
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    bit_parts: list[np.ndarray] = []
    by_sha: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_sha.setdefault(r.sha256, []).append(i)
    for members in by_sha.values():
        if len(members) > 1:
            a_parts.append(np.full(len(members) - 1, members[0]))
            b_parts.append(np.asarray(members[1:]))
            bit_parts.append(np.full(len(members) - 1, -1))
    with_hash = [i for i, r in enumerate(records) if r.phash]
    if len(with_hash) > 1:
        a, b, d = near_duplicate_pairs([records[i].phash for i in with_hash], NEAR_DUPLICATE_BITS)
        idx = np.asarray(with_hash)
        a_parts.append(idx[a])
        b_parts.append(idx[b])
        bit_parts.append(d)
    if not a_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    pa, pb, bits = (np.concatenate(x).astype(np.int64) for x in (a_parts, b_parts, bit_parts))
    subjects = np.asarray([r.subject for r in records], dtype=object)
    other = subjects[pa] != subjects[pb]
    return pa[other], pb[other], bits[other]


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label per node of the undirected graph with edges (a, b)."""
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _members(component: np.ndarray) -> list[list[int]]:
    out: dict[int, list[int]] = {}
    for i, c in enumerate(component.tolist()):
        out.setdefault(c, []).append(i)
    return list(out.values())


def near_duplicate_pairs(hashes: list[str], max_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) of 64-bit hex hashes within ``max_bits`` Hamming distance, and that
    distance.

    Exact O(n^2) comparison in chunks with numpy popcount: 10,000 hashes take well under a
    second, and no pair is missed (a bucketed search can miss none either, but is more code).
    """
    values = np.asarray([int(h, 16) for h in hashes], dtype=np.uint64)
    n = len(values)
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        block = values[start:start + _CHUNK]
        dist = _popcount(block[:, None] ^ values[None, :])
        a, b = np.nonzero(dist <= max_bits)
        a = a + start
        upper = b > a
        out_a.append(a[upper])
        out_b.append(b[upper])
        out_d.append(dist[a[upper] - start, b[upper]].astype(np.int64))
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_d)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 (numpy >= 2 has it built in; older numpy counts bytes by table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)


def _groups(records: list[Record], keep: list[int], near: np.ndarray) -> list[list[int]]:
    """Merge duplicate components and subjects among the kept records; groups sorted by first id."""
    sets = DisjointSets(keep)
    first_of: dict[tuple[str, object], int] = {}
    for i in keep:
        for key in (("dup", int(near[i])), ("subject", records[i].subject)):
            sets.union(first_of.setdefault(key, i), i)
    members: dict[int, list[int]] = {}
    for i in keep:
        members.setdefault(sets.find(i), []).append(i)
    return sorted(members.values(), key=lambda m: m[0])


def _assign(records: list[Record], groups: list[list[int]], fractions: dict[str, float],
            seed: int, name: str) -> dict[int, str]:
    """Record index -> split name."""
    assignment: dict[int, str] = {}
    free: list[list[int]] = []
    for g in groups:
        if any(records[i].given_split == "test" for i in g):
            assignment.update({i: "test" for i in g})
        else:
            free.append(g)
    given_test = bool(assignment)
    targets = {"train": fractions["train"], "val": fractions["val"]} if given_test else fractions
    total = sum(targets.values())
    order = np.random.default_rng(seed).permutation(len(free))
    shuffled = [(free[k], Counter((records[i].label, records[i].stratum) for i in free[k])) for k in order]
    per_key: Counter = Counter()  # (label, stratum) -> images
    for _, c in shuffled:
        per_key.update(c)
    goal = {s: {key: f / total * n for key, n in per_key.items()} for s, f in targets.items()}
    filled: dict[str, Counter] = {s: Counter() for s in targets}
    placed: dict[str, list[tuple[list[int], Counter]]] = {s: [] for s in targets}

    def need(s: str, c: Counter) -> float:  # how far below target split s is, for c's keys
        return sum(n * (goal[s][key] - filled[s][key]) / per_key[key] for key, n in c.items())

    for g, c in shuffled:
        s = max(targets, key=lambda s: need(s, c))
        placed[s].append((g, c))
        filled[s].update(c)
    _repair(placed, sorted({label for label, _ in per_key}))
    for s, gs in placed.items():
        assignment.update({i: s for g, _ in gs for i in g})
    _check_every_split_has_both_labels(records, assignment, name, given_test)
    return assignment


def _repair(placed: dict[str, list[tuple[list[int], Counter]]], labels: list[str]) -> None:
    """Give a split that lacks a label the smallest group with that label from the split that
    has the most such groups, when that split can spare one."""

    def count(c: Counter, label: str) -> int:  # images of ``label`` in a (label, stratum) counter
        return sum(n for (lab, _), n in c.items() if lab == label)

    for s in placed:
        for label in labels:
            if any(count(c, label) for _, c in placed[s]):
                continue
            donors = {d: [gc for gc in placed[d] if count(gc[1], label)] for d in placed if d != s}
            donor = max(donors, key=lambda d: len(donors[d]))
            if len(donors[donor]) < 2:
                continue
            moved = min(donors[donor], key=lambda gc: len(gc[0]))
            placed[donor].remove(moved)
            placed[s].append(moved)


def _check_every_split_has_both_labels(records: list[Record], assignment: dict[int, str],
                                       name: str, given_test: bool) -> None:
    present = {(s, records[i].label) for i, s in assignment.items()}
    for s in SPLITS:
        for label in LABELS:
            if (s, label) in present:
                continue
            if s == "test" and given_test:
                why = f"the dataset's own Testing/ folder has no {label} images"
            else:
                why = (f"too few independent subjects or duplicate groups of {label} images; add "
                       f"images or change the fractions with --set split.{s}=...")
            raise DatasetError(f"cannot split {name}: the {s} split would have no {label} images ({why})")
