"""The ``volume`` metric suite: slices stacked back into their volumes give the Dice, AUPRC and
detection AUROC a volume benchmark publishes, at thresholds fixed on validation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.api import ImageSet, ScoreOutput
from harness.config import MetricSettings
from harness.metrics.bootstrap import auroc_ap
from harness.metrics.detection import choose_dice_threshold
from harness.metrics.suite import MethodEvaluation
from harness.metrics.volume_suite import FIXED_FPR, VolumeSuite, oracle_volume_dice

SIZE = 16


def _volumes(rng: np.random.Generator, plan: list[tuple[str, int, bool]]):
    """Images, masks, maps and subjects of volumes (subject, slices, has a lesion): each lesion is
    a box through the middle slices, and the map is noise plus a blurred copy of the mask."""
    images, masks, maps, subjects = [], [], [], []
    for subject, n, lesion in plan:
        for k in range(n):
            mask = np.zeros((SIZE, SIZE), bool)
            if lesion and 0 < k < n - 1:
                top = int(rng.integers(3, 7))
                mask[top:top + 5, 4:10] = True
            images.append(rng.uniform(0.2, 0.8, (SIZE, SIZE)))
            masks.append(mask)
            maps.append(rng.uniform(0, 1, (SIZE, SIZE)) + 0.8 * mask + 0.3 * np.roll(mask, 1, axis=1))
            subjects.append(subject)
    masks = np.stack(masks)
    image_set = ImageSet(images=torch.tensor(np.stack(images)[:, None], dtype=torch.float32),
                         labels=torch.tensor(masks.any(axis=(1, 2)).astype(int)), ids=[f"{s}/{i}" for i, s in
                                                                                       enumerate(subjects)],
                         brain=torch.ones((len(subjects), 1, SIZE, SIZE), dtype=torch.bool),
                         masks=torch.from_numpy(masks[:, None]))
    scores = np.array([m.max() for m in maps])
    return image_set, ScoreOutput(scores=scores, maps=np.stack(maps)), subjects


def _evaluation(val, val_out, val_subjects, test, test_out, test_subjects) -> MethodEvaluation:
    return MethodEvaluation(
        method="toy", capabilities=frozenset({"scores", "maps"}), val=val, test=test, val_out=val_out,
        test_out=test_out, subjects=test_subjects, strata=["t2"] * len(test), groups=test_subjects,
        settings=MetricSettings(bootstrap=200), seed=0, translations=lambda: None, device=torch.device("cpu"),
        working_size=None, inception_weights=None, mri_extractor=lambda: (None, "none"), cache_dir=Path("."),
        logger=logging.getLogger("test"), val_subjects=val_subjects, val_strata=["t2"] * len(val))


@pytest.fixture
def evaluation() -> MethodEvaluation:
    rng = np.random.default_rng(0)
    val = _volumes(rng, [("v1", 6, True), ("v2", 5, False), ("v3", 6, True), ("v4", 5, False)])
    test = _volumes(rng, [("a", 6, True), ("b", 5, False), ("c", 7, True), ("d", 6, True), ("e", 4, False)])
    return _evaluation(*val, *test)


def test_per_volume_dice_is_the_dice_of_each_stacked_lesion_volume(evaluation):
    rows = {r["metric"]: r for r in VolumeSuite().rows(evaluation)}
    val_maps, val_masks = evaluation.val_out.maps, evaluation.val.masks.numpy()[:, 0]
    threshold = choose_dice_threshold(val_maps, val_masks, np.ones_like(val_masks))
    maps, masks = evaluation.test_out.maps, evaluation.test.masks.numpy()[:, 0]
    subjects = np.array(evaluation.subjects)
    dice = []
    for subject in ("a", "c", "d"):  # the lesion volumes
        predicted = np.stack(list(maps[subjects == subject])) >= threshold
        truth = np.stack(list(masks[subjects == subject]))
        dice.append(2 * np.sum(predicted & truth) / (np.sum(predicted) + np.sum(truth)))
    row = rows["volume_dice"]
    assert row["value"] == pytest.approx(np.mean(dice)) and row["std"] == pytest.approx(np.std(dice, ddof=1))
    assert row["n"] == 3 and row["ci_low"] <= row["value"] <= row["ci_high"]
    assert f"{np.mean(dice):.3f} ± {np.std(dice, ddof=1):.3f} (mean ± sd over 3 lesion volumes)" in row["note"]

    healthy = val_maps[~val_masks]
    fpr_threshold = float(_threshold_in(rows["volume_dice_fpr"]["note"]))
    assert np.mean(healthy > fpr_threshold) == pytest.approx(FIXED_FPR, abs=1.0 / healthy.size + 1e-9)
    ap = [auroc_ap(maps[subjects == s].ravel(), masks[subjects == s].ravel())[1] for s in ("a", "c", "d")]
    assert rows["volume_auprc"]["value"] == pytest.approx(np.mean(ap))


def _threshold_in(note: str) -> str:
    return note.split("threshold ")[1].split(":")[0]


def test_volume_auroc_scores_each_volume_by_an_aggregate_chosen_on_validation(evaluation):
    row = next(r for r in VolumeSuite().rows(evaluation) if r["metric"] == "volume_auroc")
    test_volume_scores = {s: evaluation.test_out.scores[np.array(evaluation.subjects) == s] for s in "abcde"}
    chosen = row["note"].split("slices' ")[1].split(" ")[0]
    aggregate = {"max": np.max, "mean": np.mean, "p90": lambda s: np.percentile(s, 90)}[chosen]
    scores = [aggregate(test_volume_scores[s]) for s in "abcde"]
    assert row["value"] == pytest.approx(auroc_ap(np.array(scores), np.array([1, 0, 1, 1, 0]))[0])
    assert row["n"] == 5


def test_images_that_are_their_own_subjects_hold_no_volumes(evaluation):
    own = [f"img{i}" for i in range(len(evaluation.test))]
    flat = _evaluation(evaluation.val, evaluation.val_out, evaluation.val_subjects, evaluation.test,
                       evaluation.test_out, own)
    assert VolumeSuite().rows(flat) == []


def test_volume_oracle_bounds_the_validation_threshold_mean_on_the_same_volumes(evaluation):
    rows = {r["metric"]: r for r in VolumeSuite().rows(evaluation)}
    oracle, dice = rows["volume_dice_oracle"], rows["volume_dice"]
    assert oracle["n"] == dice["n"] == 3 and "chosen on test" in oracle["note"]
    assert dice["value"] <= oracle["value"] + 1e-12
    # its threshold gives exactly its value when the per-volume Dice is recomputed by hand
    maps, masks = evaluation.test_out.maps, evaluation.test.masks.numpy()[:, 0]
    subjects = np.array(evaluation.subjects)
    volumes = {(s, "t2"): np.flatnonzero(subjects == s) for s in "abcde"}
    threshold, best = oracle_volume_dice(maps, masks, np.ones_like(masks), volumes)
    assert f"threshold {threshold:.6g} chosen on test" in oracle["note"] and best == pytest.approx(oracle["value"])
    by_hand = [2 * np.sum((maps[subjects == s] >= threshold) & masks[subjects == s])
               / (np.sum(maps[subjects == s] >= threshold) + np.sum(masks[subjects == s])) for s in ("a", "c", "d")]
    assert oracle["value"] == pytest.approx(np.mean(by_hand))


def test_every_dice_note_states_the_datas_label_rule(evaluation):
    from dataclasses import replace

    from harness.data.types import lesion_size_rule
    from harness.metrics.localisation_suite import LocalisationSuite

    rule = lesion_size_rule(0.005)
    ev = replace(evaluation, label_rule=rule)
    rows = VolumeSuite().rows(ev) + LocalisationSuite().rows(ev)
    dice_rows = [r for r in rows if "dice" in r["metric"] and r["value"] is not None]
    assert {r["metric"] for r in dice_rows} >= {"dice", "dice_oracle", "volume_dice", "volume_dice_oracle"}
    assert all(r["note"].endswith(rule) for r in dice_rows)
    assert "0.5% of its brain area" in rule
    assert not any(rule in (r["note"] or "") for r in rows if "dice" not in r["metric"])
