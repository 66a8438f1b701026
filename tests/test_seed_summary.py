"""Across-seed summaries: which runs are grouped, and the numbers shown for them."""

from __future__ import annotations

import statistics

import pytest

from harness.seed_summary import (format_paired, format_spread, group_key, paired_spread, paired_table, seed_groups,
                                   spread)


def run(seed: int, auroc: float, *, commit: str = "abc", epochs: int = 18, status: str = "complete",
        created: str = "2026-01-01T00:00:00") -> tuple[dict, list[dict]]:
    info = {"status": status, "seed": seed, "created": created, "harness_version": "0.1.0", "git_commit": commit,
            "config": {"seed": seed, "output": f"out{seed}", "profile": {"resnet18": {"epochs": epochs}}}}
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
    (auroc, ap) = spread(group)
    assert auroc.metric == "auroc" and auroc.values == (0.90, 0.96) and ap.metric == "ap"


def test_spread_is_the_mean_sd_and_range_of_the_overall_rows():
    (auroc, _) = spread([run(0, 0.90), run(1, 0.94), run(2, 0.95)])
    assert auroc.seeds == (0, 1, 2) and auroc.values == (0.90, 0.94, 0.95)  # stratum rows ignored
    assert auroc.mean == pytest.approx(statistics.fmean([0.90, 0.94, 0.95]))
    assert auroc.sd == pytest.approx(statistics.stdev([0.90, 0.94, 0.95]))
    assert format_spread(auroc) == f"0.930 ± {statistics.stdev([0.90, 0.94, 0.95]):.3f} (0.900-0.950)"
    (single, _) = spread([run(3, 0.91)])
    assert single.sd is None and format_spread(single) == "0.910"


def paired_run(seed: int, delta: float) -> tuple[dict, list[dict]]:
    info, rows = run(seed, 0.9)
    pair = [{"method": "resnet18", "other": "intensity", "split": "test", "domain": "all", "metric": "auroc_delta",
             "value": delta},
            {"method": "intensity", "other": "resnet18", "split": "test", "domain": "all", "metric": "auroc_delta",
             "value": -delta}]
    return info, rows + pair


def test_paired_spread_counts_the_seeds_that_agree_in_sign_and_orients_the_winner_first():
    group = [paired_run(0, 0.20), paired_run(1, 0.10), paired_run(2, -0.03)]
    (item,) = paired_spread(group)
    assert (item.method, item.other, item.metric) == ("resnet18", "intensity", "auroc_delta")
    assert item.values == (0.20, 0.10, -0.03) and item.agree == 2
    assert format_paired(item) == f"+0.090 ± {statistics.stdev([0.20, 0.10, -0.03]):.3f}, same sign on 2/3 seeds"
    (losing,) = paired_spread([paired_run(0, -0.2), paired_run(1, -0.1)])
    assert losing.method == "intensity" and losing.values == (0.2, 0.1) and losing.agree == 2
    assert "resnet18" in paired_table([item]) and "2/3" in paired_table([item])
    assert [i.metric for i in spread(group)] == ["auroc", "ap"]  # deltas stay out of the plain spread


def test_spread_covers_localisation_in_a_fixed_order_and_skips_oracle_dice():
    info, rows = run(0, 0.9)
    extra = [{"method": "resnet18", "split": "test", "domain": "all", "metric": m, "value": v}
             for m, v in (("dice_oracle", 0.8), ("dice", 0.41), ("pixel_auroc", 0.77))]
    items = spread([(info, rows + extra)])
    assert [i.metric for i in items] == ["auroc", "ap", "pixel_auroc", "dice"]  # the oracle is no result
    assert items[-1].values == (0.41,)
