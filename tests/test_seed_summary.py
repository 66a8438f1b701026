"""Across-seed summaries: which runs are grouped, and the numbers shown for them."""

from __future__ import annotations

import statistics

import pytest

from harness.metric_info import SCHEMA1_METRICS, MetricInfo, with_seed_pairs
from harness.seed_summary import format_spread, group_key, paired_spread, seed_groups, spread

INFOS = SCHEMA1_METRICS  # what every run of these tests records


def run(seed: int, auroc: float, *, commit: str = "abc", epochs: int = 18, status: str = "complete",
        created: str = "2026-01-01T00:00:00", train_seed: int | None = None) -> tuple[dict, list[dict]]:
    config = {"seed": seed, "output": f"out{seed}-{train_seed}", "profile": {"resnet18": {"epochs": epochs}}}
    if train_seed is not None:
        config["train_seed"] = train_seed
    info = {"status": status, "seed": seed, "created": created, "harness_version": "0.1.0", "git_commit": commit,
            "config": config}
    rows = [{"method": "resnet18", "split": "test", "domain": "all", "metric": "auroc", "value": auroc},
            {"method": "resnet18", "split": "test", "domain": "stratum:T1", "metric": "auroc", "value": 0.1},
            {"method": "resnet18", "split": "test", "domain": "all", "metric": "ap", "value": auroc - 0.01}]
    return info, rows


def test_only_runs_that_differ_in_seed_alone_are_grouped():
    runs = [run(0, 0.90), run(1, 0.94), run(2, 0.92, status="failed"), run(0, 0.80, commit="def"),
            run(0, 0.70, epochs=12), run(1, 0.71, epochs=12)]
    groups = seed_groups(runs)
    assert len(groups) == 2  # commit "def" has one seed only; the failed run does not count
    assert group_key(runs[0][0]) == group_key(runs[1][0]) != group_key(runs[3][0]) != group_key(runs[4][0])
    main = groups[group_key(runs[0][0])]
    assert [info["seed"] for info, _ in main] == [0, 1]


def test_a_rerun_seed_counts_once_with_its_latest_result():
    runs = [run(0, 0.90), run(1, 0.94), run(1, 0.96, created="2026-02-01T00:00:00")]
    (group,) = seed_groups(runs).values()
    (auroc, ap) = spread(group, INFOS)
    assert auroc.metric == "auroc" and auroc.values == (0.90, 0.96) and ap.metric == "ap"


def test_spread_is_the_mean_sd_and_range_of_the_overall_rows():
    (auroc, _) = spread([run(0, 0.90), run(1, 0.94), run(2, 0.95)], INFOS)
    assert auroc.seeds == (0, 1, 2) and auroc.values == (0.90, 0.94, 0.95)  # stratum rows ignored
    assert auroc.mean == pytest.approx(statistics.fmean([0.90, 0.94, 0.95]))
    assert auroc.sd == pytest.approx(statistics.stdev([0.90, 0.94, 0.95]))
    assert format_spread(auroc) == f"0.930 ± {statistics.stdev([0.90, 0.94, 0.95]):.3f} (0.900-0.950)"
    (single, _) = spread([run(3, 0.91)], INFOS)
    assert single.sd is None and format_spread(single) == "0.910"


def auroc_row(method: str, value: float) -> dict:
    return {"method": method, "split": "test", "domain": "all", "metric": "auroc", "value": value}


def paired_run(seed: int, delta: float, other: str = "intensity", **kw) -> tuple[dict, list[dict]]:
    """resnet18 at AUROC 0.9 and ``other`` at 0.9 - delta on the same split."""
    info, rows = run(seed, 0.9, **kw)
    return info, rows + [auroc_row(other, 0.9 - delta)]


def test_paired_spread_counts_the_seeds_that_agree_in_sign_and_fixes_the_reference_second():
    group = [paired_run(0, 0.20), paired_run(1, 0.10), paired_run(2, -0.03)]
    (item,) = paired_spread(group, INFOS)
    assert (item.method, item.other, item.metric, item.exploratory) == ("resnet18", "intensity", "auroc_delta", False)
    assert item.values == pytest.approx((0.20, 0.10, -0.03)) and item.agree == 2
    assert item.mean == pytest.approx(0.09) and item.sd == pytest.approx(statistics.stdev([0.20, 0.10, -0.03]))
    # a reference is chosen before any number is seen: a method that loses to it stays first
    (losing,) = paired_spread([paired_run(0, -0.2), paired_run(1, -0.1)], INFOS)
    assert (losing.method, losing.other) == ("resnet18", "intensity") and losing.values == pytest.approx((-0.2, -0.1))
    assert losing.agree == 2
    assert [(i.method, i.metric) for i in spread(group, INFOS)] == [  # deltas stay out of the plain spread
        ("intensity", "auroc"), ("resnet18", "auroc"), ("resnet18", "ap")]


def test_pairs_without_a_reference_are_exploratory_with_the_winner_first_and_come_last():
    group = []
    for seed in (0, 1):
        info, rows = paired_run(seed, -0.05, other="cyclegan")  # cyclegan beats resnet18
        group.append((info, rows + [auroc_row("intensity", 0.7), auroc_row("shortcut-floor", 0.8)]))
    items = paired_spread(group, INFOS)
    assert [(i.method, i.other, i.exploratory) for i in items] == [
        ("cyclegan", "intensity", False), ("resnet18", "intensity", False),
        ("cyclegan", "shortcut-floor", False), ("intensity", "shortcut-floor", False),
        ("resnet18", "shortcut-floor", False), ("cyclegan", "resnet18", True)]
    assert items[3].values == pytest.approx((-0.1, -0.1))  # the intensity floor minus the shortcut floor
    assert items[-1].values == pytest.approx((0.05, 0.05))


def test_trainings_of_one_split_give_training_noise_and_no_split_noise():
    """Two --train-seeds runs of one split: one seed, its value the mean of the two trainings;
    the split SD is 0 and the training SD is theirs."""
    runs = [run(100, 0.80), run(100, 0.90, train_seed=1100)]
    (group,) = seed_groups(runs).values()  # a train seed alone makes another run of the group
    (auroc, _) = spread(group, INFOS)
    assert auroc.seeds == (100,) and auroc.values == pytest.approx((0.85,)) and auroc.trainings == ((0.80, 0.90),)
    assert auroc.sd is None and auroc.split_sd == 0.0
    assert auroc.train_sd == pytest.approx(statistics.stdev([0.80, 0.90]))


def test_split_noise_is_the_spread_of_split_means_less_the_training_noise_they_carry():
    runs = [run(0, 0.80), run(0, 0.90, train_seed=1000), run(1, 0.60), run(1, 0.70, train_seed=1001)]
    (auroc, _) = spread(runs, INFOS)
    assert auroc.values == pytest.approx((0.85, 0.65)) and auroc.sd == pytest.approx(statistics.stdev([0.85, 0.65]))
    within = statistics.fmean([statistics.variance([0.8, 0.9]), statistics.variance([0.6, 0.7])])
    assert auroc.train_sd == pytest.approx(within ** 0.5)
    assert auroc.split_sd == pytest.approx((statistics.variance([0.85, 0.65]) - within / 2) ** 0.5)
    (single,) = spread([run(0, 0.8), run(1, 0.9)], {"auroc": INFOS["auroc"]})
    assert single.train_sd is None and single.split_sd is None  # one training per split: not separable
    (pair,) = paired_spread([paired_run(0, 0.2), paired_run(0, 0.1, train_seed=1000)], INFOS)
    assert pair.values == pytest.approx((0.15,))  # per split: the difference of the trainings' means


def test_spread_covers_localisation_in_a_fixed_order_and_skips_oracle_dice():
    info, rows = run(0, 0.9)
    extra = [{"method": "resnet18", "split": "test", "domain": "all", "metric": m, "value": v}
             for m, v in (("dice_oracle", 0.8), ("dice", 0.41), ("pixel_auroc", 0.77))]
    items = spread([(info, rows + extra)], INFOS)
    assert [i.metric for i in items] == ["auroc", "ap", "pixel_auroc", "dice"]  # the oracle is no result
    assert items[-1].values == (0.41,)


def test_the_runs_infos_decide_what_is_summarised_and_who_wins_a_pair():
    """A metric a plugin suite declares summarised is spread like AUROC; an exploratory paired
    difference of a lower-is-better metric puts the method with the lower value first."""
    overlap = MetricInfo("overlap", "Overlap", "plugin", higher_is_better=False, summarised=True)
    delta = MetricInfo("overlap_delta", "Δ overlap", "plugin", higher_is_better=False, paired_of="overlap")
    infos = {"auroc": INFOS["auroc"], "overlap": overlap, "overlap_delta": delta}
    group = []
    for seed, (a, b) in enumerate([(0.2, 0.5), (0.3, 0.4)]):
        info, _ = run(seed, 0.9)
        rows = [{"method": m, "split": "test", "domain": "all", "metric": "overlap", "value": v} for m, v in
                (("resnet18", a), ("cyclegan", b))]
        group.append((info, rows))
    assert [(i.method, i.metric) for i in spread(group, infos)] == [("cyclegan", "overlap"), ("resnet18", "overlap")]
    assert spread(group, {"auroc": INFOS["auroc"]}) == []  # runs whose infos do not name it: not summarised
    (pair,) = paired_spread(group, infos)
    assert (pair.method, pair.other, pair.exploratory) == ("resnet18", "cyclegan", True)
    assert pair.mean == pytest.approx(-0.2) and pair.agree == 2


def test_localisation_is_paired_across_seeds_only_where_no_suite_pairs_it():
    """Pixel AUROC and Dice have no per-run paired difference (pixels pool across images), yet each
    seed's two values share a split: with_seed_pairs adds their differences, never a second AUROC
    pair, nor one for a metric without a direction."""
    infos = with_seed_pairs(INFOS)
    added = {k for k in infos if k not in INFOS}
    assert added == {"pixel_auroc_delta", "dice_delta"}
    assert infos["dice_delta"].paired_of == "dice" and infos["dice_delta"].title == "Δ Dice"
    group = []
    for seed, (method_dice, floor_dice) in enumerate([(0.30, 0.40), (0.35, 0.38), (0.20, 0.41)]):
        info, rows = run(seed, 0.9)
        rows = [{"method": m, "split": "test", "domain": "all", "metric": "dice", "value": v}
                for m, v in (("resnet18", method_dice), ("intensity", floor_dice))]
        group.append((info, rows))
    assert paired_spread(group, INFOS) == []  # the runs' own infos pair AUROC and AP only
    (pair,) = paired_spread(group, infos)
    assert (pair.method, pair.other, pair.metric, pair.exploratory) == ("resnet18", "intensity", "dice_delta", False)
    assert pair.values == pytest.approx((-0.10, -0.03, -0.21)) and pair.agree == 3
