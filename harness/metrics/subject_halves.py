"""Subject-disjoint halves of a set of real images, for the real-vs-real reference FID.

Neighbouring slices of one subject are near copies. Halves drawn image by image put slices of
every subject on both sides, so the reference distance comes out several times too small and
every ratio against it too large. Halves here never split a subject (or a duplicate group), are
balanced in image count as far as the groups allow, and several seeded partitions are drawn
because one partition of a handful of subjects is unsteady.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.grouping import DisjointSets

MIN_SUBJECTS_PER_HALF = 2  # one subject against one other measures those two subjects, not a set
BALANCE = 0.1  # halves are balanced until their image counts differ by at most this share of all images


@dataclass(frozen=True)
class Halves:
    """One partition: image indices of half A and half B, and their subject counts."""

    a: np.ndarray
    b: np.ndarray
    subjects_a: int
    subjects_b: int


def subject_groups(subjects: Sequence[str], dup_groups: Sequence[int] | None = None) -> list[str]:
    """One group name per image: images sharing a subject or a duplicate group (``>= 0``; the
    split manifest's ``dup_group``) are one group, named by its first subject in sorted order."""
    subjects = [str(s) for s in subjects]
    dups = [-1] * len(subjects) if dup_groups is None else [int(d) for d in dup_groups]
    if len(dups) != len(subjects):
        raise ValueError(f"{len(dups)} duplicate groups for {len(subjects)} subjects")
    sets = DisjointSets(subjects)
    first_of_dup: dict[int, str] = {}
    for subject, dup in zip(subjects, dups):
        if dup >= 0:
            sets.union(first_of_dup.setdefault(dup, subject), subject)
    return [sets.find(s) for s in subjects]


def _improve(sizes: np.ndarray, in_a: np.ndarray, min_groups: int) -> np.ndarray:
    """Single moves and pairwise swaps that shrink |images in A - images in B| until it is within
    ``BALANCE`` of all images (tighter would leave few distinct partitions of a handful of
    subjects), while each half keeps at least ``min_groups`` groups."""
    tolerance = max(1, int(BALANCE * sizes.sum()))
    while True:
        diff = int(sizes[in_a].sum() - sizes[~in_a].sum())
        if abs(diff) <= tolerance:
            return in_a
        ia, ib = np.flatnonzero(in_a), np.flatnonzero(~in_a)
        best, choice = abs(diff), None
        if ia.size > min_groups:  # move one group A -> B: diff - 2 s
            k = int(np.argmin(np.abs(diff - 2 * sizes[ia])))
            if abs(diff - 2 * int(sizes[ia[k]])) < best:
                best, choice = abs(diff - 2 * int(sizes[ia[k]])), ([ia[k]], [])
        if ib.size > min_groups:  # move one group B -> A: diff + 2 s
            k = int(np.argmin(np.abs(diff + 2 * sizes[ib])))
            if abs(diff + 2 * int(sizes[ib[k]])) < best:
                best, choice = abs(diff + 2 * int(sizes[ib[k]])), ([], [ib[k]])
        swap = np.abs(diff - 2 * (sizes[ia][:, None] - sizes[ib][None, :]))
        i, j = np.unravel_index(int(np.argmin(swap)), swap.shape)
        if swap[i, j] < best:
            choice = ([ia[i]], [ib[j]])
        if choice is None:
            return in_a
        in_a = in_a.copy()
        in_a[choice[0]] = False
        in_a[choice[1]] = True


def _fill(sizes: np.ndarray, in_a: np.ndarray, min_groups: int) -> np.ndarray:
    """Give a half with too few groups the smallest groups of the other half."""
    in_a = in_a.copy()
    for side in (True, False):
        while int((in_a == side).sum()) < min_groups:
            others = np.flatnonzero(in_a != side)
            in_a[others[int(np.argmin(sizes[others]))]] = side
    return in_a


def _one_partition(sizes: np.ndarray, rng: np.random.Generator, min_groups: int) -> np.ndarray:
    """Groups in a random order, each to the half with fewer images, then balanced further
    (each half keeps at least ``min_groups`` groups)."""
    in_a = np.zeros(sizes.size, dtype=bool)
    count = [0, 0]
    members = [0, 0]
    for g in rng.permutation(sizes.size):
        side = 0 if (count[0], members[0]) <= (count[1], members[1]) else 1
        in_a[g] = side == 0
        count[side] += int(sizes[g])
        members[side] += 1
    return _improve(sizes, _fill(sizes, in_a, min_groups), min_groups)


def subject_halves(groups: Sequence[str], n_partitions: int, seed: int,
                   min_subjects: int = MIN_SUBJECTS_PER_HALF) -> list[Halves]:
    """Up to ``n_partitions`` distinct seeded partitions of the images into two halves that
    share no group. Raises ValueError (the reason) with fewer than ``2 * min_subjects`` groups."""
    names, member_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    if names.size < 2 * min_subjects:
        raise ValueError(f"only {names.size} subject(s), two subject-disjoint halves need "
                         f">= {2 * min_subjects} ({min_subjects} each)")
    sizes = np.bincount(member_of, minlength=names.size)
    seen: set[bytes] = set()
    out: list[Halves] = []
    for k in range(n_partitions):
        in_a = _one_partition(sizes, np.random.default_rng([seed, k]), min_subjects)
        canonical = in_a if in_a[0] else ~in_a  # A|B and B|A are one partition
        if canonical.tobytes() in seen:
            continue
        seen.add(canonical.tobytes())
        image_in_a = in_a[member_of]
        out.append(Halves(np.flatnonzero(image_in_a), np.flatnonzero(~image_in_a),
                          int(in_a.sum()), int((~in_a).sum())))
    return out
