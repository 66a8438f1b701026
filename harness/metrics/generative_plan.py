"""The seeded subsamples behind the generative rows, shared by every feature space and by FRD.

Two kinds of comparison are drawn here:

* **Equal n** for ``fid``, ``kid`` and ``is``: one seeded subsample of n images per set, n the
  smallest of the real and translated counts of every evaluated domain (FID is biased by n, and
  the tumor and no_tumor rows sit side by side).
* **Reference partitions** for ``fid_reference``/``fid_relative`` (and the FRD rows): per seeded
  partition of the real images into subject-disjoint halves A and B
  (:mod:`harness.metrics.subject_halves`), the reference compares A with B, and the numerator
  compares A with translated images that stand in for B. Those must come only from **source
  subjects outside half A**: a tumor subject's lesion-free slices are real no_tumor images, and its
  tumor slices are what a reconstruction method translates into no_tumor, so a translation of a
  subject in A would be measured against that same subject's neighbouring slices, a near copy,
  and the ratio would flatter every method. A, B and the translated draw are all subsampled to
  the same h images (equal across partitions and domains, so every FID carries the same bias).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.metrics.subject_halves import Halves, subject_halves

DOMAINS = ("tumor", "no_tumor")
MIN_IMAGES = 2  # a covariance, a KID subset and an IS split all need at least two


@dataclass(frozen=True)
class DomainGroups:
    """What the plan needs of one domain: its image counts and the subject (or duplicate group)
    of each real image and of the source image of each translated image."""

    real_groups: np.ndarray
    source_groups: np.ndarray


@dataclass(frozen=True)
class Draw:
    """One reference partition's subsample: h image indices each of real half A, real half B and
    the translated images, the latter drawn only from ``pool`` images whose source subject is
    outside A (``pool_subjects`` source subjects)."""

    a: np.ndarray
    b: np.ndarray
    translated: np.ndarray
    pool: int
    pool_subjects: int


@dataclass
class Plan:
    """Every seeded subsample of one evaluation (see the module docstring)."""

    n: int  # equal n of fid, kid, is
    real_idx: dict[str, np.ndarray]
    translated_idx: dict[str, np.ndarray]
    halves: dict[str, list[Halves] | str]  # per domain: partitions, or why there are none
    h: int  # images per set in each draw (equal across partitions and domains); 0 when none
    draws: dict[str, list[Draw]]  # per domain with usable partitions
    skipped: dict[str, int]  # per domain: partitions left out for too few translated images outside A


def choose(n_total: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k of ``range(n_total)`` without replacement, sorted (seeded by ``rng``)."""
    return np.sort(rng.permutation(n_total)[:k])


def _outside(source_groups: np.ndarray, real_groups: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Indices of the translated images whose source subject has no real image in ``half``."""
    return np.flatnonzero(~np.isin(source_groups, np.unique(real_groups[half])))


def make_plan(domains: dict[str, DomainGroups], limit: int, seed: int, partitions: int) -> Plan:
    """The plan for ``domains`` (name -> groups); ``limit`` caps every subsample (0: no cap).

    A partition whose half A leaves fewer than ``MIN_IMAGES`` translated images from other
    subjects is skipped (counted in ``skipped``): it has no subject-disjoint numerator.
    """
    cap = limit or math.inf
    counts = [min(d.real_groups.size, d.source_groups.size) for d in domains.values()]
    n = int(min([cap] + counts)) if counts else 0
    real_idx, translated_idx, halves, pools = {}, {}, {}, {}
    for name, d in domains.items():
        i = DOMAINS.index(name)  # seeds per domain, whichever domains are evaluated
        real_idx[name] = choose(d.real_groups.size, n, np.random.default_rng([seed, i, 0]))
        translated_idx[name] = choose(d.source_groups.size, n, np.random.default_rng([seed, i, 1]))
        try:
            halves[name] = subject_halves(d.real_groups, partitions, seed)
        except ValueError as exc:
            halves[name] = f"real {name} images: {exc}"
            continue
        pools[name] = [(k, p, _outside(d.source_groups, d.real_groups, p.a)) for k, p in enumerate(halves[name])]
    usable = {name: [(k, p, pool) for k, p, pool in parts if pool.size >= MIN_IMAGES] for name, parts in pools.items()}
    sizes = [min(len(p.a), len(p.b), pool.size) for parts in usable.values() for _, p, pool in parts]
    h = int(min([cap] + sizes)) if sizes else 0
    draws: dict[str, list[Draw]] = {}
    for name, parts in usable.items():
        if not parts or h < MIN_IMAGES:
            continue
        d = domains[name]
        draws[name] = []
        for k, p, pool in parts:
            rng = np.random.default_rng([seed, DOMAINS.index(name), 2, k])
            a, b = p.a[choose(len(p.a), h, rng)], p.b[choose(len(p.b), h, rng)]
            draws[name].append(Draw(a, b, pool[choose(pool.size, h, rng)], int(pool.size),
                                    int(np.unique(d.source_groups[pool]).size)))
    skipped = {name: len(pools[name]) - len(parts) for name, parts in usable.items()}
    return Plan(n, real_idx, translated_idx, halves, h, draws, skipped)


def _range(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def draws_problem(plan: Plan, domain: str) -> str | None:
    """Why ``domain`` has no reference draws (for a "not computed" note), or None."""
    parts = plan.halves.get(domain)
    if isinstance(parts, str):
        return parts
    if domain in plan.draws:
        return None
    if parts and plan.skipped.get(domain) == len(parts):
        return (f"every partition's half A holds the source subjects of all but at most {MIN_IMAGES - 1} "
                f"translated {domain} image(s), so no numerator from other subjects")
    return f"halves of only {plan.h} images (need >= {MIN_IMAGES})"


def partitions_text(plan: Plan, domain: str, draws: list[Draw] | None = None) -> str:
    """The note text that says how the reference halves and the numerator were drawn."""
    parts = plan.halves[domain]
    assert not isinstance(parts, str)
    draws = plan.draws[domain] if draws is None else draws
    skipped = plan.skipped.get(domain, 0)
    skip = (f"; {skipped} partition(s) left out: fewer than {MIN_IMAGES} translated images from source "
            f"subjects outside half A") if skipped else ""
    return (f"{len(parts)} seeded partitions of the real {domain} images into halves A and B that share no "
            f"subject (subjects per half {_range([p.subjects_a for p in parts] + [p.subjects_b for p in parts])}, "
            f"images per half {_range([len(p.a) for p in parts] + [len(p.b) for p in parts])}); the translated "
            f"images stand in for B and come only from source subjects outside half A "
            f"({_range([d.pool_subjects for d in draws])} subjects, {_range([d.pool for d in draws])} images "
            f"per partition){skip}")


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample sd (None for one value) over partitions."""
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def relative(numerators: list[float], references: list[float]) -> tuple[float, float | None, str]:
    """Mean numerator / mean reference over the partitions, its std (both spreads combined as
    coefficients of variation) and the note text "= num ± sd over reference ref ± sd"."""
    num, num_sd = mean_sd(numerators)
    ref, ref_sd = mean_sd(references)
    value = num / ref
    cvs = [sd / mean for sd, mean in ((num_sd, num), (ref_sd, ref)) if sd is not None and mean > 0]
    std = value * math.sqrt(sum(c * c for c in cvs)) if cvs else None

    def text(mean: float, sd: float | None) -> str:
        return f"{mean:.4g}" + (f" ± {sd:.4g}" if sd is not None else "")

    return value, std, (f"= {text(num, num_sd)} over the reference {text(ref, ref_sd)} "
                        f"(std combines both spreads)")
