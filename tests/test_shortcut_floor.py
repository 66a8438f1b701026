"""The shortcut floors: audit features blind to a lesion's own pixels, and the logistic-regression
floor that finds a shortcut living in two features, which the single-feature floor cannot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from harness.api import ImageSet
from harness.config import MetricSettings
from harness.data.input_audit import LESION_MARGIN_PX, input_audit, input_features
from harness.metrics.comparison_suite import comparison_rows, lr_floor, shortcut_floor
from harness.metrics.lr_floor import fit_lr_floor
from harness.metrics.permutation import holm
from harness.results import FLOOR_METHOD, LR_FLOOR_METHOD

SIZE = 32
INTENSITY_FEATURES = ("median", "iqr", "sharpness", "noise")


def _disc(cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


def _lesion_set(lesion_value: float, masks: bool = True) -> ImageSet:
    """Two textured brains, the second with a 4-px lesion of ``lesion_value``."""
    g = torch.Generator().manual_seed(3)
    brain = _disc(15.5, 15.5, 13)
    lesion = _disc(12, 18, 4)
    images = (0.4 + 0.2 * torch.rand(2, SIZE, SIZE, generator=g)) * brain
    images[1][lesion] = lesion_value
    return ImageSet(images=images[:, None], labels=torch.tensor([0, 1]), ids=["a", "b"],
                    brain=brain.expand(2, SIZE, SIZE)[:, None].clone(),
                    masks=torch.stack([torch.zeros_like(lesion), lesion])[:, None] if masks else None)


def test_lesion_pixels_do_not_move_the_intensity_features():
    dim, bright = _lesion_set(0.0), _lesion_set(1.0)
    f_dim, f_bright = input_features(dim), input_features(bright)
    for name in INTENSITY_FEATURES:
        assert f_dim[name][1] == f_bright[name][1], name  # only the lesion's pixels differ
        assert f_dim[name][0] == f_bright[name][0], name
    # the same change moves every one of them when the set carries no masks: the test can fail
    bare_dim, bare_bright = input_features(_lesion_set(0.0, masks=False)), input_features(_lesion_set(1.0, masks=False))
    for name in INTENSITY_FEATURES:
        assert bare_dim[name][1] != bare_bright[name][1], name
    assert f_dim["brain_area"][1] == bare_dim["brain_area"][1]  # the brain's area keeps the lesion


def test_the_margin_around_the_lesion_is_left_out_too():
    """A partial-volume rim just outside the mask (as the antialiased resize makes) is no shortcut."""
    plain, rimmed, wider = _lesion_set(1.0), _lesion_set(1.0), _lesion_set(1.0)
    distance = torch.from_numpy(ndimage.distance_transform_edt(~plain.masks[1, 0].numpy()))  # px to the lesion
    rimmed.images[1, 0][(distance > 0) & (distance <= LESION_MARGIN_PX)] = 0.9
    wider.images[1, 0][(distance > LESION_MARGIN_PX) & (distance <= LESION_MARGIN_PX + 2)] = 0.9
    a, b = input_features(plain), input_features(rimmed)
    assert all(a[name][1] == b[name][1] for name in INTENSITY_FEATURES)
    assert input_features(wider)["median"][1] != a["median"][1]  # beyond the margin it counts again


def test_the_eda_audit_records_the_margin():
    assert input_audit({"val": _lesion_set(1.0)})["lesion_margin_px"] == LESION_MARGIN_PX
    assert input_audit({"val": _lesion_set(1.0, masks=False)})["lesion_margin_px"] is None


def _two_feature_shortcut(n: int, seed: int) -> ImageSet:
    """Brains whose in-brain median and IQR both follow a shared nuisance level z, with the label
    nudging them in opposite directions: each alone hardly separates the labels, median - IQR
    separates them completely. No lesion, no mask: a pure shortcut."""
    rng = np.random.default_rng(seed)
    brain = _disc(15.5, 15.5, 13)
    inside = int(brain.sum())
    pattern = np.linspace(-1.0, 1.0, inside)  # median 0, IQR 1 before scaling
    labels = np.arange(n) % 2
    images = torch.zeros(n, SIZE, SIZE)
    for i, label in enumerate(labels):
        z = rng.normal(0.0, 0.03)
        d = 0.004 if label else -0.004
        values = (0.5 + z + d) + (0.2 + z - d) * rng.permutation(pattern)
        images[i][brain] = torch.tensor(values, dtype=torch.float32)
    return ImageSet(images=images[:, None], labels=torch.tensor(labels), ids=[f"s{seed}-{i}" for i in range(n)],
                    brain=brain.expand(n, SIZE, SIZE)[:, None].clone())


def _auroc(rows: list[dict], method: str) -> float:
    (row,) = [r for r in rows if r["method"] == method and r["metric"] == "auroc" and r["domain"] == "all"]
    return row["value"]


def test_logistic_regression_floor_finds_a_two_feature_shortcut_the_single_floor_misses():
    train, val, test = _two_feature_shortcut(120, 0), _two_feature_shortcut(40, 1), _two_feature_shortcut(80, 2)
    settings = MetricSettings(bootstrap=50)
    single, _ = shortcut_floor(val, test, {}, None, settings, seed=0)
    fitted, scores = lr_floor(train, val, test, {}, None, settings, seed=0)
    assert _auroc(single, FLOOR_METHOD) < 0.7
    assert _auroc(fitted, LR_FLOOR_METHOD) > 0.95
    (row,) = [r for r in fitted if r["metric"] == "auroc"]
    assert row["ci_low"] is not None and row["ci_low"] <= row["value"] <= row["ci_high"]  # the bootstrap of every method
    assert "fitted on the image labels of 120 train images" in row["note"]
    assert "axial_position" not in row["note"] and "brain_area" not in row["note"]  # unknown, constant: left out
    assert set(scores["split"]) == {"val", "test"} and set(scores["method"]) == {LR_FLOOR_METHOD}


def test_logistic_regression_floor_needs_both_labels_on_train():
    train = _two_feature_shortcut(20, 0)
    one_label = train.of_label(0)
    fitted = fit_lr_floor(one_label, train, train)
    assert fitted.reason == "not computed: the train split holds only one label" and fitted.test_scores is None
    rows, scores = lr_floor(one_label, train, train, {}, None, MetricSettings(bootstrap=50), seed=0)
    assert {r["metric"] for r in rows} == {"auroc", "ap"} and all(r["value"] is None for r in rows)
    assert len(scores) == 0


def _method_scores(test: ImageSet, named: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "split": "test", "id": i, "label": int(y), "score": float(s)}
                         for m, values in named.items() for i, y, s in zip(test.ids, test.labels.tolist(), values)])


def test_both_floors_are_references_with_their_own_holm_family_and_are_not_tested_against_each_other():
    train, val, test = _two_feature_shortcut(60, 0), _two_feature_shortcut(24, 1), _two_feature_shortcut(24, 2)
    rng = np.random.default_rng(0)
    y = test.labels.numpy()
    named = {"intensity": y + rng.normal(0, 1, y.size), "m1": y + rng.normal(0, 0.5, y.size),
             "m2": rng.normal(size=y.size)}
    subjects = {i: f"sub-{k // 2}" for k, i in enumerate(test.ids)}
    rows = comparison_rows(_method_scores(test, named), val, test, subjects, None, MetricSettings(bootstrap=50),
                           seed=0, train=train)
    got = {(r["method"], r["other"], r["metric"]): r for r in rows if r["other"]}
    family = ["intensity", "m1", "m2"]
    raw = [got[(m, LR_FLOOR_METHOD, "auroc_delta")]["p_value"] for m in family]
    assert all(p is not None for p in raw)
    assert [got[(m, LR_FLOOR_METHOD, "auroc_delta")]["p_holm"] for m in family] == pytest.approx(holm(raw))
    assert "Holm over the 3 comparisons against the logistic-regression shortcut floor" in \
        got[("m1", LR_FLOOR_METHOD, "auroc_delta")]["note"]
    assert "Holm over the 2 comparisons against intensity" in got[("m1", "intensity", "auroc_delta")]["note"]
    between = got[(FLOOR_METHOD, LR_FLOOR_METHOD, "auroc_delta")]
    assert between["p_value"] is None and between["p_holm"] is None and between["ci_low"] is not None
    assert "two shortcut floors, neither a method" in between["note"]
    no_train = comparison_rows(_method_scores(test, named), val, test, subjects, None, MetricSettings(bootstrap=50),
                               seed=0)
    assert LR_FLOOR_METHOD not in {r["method"] for r in no_train} | {r["other"] for r in no_train}
