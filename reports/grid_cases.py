"""Which saved example cases an image grid shows: one per subject.

A run saves the best- and worst-scored test cases of each domain, and neighbouring slices of one
subject score alike, so "the four best" are often four slices of one brain. A grid shows a
subject once (its first, most extreme case) so its rows span different patients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["distinct_subject_rows"]


def distinct_subject_rows(ids: Sequence[str], kinds: Sequence[str],
                          subject_of: Mapping[str, str]) -> tuple[list[int], int]:
    """Row indices to show and how many saved cases were left out.

    Kinds are taken in saved order (best, then worst). Within a kind a subject appears once, and a
    subject already shown under an earlier kind is skipped too, unless that would leave the kind
    with no row at all. An id missing from ``subject_of`` is its own subject.
    """
    kinds = list(kinds) if len(kinds) == len(ids) else [""] * len(ids)
    shown: set[str] = set()
    rows: list[int] = []
    for kind in dict.fromkeys(kinds):
        members = [i for i, k in enumerate(kinds) if k == kind]
        fresh: list[int] = []
        for i in members:
            subject = subject_of.get(ids[i], ids[i])
            if subject not in shown:
                shown.add(subject)
                fresh.append(i)
        rows += fresh or members[:1]
    return rows, len(ids) - len(rows)
