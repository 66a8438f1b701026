"""Detection metrics against scikit-learn and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.config import MetricSettings
from harness.metrics.detection import (bootstrap_counts, choose_dice_threshold, choose_threshold, dice_at_threshold,
                                       dice_oracle, image_detection,
                                       pixel_detection, rates_at_threshold, stratified_counts,
                                       weighted_auroc_ap)
from harness.metrics import bootstrap
from harness.metrics.bootstrap import auroc_ap

SETTINGS = MetricSettings(bootstrap=200, ci=0.95)


def _data(n: int = 120, seed: int = 0, ties: bool = True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 1.2 * y
    return y, (np.round(s, 1) if ties else s)


def _by_metric(estimates):
    return {e.metric: e for e in estimates}


def test_hand_computed_auroc_ap_and_rates():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    est, thr = image_detection(y, s, y, s, MetricSettings(bootstrap=10), seed=0)
    m = _by_metric(est)
    assert m["auroc"].value == pytest.approx(0.75)  # 3 of 4 pos/neg pairs ordered
    # AP = mean precision at each positive: 1/1 at 0.8, 2/3 at 0.35
    assert m["ap"].value == pytest.approx((1 + 2 / 3) / 2)
    assert m["ap_chance"].value == pytest.approx(0.5)
    # Youden J on these scores: thresholds 0.8 (J=.5), 0.35 (J=.5), 0.1 (J=0): highest wins
    assert thr == pytest.approx(0.8)
    assert m["sensitivity"].value == pytest.approx(0.5) and m["specificity"].value == pytest.approx(1.0)
    assert m["balanced_accuracy"].value == pytest.approx(0.75)


@pytest.mark.parametrize("ties", [True, False])
def test_point_estimates_match_sklearn(ties):
    y, s = _data(ties=ties)
    m = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=1)[0])
    assert m["auroc"].value == pytest.approx(roc_auc_score(y, s))
    assert m["ap"].value == pytest.approx(average_precision_score(y, s))
    assert m["ap_chance"].value == pytest.approx(y.mean())


@pytest.mark.parametrize("ties", [True, False])
def test_weighted_replicates_equal_sklearn_with_sample_weight(ties):
    y, s = _data(ties=ties, seed=3)
    counts = stratified_counts(y, 7, np.random.default_rng(0))
    auroc, ap = weighted_auroc_ap(s, y, counts)
    for i in range(7):
        assert auroc[i] == pytest.approx(roc_auc_score(y, s, sample_weight=counts[i]), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(y, s, sample_weight=counts[i]), abs=1e-12)


def test_the_one_auroc_ap_implementation_equals_sklearn_with_ties_and_weights():
    """harness.metrics.bootstrap is the harness's only AUROC/AP code: point estimates (auroc_ap),
    bootstrap replicates (weighted_auroc_ap) and the stored curves' legends all come from it."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(5, 200))
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.normal(size=n) + y * rng.uniform(0, 2)
        s = np.round(s, int(rng.integers(0, 3))) if trial % 2 else s  # many ties, or none
        auroc, ap = auroc_ap(s, y)
        assert auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)
        w = rng.integers(0, 4, (3, n))
        w[:, :2] = 1  # both classes present in every replicate
        wa, wp = weighted_auroc_ap(s, y, w)
        for i in range(3):
            assert wa[i] == pytest.approx(roc_auc_score(y, s, sample_weight=w[i]), abs=1e-12)
            assert wp[i] == pytest.approx(average_precision_score(y, s, sample_weight=w[i]), abs=1e-12)
    y = np.array([0, 1, 0, 1])
    assert auroc_ap(np.ones(4), y) == (0.5, 0.5)  # all tied: chance, AP = the positive share
    est = _by_metric(image_detection(y, np.arange(4.0), y, np.arange(4.0), MetricSettings(bootstrap=10), seed=0)[0])
    assert (est["auroc"].value, est["ap"].value) == auroc_ap(np.arange(4.0), y)  # detection calls it


def test_stored_curve_points_are_sklearns_and_their_legend_is_the_metric():
    import pandas as pd
    from sklearn.metrics import precision_recall_curve, roc_curve

    from harness.metrics.curves import detection_curves

    y, s = _data(n=60, seed=5)
    s = s.astype(float)
    s[0] = np.nan
    frame = pd.DataFrame({"method": "m", "split": "test", "id": [f"i{i}" for i in range(60)], "label": y, "score": s})
    frame = pd.concat([frame, frame.assign(split="val", score=0.0),
                       frame.assign(method="flat", label=1)], ignore_index=True)
    curves = detection_curves(frame)
    assert curves["split"] == "test" and list(curves["methods"]) == ["m", "flat"]
    entry, keep = curves["methods"]["m"], np.isfinite(s)
    fpr, tpr, _ = roc_curve(y[keep], s[keep])
    precision, recall, _ = precision_recall_curve(y[keep], s[keep])
    np.testing.assert_array_equal(entry["roc"]["fpr"], fpr)
    np.testing.assert_array_equal(entry["roc"]["tpr"], tpr)
    np.testing.assert_array_equal(entry["pr"]["precision"], precision)
    np.testing.assert_array_equal(entry["pr"]["recall"], recall)
    assert (entry["auroc"], entry["ap"]) == auroc_ap(s[keep], y[keep])
    assert entry["n"] == 59 and entry["positives"] == int(y[keep].sum()) and "1 non-finite" in entry["note"]
    flat = curves["methods"]["flat"]
    assert flat["roc"] is None and flat["auroc"] is None and "one class" in flat["note"]


def test_weighted_with_units_equals_expanded_samples():
    rng = np.random.default_rng(0)
    s = np.round(rng.random(60), 2)
    y = rng.random(60) < 0.3
    unit = np.repeat(np.arange(6), 10)
    w_units = np.array([[2, 0, 1, 1, 3, 0]])
    auroc, ap = weighted_auroc_ap(s, y, w_units, unit=unit)
    w = w_units[0][unit]
    assert auroc[0] == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert ap[0] == pytest.approx(average_precision_score(y, s, sample_weight=w))


@pytest.mark.parametrize("unit_path", [True, False])
def test_pixel_replicates_over_units_equal_sklearn_on_either_path(monkeypatch, unit_path):
    """Pooled pixels resampled by image (pixel_detection's bootstrap): both evaluation paths, the
    per-unit counts and the per-score-group sweep, equal scikit-learn with the image weights
    expanded to pixels, ties and images left out of a replicate included."""
    monkeypatch.setattr(bootstrap, "_UNIT_PATH_FACTOR", np.inf if unit_path else 0)
    rng = np.random.default_rng(4)
    unit = rng.integers(0, 15, 3000)
    y = rng.random(3000) < np.where(unit < 6, 0.15, 0.0)  # images 6.. hold no lesion pixel
    s = np.round(rng.normal(size=3000) + 1.5 * y, 2)  # many ties, also across classes
    w = rng.integers(0, 3, (6, 15))
    w[:, 0] = 1  # every replicate weighs positives and negatives
    auroc, ap = weighted_auroc_ap(s, y, w, unit=unit)
    for row in range(6):
        assert auroc[row] == pytest.approx(roc_auc_score(y, s, sample_weight=w[row][unit]), abs=1e-12)
        assert ap[row] == pytest.approx(average_precision_score(y, s, sample_weight=w[row][unit]), abs=1e-12)
    y_one = unit < 2
    no_pos, no_neg = np.zeros(15), np.zeros(15)
    no_pos[5], no_neg[:2] = 1, 1
    auroc, ap = weighted_auroc_ap(s, y_one, np.stack([no_pos, no_neg]), unit=unit)
    assert np.isnan(auroc).all() and np.isnan(ap[0]) and ap[1] == 1.0  # one class weighed: as before


def test_stratified_counts_keep_class_sizes():
    strata = np.array([0] * 7 + [1] * 3)
    counts = stratified_counts(strata, 50, np.random.default_rng(0))
    assert (counts[:, :7].sum(axis=1) == 7).all() and (counts[:, 7:].sum(axis=1) == 3).all()


def test_bootstrap_counts_resample_whole_subjects():
    labels = np.array([1, 1, 0, 0, 0, 0, 1, 0, 0, 0])
    subjects = np.array(["a", "a", "a", "b", "b", "c", "d", "d", "e", "e"])  # a, d hold tumor
    counts = bootstrap_counts(labels, subjects, 300, np.random.default_rng(0))
    for name in "abcde":
        members = counts[:, subjects == name]
        assert (members == members[:, :1]).all()  # a subject's slices enter and leave together
    draws = {name: counts[:, np.flatnonzero(subjects == name)[0]] for name in "abcde"}
    assert ((draws["a"] + draws["d"]) == 2).all() and ((draws["b"] + draws["c"] + draws["e"]) == 3).all()
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    singletons = np.arange(labels.size).astype(str)
    assert np.array_equal(bootstrap_counts(labels, singletons, 50, rng_a), stratified_counts(labels, 50, rng_b))
    assert np.array_equal(bootstrap_counts(labels, None, 50, rng_a), stratified_counts(labels, 50, rng_b))


def test_subject_bootstrap_widens_the_interval_of_correlated_slices():
    """Twelve subjects of twenty near-identical slices: the evidence is twelve subjects, not 240
    images, and the subject-level interval says so."""
    rng = np.random.default_rng(3)
    subject_label = np.array([1] * 6 + [0] * 6)
    subject_score = rng.normal(size=12) + 1.0 * subject_label
    subjects = np.repeat(np.arange(12).astype(str), 20)
    y = np.repeat(subject_label, 20)
    s = np.repeat(subject_score, 20) + rng.normal(0, 0.05, 240)
    per_image = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=0)[0])["auroc"]
    per_subject = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=0, test_groups=subjects)[0])["auroc"]
    assert per_subject.value == per_image.value
    assert per_subject.note == "CI resamples 6 subjects with tumor images and 6 without" and per_image.note is None
    assert (per_subject.ci_high - per_subject.ci_low) > 2 * (per_image.ci_high - per_image.ci_low)


def test_bootstrap_ci_is_seeded_and_contains_the_estimate():
    y, s = _data(seed=5)
    a = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=7)[0])
    b = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=7)[0])
    c = _by_metric(image_detection(y, s, y, s, SETTINGS, seed=8)[0])
    for metric in ("auroc", "ap", "sensitivity", "specificity", "balanced_accuracy"):
        assert a[metric].ci_low <= a[metric].value <= a[metric].ci_high, metric
        assert (a[metric].ci_low, a[metric].ci_high) == (b[metric].ci_low, b[metric].ci_high)
    assert (a["auroc"].ci_low, a["auroc"].ci_high) != (c["auroc"].ci_low, c["auroc"].ci_high)
    assert a["auroc"].ci_high - a["auroc"].ci_low < 0.3


def test_threshold_comes_from_validation_not_test():
    val_y = np.array([0, 0, 0, 1, 1, 1])
    val_s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    assert choose_threshold(val_y, val_s) == pytest.approx(0.7)
    test_y = np.array([0, 0, 1, 1])
    test_s = np.array([0.5, 0.6, 0.65, 0.95])  # perfectly separable at 0.62, but the val threshold is 0.7
    m = _by_metric(image_detection(val_y, val_s, test_y, test_s, MetricSettings(bootstrap=10), 0)[0])
    assert m["auroc"].value == 1.0
    assert m["sensitivity"].value == 0.5 and m["specificity"].value == 1.0
    assert "threshold=0.7" in m["sensitivity"].note


def test_rates_with_weights():
    y = np.array([1, 1, 0, 0])
    s = np.array([0.9, 0.1, 0.2, 0.8])
    r = rates_at_threshold(y, s, 0.5, weights=np.array([[3, 1, 1, 0]]))
    assert r["sensitivity"][0] == pytest.approx(0.75) and r["specificity"][0] == pytest.approx(1.0)


def test_one_class_gives_notes_not_errors():
    y1 = np.ones(5, dtype=int)
    s = np.linspace(0, 1, 5)
    est, thr = image_detection(np.array([0, 1]), np.array([0.2, 0.8]), y1, s, SETTINGS, 0)
    m = _by_metric(est)
    assert m["auroc"].value is None and "only one class" in m["auroc"].note
    assert m["ap_chance"].value == 1.0
    assert thr == pytest.approx(0.8)
    # one-class validation: metrics on test, but no threshold-based rates
    y, s2 = _data(seed=2)
    est, thr = image_detection(np.zeros(4), np.arange(4.0), y, s2, SETTINGS, 0)
    m = _by_metric(est)
    assert thr is None and m["auroc"].value is not None
    assert m["sensitivity"].value is None and "validation" in m["sensitivity"].note
    # empty and non-finite inputs
    assert _by_metric(image_detection(y, s2, np.array([]), np.array([]), SETTINGS, 0)[0])["auroc"].value is None
    bad = s2.copy()
    bad[0] = np.nan
    assert "non-finite" in _by_metric(image_detection(y, s2, y, bad, SETTINGS, 0)[0])["auroc"].note


def _maps(n_tumor=4, n_normal=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    n = n_tumor + n_normal
    maps = rng.random((n, size, size)) * 0.5
    masks = np.zeros((n, size, size), bool)
    for i in range(n_tumor):
        masks[i, 4:9, 4:9] = True
    maps[masks] += 0.6
    brain = np.zeros_like(masks)
    brain[:, 1:-1, 1:-1] = True
    labels = np.r_[np.ones(n_tumor), np.zeros(n_normal)].astype(int)
    return maps, masks, brain, labels


def test_pixel_metrics_match_sklearn_inside_the_brain():
    maps, masks, brain, labels = _maps()
    m = _by_metric(pixel_detection(maps, masks, brain, labels, SETTINGS, seed=0))
    v, t = maps[brain], masks[brain]
    assert m["pixel_auroc"].value == pytest.approx(roc_auc_score(t, v))
    assert m["pixel_ap"].value == pytest.approx(average_precision_score(t, v))
    assert m["pixel_auroc"].ci_low <= m["pixel_auroc"].value <= m["pixel_auroc"].ci_high
    assert m["pixel_auroc"].note is None and m["pixel_auroc"].n == 8
    # outside-brain pixels are ignored: making them huge changes nothing
    maps2 = maps.copy()
    maps2[~brain] = 100.0
    m2 = _by_metric(pixel_detection(maps2, masks, brain, labels, SETTINGS, seed=0))
    assert m2["pixel_auroc"].value == m["pixel_auroc"].value


def test_pixel_subsample_is_seeded_and_noted():
    maps, masks, brain, labels = _maps(size=32)
    a = _by_metric(pixel_detection(maps, masks, brain, labels, SETTINGS, seed=0, max_pixels=2000))
    b = _by_metric(pixel_detection(maps, masks, brain, labels, SETTINGS, seed=0, max_pixels=2000))
    assert a["pixel_ap"].value == b["pixel_ap"].value and "subsample of 2000" in a["pixel_ap"].note
    full = _by_metric(pixel_detection(maps, masks, brain, labels, SETTINGS, seed=0))
    assert abs(a["pixel_auroc"].value - full["pixel_auroc"].value) < 0.05


def test_dice_oracle_hand_case_and_perfect_map():
    maps, masks, brain, labels = _maps()
    perfect = masks.astype(float)
    d = dice_oracle(perfect, masks, brain, labels)
    assert d.value == pytest.approx(1.0) and d.note.startswith("threshold chosen on test: threshold=")
    # one tumor image, 4 lesion pixels; the map marks 2 of them plus 2 background pixels highest
    m = np.zeros((1, 4, 4))
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 0, :4] = True
    m[0, 0, :2] = 1.0
    m[0, 1, :2] = 1.0
    d = dice_oracle(m, mask, np.ones_like(mask), [1])
    # at t=1: pred 4, tp 2 -> 2*2/(4+4)=0.5; at t<=0 everything: 2*4/(16+4)=0.4
    assert d.value == pytest.approx(0.5)
    assert d.note == "threshold chosen on test: threshold=1; the same 1 images as Dice pooled"


def test_dice_oracle_bounds_the_validation_threshold_dice_on_the_same_images():
    """The oracle pools the same images as ``dice`` (healthy ones too), so no threshold fixed on
    validation can beat it; a tumor-only oracle could sit below ``dice``'s population."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        maps, masks, brain, labels = _lesion_case(n_tumor=3, n_healthy=3)
        maps = maps + rng.normal(0, 0.6, maps.shape)
        oracle = dice_oracle(maps, masks, brain, labels)
        for threshold in np.quantile(maps, [0.5, 0.8, 0.9, 0.95, 0.99]):
            dice = dice_at_threshold(maps, masks, brain, labels, float(threshold), SETTINGS, seed=0)
            assert dice.value <= oracle.value + 1e-12
        assert oracle.n == dice.n == labels.size


def test_pixel_one_class_notes():
    maps, masks, brain, labels = _maps()
    masks[:] = False
    m = _by_metric(pixel_detection(maps, masks, brain, labels, SETTINGS, seed=0))
    assert m["pixel_auroc"].value is None and "only one class" in m["pixel_auroc"].note
    assert m["dice_oracle"].value is None and "empty" in m["dice_oracle"].note
    with pytest.raises(ValueError, match="maps for"):
        pixel_detection(maps, masks, brain, labels[:3], SETTINGS, seed=0)


def _lesion_case(n_tumor=4, n_healthy=4, size=8):
    """Tumor images with a 2x2 lesion the map marks at 1.0; healthy images with map 0."""
    n = n_tumor + n_healthy
    maps = np.zeros((n, size, size))
    masks = np.zeros((n, size, size), bool)
    masks[:n_tumor, 2:4, 2:4] = True
    maps[:n_tumor, 2:4, 2:4] = 1.0
    labels = np.array([1] * n_tumor + [0] * n_healthy)
    return maps, masks, np.ones_like(masks), labels


def test_validation_threshold_is_the_exact_pooled_dice_maximum():
    maps, masks, brain, _ = _lesion_case()
    maps[0, 0, 0] = 0.5  # one false positive below the lesion value
    assert choose_dice_threshold(maps, masks, brain) == pytest.approx(1.0)
    assert choose_dice_threshold(maps, np.zeros_like(masks), brain) is None  # nothing to find


def test_validation_threshold_dice_counts_false_positives_on_healthy_slices():
    val_maps, val_masks, brain, val_labels = _lesion_case()
    threshold = choose_dice_threshold(val_maps, val_masks, brain)
    maps, masks, _, labels = _lesion_case()
    clean = dice_at_threshold(maps, masks, brain, labels, threshold, SETTINGS, seed=0)
    assert clean.value == pytest.approx(1.0) and "chosen on validation" in clean.note
    maps[4:, 5:7, 5:7] = 1.0  # each healthy slice: a 2x2 false positive as bright as the lesions
    noisy = dice_at_threshold(maps, masks, brain, labels, threshold, SETTINGS, seed=0)
    assert noisy.value == pytest.approx(2 * 16 / (32 + 16))  # tp 16, predicted 32, lesion 16
    # the oracle pools the same images: its best threshold cannot drop those false positives either
    assert dice_oracle(maps, masks, brain, labels).value == pytest.approx(noisy.value)
    assert noisy.ci_low <= noisy.value <= noisy.ci_high


def test_validation_dice_ci_resamples_subjects_and_is_seeded():
    maps, masks, brain, labels = _lesion_case(n_tumor=6, n_healthy=6)
    rng = np.random.default_rng(0)
    maps += rng.random(maps.shape) * 1.2  # noise crossing the threshold here and there
    groups = np.repeat([f"s{i}" for i in range(6)], 2)
    a = dice_at_threshold(maps, masks, brain, labels, 1.0, SETTINGS, seed=3, groups=groups)
    b = dice_at_threshold(maps, masks, brain, labels, 1.0, SETTINGS, seed=3, groups=groups)
    assert a == b and a.ci_low < a.value < a.ci_high
    none = dice_at_threshold(maps, masks, brain, labels, None, SETTINGS, seed=0)
    assert none.value is None and "no validation threshold" in none.note
