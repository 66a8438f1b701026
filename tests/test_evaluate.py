"""The runner's metric rows: per-stratum detection (an overall AUROC can hide a failing sequence)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from baseline_data import make_slices
from harness.api import ScoreOutput
from harness.config import MetricSettings
from harness.evaluate import example_arrays
from harness.metrics.detection_suite import detection_rows, stratum_rows
from runner_toys import MeanIntensity

SETTINGS = MetricSettings(bootstrap=200)


def _scored(n: int, seed: int):
    images = make_slices(n, size=16, seed=seed)
    rng = np.random.default_rng(seed)
    scores = images.labels.numpy() + rng.normal(0, 0.8, n)
    return images, ScoreOutput(scores=scores)


def _by(rows):
    return {(r["domain"], r["metric"]): r for r in rows}


def test_each_stratum_is_measured_on_its_own_images_at_the_validation_threshold():
    val, val_out = _scored(40, 1)
    test, test_out = _scored(60, 2)
    strata = ["T1", "T2", "FLAIR"] * 20
    rows = _by(stratum_rows("m", val, test, val_out, test_out, strata, SETTINGS, seed=0))
    assert {d for d, _ in rows} == {"stratum:FLAIR", "stratum:T1", "stratum:T2"}
    overall = _by(detection_rows("m", val, test, val_out, test_out, SETTINGS, seed=0)[0])
    labels, scores = test.labels.numpy(), np.asarray(test_out.scores)
    for name in ("T1", "T2", "FLAIR"):
        members = np.asarray(strata) == name
        auroc = rows[(f"stratum:{name}", "auroc")]
        assert auroc["value"] == pytest.approx(roc_auc_score(labels[members], scores[members]))
        assert auroc["n"] == 20 and auroc["ci_low"] <= auroc["value"] <= auroc["ci_high"]
        assert rows[(f"stratum:{name}", "sensitivity")]["note"] == overall[("all", "sensitivity")]["note"]


def test_a_one_label_stratum_gets_a_note_and_no_strata_gives_no_rows():
    val, val_out = _scored(20, 3)
    test, test_out = _scored(20, 4)
    labels = test.labels.numpy()
    strata = ["T1" if label else "T2" for label in labels]  # each stratum holds one label only
    rows = _by(stratum_rows("m", val, test, val_out, test_out, strata, SETTINGS, seed=0))
    assert rows[("stratum:T1", "auroc")]["value"] is None
    assert "only one class" in rows[("stratum:T1", "auroc")]["note"]
    assert stratum_rows("m", val, test, val_out, test_out, [""] * 20, SETTINGS, seed=0) == []
    assert stratum_rows("m", val, test, val_out, test_out, ["T1"] * 20, SETTINGS, seed=0) == []
    with pytest.raises(ValueError, match="strata"):
        stratum_rows("m", val, test, val_out, test_out, ["T1"] * 19, SETTINGS, seed=0)


def test_example_grids_show_best_and_worst_cases_of_distinct_subjects():
    test, out = _scored(40, 3)
    subjects = [f"sub-{i // 5}" for i in range(len(test))]  # 8 subjects of 5 neighbouring slices
    arrays = example_arrays(MeanIntensity(), test, out, subjects, k=3)
    for domain in ("tumor", "no_tumor"):
        ids = list(arrays[f"{domain}_ids"])
        kinds = list(arrays[f"{domain}_kind"])
        shown = {subjects[test.ids.index(i)] for i, kind in zip(ids, kinds)}
        best = [subjects[test.ids.index(i)] for i, kind in zip(ids, kinds) if kind == "best"]
        worst = [subjects[test.ids.index(i)] for i, kind in zip(ids, kinds) if kind == "worst"]
        assert len(set(best)) == len(best) and len(set(worst)) == len(worst), (domain, best, worst)
        assert len(set(ids)) == len(ids) and len(shown) >= 2
    # the best tumor case is still the highest-scored tumor image
    tumor = np.flatnonzero(test.labels.numpy() == 1)
    assert arrays["tumor_ids"][0] == test.ids[tumor[np.argmax(out.scores[tumor])]]
