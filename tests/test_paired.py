"""Paired method comparisons: the cases a reviewer checks, agreement with DeLong's test, and the
tests fixed in advance (permutation p-values against the references, Holm over each family)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from harness.config import MetricSettings
from harness.metrics.detection import image_detection
from harness.metrics.paired import paired_deltas, paired_rows, paired_runs
from harness.metrics.permutation import holm

SETTINGS = MetricSettings(bootstrap=2000, ci=0.95)


def _by(deltas):
    return {d.metric: d for d in deltas}


def _subject_case(n_subjects: int = 12, slices: int = 6, seed: int = 0):
    """Each subject's slices share a subject effect that both methods see (so their separate CIs
    are wide), and B adds a small, consistent margin: B ranks every subject's lesions higher."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"s{i:02d}" for i in range(n_subjects)], slices)
    labels = np.tile([1, 1, 1, 0, 0, 0], n_subjects)
    labels[groups >= f"s{n_subjects // 2:02d}"] = 0  # half the subjects are healthy
    effect = np.repeat(rng.normal(0, 1.0, n_subjects), slices)
    noise = rng.normal(0, 1.0, labels.size)
    a = effect + noise + 0.8 * labels
    b = a + 0.6 * labels  # the same images, with the lesions pushed up a bit
    return labels, a, b, groups


def test_overlapping_cis_but_a_consistent_winner_gives_a_delta_ci_excluding_zero():
    labels, a, b, groups = _subject_case()
    est = {}
    for name, s in (("a", a), ("b", b)):
        est[name] = {e.metric: e for e in image_detection(labels, s, labels, s, SETTINGS, 0, groups)[0]}
    ea, eb = est["a"]["auroc"], est["b"]["auroc"]
    assert eb.value > ea.value
    assert ea.ci_high > eb.ci_low  # the separate CIs overlap: by overlap, no conclusion
    d = _by(paired_deltas(labels, b, a, groups, SETTINGS.bootstrap, SETTINGS.ci, seed=0))["auroc"]
    assert d.delta == pytest.approx(eb.value - ea.value)
    assert d.ci_low > 0 and d.p_value < 0.05  # paired on the same resamples, the win is clear


def test_a_method_against_itself_is_exactly_zero_with_a_zero_width_ci():
    labels, a, _, groups = _subject_case()
    for d in paired_deltas(labels, a, a.copy(), groups, 500, 0.95, seed=1):
        assert d.delta == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0 and d.p_value == 1.0


def _delong(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of DeLong's test for AUROC(a) = AUROC(b) on the same images."""
    pos, neg = labels == 1, labels == 0

    def components(s):
        x, y = s[pos][:, None], s[neg][None, :]
        psi = (x > y) + 0.5 * (x == y)
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()

    va, wa, auc_a = components(a)
    vb, wb, auc_b = components(b)
    s10, s01 = np.cov(np.vstack([va, vb])), np.cov(np.vstack([wa, wb]))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum() + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / neg.sum()
    return float(2 * norm.sf(abs(auc_a - auc_b) / np.sqrt(var)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_permutation_p_value_agrees_with_delong_on_independent_images(seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 0], 150)
    shared = rng.normal(size=labels.size)  # correlated methods, as two detectors on the same images
    a = shared + rng.normal(size=labels.size) + 1.0 * labels
    b = shared + rng.normal(size=labels.size) + 0.75 * labels
    d = _by(paired_deltas(labels, a, b, None, 200, 0.95, seed=seed))["auroc"]
    reference = _delong(labels, a, b)
    assert 0.01 < reference < 0.6  # a case where the test has something to say
    assert d.p_value == pytest.approx(reference, abs=0.02)


def _scores_frame(labels, named, ids=None):
    ids = ids or [f"img{i:03d}" for i in range(labels.size)]
    return pd.concat([pd.DataFrame({"method": m, "split": "test", "id": ids, "label": labels, "score": s})
                      for m, s in named.items()], ignore_index=True)


def test_paired_rows_cover_every_ordered_pair_with_mirrored_values():
    labels, a, b, groups = _subject_case()
    ids = [f"img{i:03d}" for i in range(labels.size)]
    frame = _scores_frame(labels, {"intensity": a, "b": b, "c": -a}, ids)
    frame = pd.concat([frame, frame.assign(split="val")], ignore_index=True)  # val rows are ignored
    rows = paired_rows(frame, dict(zip(ids, groups)), MetricSettings(bootstrap=200), seed=0)
    assert len(rows) == 3 * 2 * 2  # 3 unordered pairs, both orders, auroc and ap
    got = {(r["method"], r["other"], r["metric"]): r for r in rows}
    ab, ba = got[("intensity", "b", "auroc_delta")], got[("b", "intensity", "auroc_delta")]
    assert ab["value"] == pytest.approx(-ba["value"]) and ab["p_value"] == ba["p_value"]
    assert (ab["ci_low"], ab["ci_high"]) == pytest.approx((-ba["ci_high"], -ba["ci_low"]))
    assert ab["n"] == labels.size and "6 subjects with tumor images" in ab["note"]
    assert got[("intensity", "c", "auroc_delta")]["value"] > 0  # c ranks everything backwards


def test_a_method_better_on_every_subject_gets_a_permutation_p_value_against_the_reference():
    labels, a, b, groups = _subject_case()
    ids = [f"img{i:03d}" for i in range(labels.size)]
    rows = paired_rows(_scores_frame(labels, {"intensity": a, "better": b}, ids), dict(zip(ids, groups)),
                       MetricSettings(bootstrap=200), seed=0)
    got = {(r["method"], r["other"], r["metric"]): r for r in rows}
    win, loss = got[("better", "intensity", "auroc_delta")], got[("intensity", "better", "auroc_delta")]
    assert win["value"] > 0 and win["p_value"] < 0.05 and loss["p_value"] == win["p_value"]
    assert "p: subject permutation test, exact over all 4096 swap patterns of 12 subjects" in win["note"]
    assert win["p_holm"] == win["p_value"] and "Holm over the 1 comparison against intensity" in win["note"]


def test_holm_adjusts_each_reference_family_and_leaves_exploratory_pairs_untested():
    labels, a, b, groups = _subject_case()
    rng = np.random.default_rng(5)
    ids = [f"img{i:03d}" for i in range(labels.size)]
    named = {"intensity": a, "m1": b, "m2": a + rng.normal(0, 1.0, a.size), "m3": b + rng.normal(0, 0.5, b.size),
             "shortcut-floor": rng.normal(size=a.size)}
    rows = paired_rows(_scores_frame(labels, named, ids), dict(zip(ids, groups)), MetricSettings(bootstrap=100), seed=0)
    got = {(r["method"], r["other"], r["metric"]): r for r in rows}
    for metric in ("auroc_delta", "ap_delta"):
        for reference, family in (("intensity", ["m1", "m2", "m3"]),  # the floor is no method of intensity's family
                                  ("shortcut-floor", ["intensity", "m1", "m2", "m3"])):
            raw = [got[(m, reference, metric)]["p_value"] for m in family]
            assert all(p is not None for p in raw)
            assert [got[(m, reference, metric)]["p_holm"] for m in family] == pytest.approx(holm(raw))
            assert [got[(reference, m, metric)]["p_holm"] for m in family] == pytest.approx(holm(raw))  # mirrored
            assert f"Holm over the {len(family)} comparisons against" in got[(family[0], reference, metric)]["note"]
        explored = got[("m1", "m2", metric)]
        assert explored["p_value"] is None and explored["p_holm"] is None and explored["ci_low"] is not None
        assert "no p-value: exploratory" in explored["note"]


def test_paired_rows_use_the_images_both_methods_scored():
    labels, a, b, _ = _subject_case()
    ids = [f"img{i:03d}" for i in range(labels.size)]
    frame = pd.concat([_scores_frame(labels, {"a": a}, ids),
                       _scores_frame(labels[:40], {"b": b[:40]}, ids[:40])], ignore_index=True)
    rows = paired_rows(frame, {}, MetricSettings(bootstrap=50), seed=0)
    assert {r["n"] for r in rows} == {40}


def _write_run(folder, run_id, split_hash, scores: pd.DataFrame, groups=None):
    folder.mkdir(parents=True)
    methods = {m: {"status": "complete"} for m in scores["method"].unique()}
    run = {"schema_version": 1, "run_id": run_id, "status": "complete", "seed": 0, "split": {"hash": split_hash},
           "methods": methods, "config": {"profile": {"metrics": {"bootstrap": 300, "ci": 0.95}}}}
    (folder / "run.json").write_text(json.dumps(run))
    scores.to_csv(folder / "scores.csv", index=False)
    if groups is not None:
        ids = scores["id"].unique()
        pd.DataFrame({"path": ids, "subject": groups[:len(ids)]}).to_csv(folder / "split.csv", index=False)


def test_two_runs_on_the_same_split_are_paired_per_method(tmp_path):
    labels, a, b, groups = _subject_case()
    _write_run(tmp_path / "ra", "ra", "h1", _scores_frame(labels, {"m": a, "only-a": a}), groups)
    _write_run(tmp_path / "rb", "rb", "h1", _scores_frame(labels, {"m": b}), groups)
    paired = paired_runs(tmp_path / "ra", tmp_path / "rb")
    assert paired.reason is None and list(paired.deltas) == ["m"]
    auroc = _by(paired.deltas["m"])["auroc"]
    assert auroc.delta == pytest.approx(auroc.b - auroc.a) and auroc.b > auroc.a  # B - A; run B scored b
    assert auroc.ci_low > 0 and "subjects" in auroc.note
    assert auroc.p_value < 0.05 and "p: subject permutation test, exact" in auroc.note  # as within a run


def test_runs_on_different_splits_cannot_be_paired(tmp_path):
    labels, a, b, _ = _subject_case()
    _write_run(tmp_path / "ra", "ra", "h1", _scores_frame(labels, {"m": a}))
    _write_run(tmp_path / "rb", "rb", "h2", _scores_frame(labels, {"m": b}))
    paired = paired_runs(tmp_path / "ra", tmp_path / "rb")
    assert paired.deltas == {} and "split hashes differ (h1 vs h2)" in paired.reason


def test_compare_page_shows_the_paired_table_or_why_there_is_none(tmp_path):
    from harness.compare import compare_runs
    from reports.compare import compare_page

    labels, a, b, groups = _subject_case()
    _write_run(tmp_path / "ra", "ra", "h1", _scores_frame(labels, {"m": a}), groups)
    _write_run(tmp_path / "rb", "rb", "h1", _scores_frame(labels, {"m": b}), groups)
    _write_run(tmp_path / "rc", "rc", "h2", _scores_frame(labels, {"m": b}), groups)
    written = compare_runs("ra", "rb", tmp_path)
    doc = json.loads(written.read_text())
    d = _by(paired_runs(tmp_path / "ra", tmp_path / "rb").deltas["m"])["auroc"]
    assert doc["paired"]["methods"]["m"][0] == dataclasses.asdict(d)  # the file holds what the harness computed
    page = compare_page(doc, (False, False))
    assert "## Paired on the shared test images" in page
    assert f"| m | AUROC | {d.a:.3f} | {d.b:.3f} | {d.delta:.4f} [{d.ci_low:.4f}, {d.ci_high:.4f}] |" in page
    assert "- CI resamples 6 subjects with tumor images and 6 without; p: subject permutation test, exact over all " \
           "4096 swap patterns of 12 subjects" in page  # which test, on how many subjects
    page = compare_page(json.loads(compare_runs("ra", "rc", tmp_path).read_text()), (False, False))
    assert "These runs cannot be paired: their split hashes differ" in page and "h1 vs h2" in page
