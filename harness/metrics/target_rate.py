"""``target_rate``: how often the MRI-domain classifier takes translated images for the target domain.

A 2-class Inception Score has no direction (a translator that changes nothing scores higher
than a perfect one), so the MRI space reports a rate instead: the share of images translated
into domain d that the classifier assigns to d, at the threshold fixed on validation (Youden's
J, as for detection; the validation images take the translating method's resolution path, as the
test images do). Higher is better. The same rate on real images of d is a reference, not a
ceiling: smoothed images can pass the classifier more often than real ones. The interval
resamples whole subjects, since slices of one subject are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from harness.metrics.bootstrap import percentile_interval, stratified_counts
from harness.metrics.detection import choose_threshold

TUMOR = "tumor"


def tumor_score(logits: torch.Tensor) -> np.ndarray:
    """Logit margin of tumor over no_tumor (monotone in P(tumor), without softmax saturation)."""
    x = logits.double()
    return (x[:, 1] - x[:, 0]).numpy()


def validation_threshold(val_logits: torch.Tensor, val_labels: torch.Tensor) -> float | None:
    """The classifier's operating point on validation; None when validation holds one class."""
    return choose_threshold(val_labels.numpy().astype(int), tumor_score(val_logits))


@dataclass(frozen=True)
class Rate:
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    subjects: int


def target_rate(logits: torch.Tensor, domain: str, threshold: float, groups: Sequence[str],
                n_boot: int, ci: float, seed: int) -> Rate:
    """Share of images whose classifier decision is ``domain``, with a subject-bootstrap CI."""
    scores = tumor_score(logits)
    if len(groups) != scores.size:
        raise ValueError(f"{len(groups)} groups for {scores.size} images")
    hits = (scores >= threshold) if domain == TUMOR else (scores < threshold)
    _, member_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_subjects = int(member_of.max()) + 1 if member_of.size else 0
    low = high = None
    if n_boot > 0 and n_subjects > 1:
        rng = np.random.default_rng(seed)
        counts = stratified_counts(np.zeros(n_subjects, dtype=int), n_boot, rng)[:, member_of]
        low, high = percentile_interval((counts @ hits.astype(float)) / counts.sum(axis=1), ci)
    return Rate(float(hits.mean()), low, high, int(scores.size), n_subjects)
