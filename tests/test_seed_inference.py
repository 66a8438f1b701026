"""The across-seed tests and the floor-to-ceiling share: values a reader can check by hand."""

from __future__ import annotations

import statistics

import pytest

from harness.metric_info import SCHEMA1_METRICS, MetricInfo
from harness.seed_inference import gap_shares, seed_test, seed_tests
from harness.seed_summary import PairedSpread, SeedSpread


def test_a_rank_test_over_five_seeds_cannot_reach_005_and_says_so():
    five = seed_test([0.01, 0.02, 0.03, 0.04, 0.05])  # every seed on one side: the smallest p there is
    assert five.n == 5 and five.wilcoxon_p == pytest.approx(2 / 2 ** 5) == pytest.approx(five.min_p)
    assert five.floor_note is not None and "5 seed(s) cannot reach p < 0.05" in five.floor_note
    six = seed_test([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert six.wilcoxon_p == pytest.approx(1 / 32) and six.floor_note is None
    ten = seed_test([0.05, -0.005, 0.04, 0.03, 0.06, 0.02, 0.07, 0.01, 0.08, 0.09])
    assert ten.wilcoxon_p == pytest.approx(2 * 2 / 1024)  # W- = 1: rank sets {} and {1} of 2^10, two-sided


def test_the_t_test_is_the_one_sample_t_over_the_seeds():
    test = seed_test([1.0, 2.0, 3.0])  # t = 2 / (1 / sqrt 3) = 3.464 on 2 df
    assert test.t_p == pytest.approx(0.0742, abs=5e-4)
    same = seed_test([0.1, 0.1, 0.1])
    assert same.t_p is None and "same difference" in same.note
    zeros = seed_test([0.0, 0.0, 0.0])
    assert zeros.wilcoxon_p == 1.0 and zeros.t_p is None
    assert "1 of 4 differences are 0" in seed_test([0.0, 0.1, 0.2, 0.3]).note
    single = seed_test([0.2])
    assert single.wilcoxon_p is None and single.t_p is None and single.min_p == 1.0


def test_holm_runs_over_each_metrics_reference_pairs_only():
    up = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06)  # exact p 1/32 each
    mixed = (-0.01, 0.02, 0.03, 0.04, 0.05, 0.06)  # W- = 1: p = 2 x 2/64
    pairs = [PairedSpread("a", "auroc_delta", tuple(range(6)), up, "intensity"),
             PairedSpread("b", "auroc_delta", tuple(range(6)), mixed, "intensity"),
             PairedSpread("a", "ap_delta", tuple(range(6)), up, "intensity"),
             PairedSpread("a", "auroc_delta", tuple(range(6)), up, "b", exploratory=True)]
    tests = seed_tests(pairs)
    assert [t.wilcoxon_p for t in tests] == pytest.approx([1 / 32, 1 / 16, 1 / 32, 1 / 32])
    # Holm over {1/32, 1/16}: 2 x 1/32, then max(2 x 1/32, 1 x 1/16)
    assert tests[0].wilcoxon_p_holm == pytest.approx(1 / 16) and tests[1].wilcoxon_p_holm == pytest.approx(1 / 16)
    assert tests[2].wilcoxon_p_holm == pytest.approx(1 / 32)  # AP is a family of its own
    assert tests[3].wilcoxon_p_holm is None  # exploratory


def test_the_share_of_the_gap_is_per_seed_with_a_t_interval_over_seeds():
    items = [SeedSpread("intensity", "auroc", (0, 1, 2), (0.6, 0.5, 0.8)),
             SeedSpread("resnet18", "auroc", (0, 1, 2), (1.0, 0.9, 0.7)),  # seed 2: no gap to close
             SeedSpread("cyclegan", "auroc", (0, 1, 2), (0.8, 0.6, 0.9))]
    shares = gap_shares(items, SCHEMA1_METRICS)
    share = shares["cyclegan", "auroc"]
    assert share.seeds == (0, 1) and share.values == pytest.approx((0.5, 0.25)) and share.excluded == (2,)
    half = 12.7062 * statistics.stdev([0.5, 0.25]) / 2 ** 0.5  # t(0.975, 1 df)
    assert share.mean == pytest.approx(0.375)
    assert (share.ci_low, share.ci_high) == pytest.approx((0.375 - half, 0.375 + half), abs=1e-3)
    assert shares["intensity", "auroc"].values == (0.0, 0.0) and shares["resnet18", "auroc"].values == (1.0, 1.0)


def test_the_share_reads_a_lower_is_better_metric_the_other_way_round():
    infos = {"err": MetricInfo("err", "Error", "plugin", higher_is_better=False, summarised=True),
             "err_delta": MetricInfo("err_delta", "Δ error", "plugin", higher_is_better=False, paired_of="err"),
             "scale": MetricInfo("scale", "Scale", "plugin", summarised=True),
             "scale_delta": MetricInfo("scale_delta", "Δ scale", "plugin", paired_of="scale")}
    items = [SeedSpread("intensity", "err", (0,), (0.4,)), SeedSpread("resnet18", "err", (0,), (0.1,)),
             SeedSpread("cyclegan", "err", (0,), (0.3,)),
             *(SeedSpread(m, "scale", (0,), (v,)) for m, v in (("intensity", 1.0), ("resnet18", 2.0)))]
    shares = gap_shares(items, infos)
    assert shares["cyclegan", "err"].values == pytest.approx((1 / 3,)) and shares["cyclegan", "err"].ci_low is None
    assert ("resnet18", "scale") not in shares  # no direction: no gap to close
    del infos["err_delta"]
    assert gap_shares(items, infos) == {}  # a metric no method is compared on gets no share
