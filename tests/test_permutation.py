"""The subject-level permutation test holds its size at the quick test split's 7 + 6 subjects,
detects a method that is better on every subject, and Holm adjusts as by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.metrics.permutation import auroc_ap_rows, holm, paired_permutation_test


def _cohort(rng: np.random.Generator, effect: float = 0.0, tumor_subjects: int = 7, healthy_subjects: int = 6,
            slices: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clustered scores of two methods: a subject effect both share, a per-subject effect of each
    method, slice noise; tumor subjects have lesion and lesion-free slices. ``effect`` > 0 makes A
    separate better on every subject; B is on another scale (exp), as methods are."""
    labels, subjects, a, b = [], [], [], []
    for s in range(tumor_subjects + healthy_subjects):
        shared, own_a, own_b = rng.normal(0, 1), rng.normal(0, 0.7), rng.normal(0, 0.7)
        for k in range(slices):
            lesion = int(s < tumor_subjects and k < slices // 2)
            labels.append(lesion)
            subjects.append(f"sub-{s}")
            a.append((1.2 + effect) * lesion + shared + own_a + rng.normal(0, 1))
            b.append(np.exp(0.5 * (1.2 * lesion + shared + own_b + rng.normal(0, 1))))
    return np.array(labels), np.array(a), np.array(b), np.array(subjects)


def test_ranks_give_scikit_learns_auroc_and_ap_with_ties():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    values = rng.integers(0, 5, (4, 60)).astype(float)  # many ties
    auroc, ap = auroc_ap_rows(values, labels)
    for row in range(4):
        assert auroc[row] == pytest.approx(roc_auc_score(labels, values[row]), abs=1e-12)
        assert ap[row] == pytest.approx(average_precision_score(labels, values[row]), abs=1e-12)


def test_false_positive_rate_under_the_null_at_seven_plus_six_subjects():
    rng = np.random.default_rng(2026)
    draws = 500
    rejected = sum(paired_permutation_test(*_cohort(rng), n_perm=199, seed=i, exact_limit=0).p_auroc < 0.05
                   for i in range(draws))
    assert 0.03 <= rejected / draws <= 0.065


def test_a_method_better_on_every_subject_is_detected():
    labels, a, b, subjects = _cohort(np.random.default_rng(7), effect=3.0)
    result = paired_permutation_test(labels, a, b, subjects)
    assert result.exact and result.n_patterns == 2**13
    assert result.auroc_delta > 0 and result.p_auroc < 0.01
    assert result.auroc_delta == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))


def test_a_method_against_itself_has_p_one():
    labels, a, _, subjects = _cohort(np.random.default_rng(3))
    result = paired_permutation_test(labels, a, a.copy(), subjects)
    assert result.auroc_delta == 0 and result.p_auroc == 1.0 and result.p_ap == 1.0


def test_holm_matches_a_hand_computation():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, kept monotone), 0.04 (x1 = 0.04 -> 0.06)
    assert holm([0.03, 0.01, None, 0.04, 0.02]) == pytest.approx([0.06, 0.04, None, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
