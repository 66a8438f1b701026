"""The ``localisation`` suite: pixel AUROC/AP, Dice at the validation-chosen threshold (overall and
per stratum) and the oracle Dice, for methods with anomaly maps (:mod:`harness.metrics.detection`)."""

from __future__ import annotations

import numpy as np

from harness.api import ImageSet, ScoreOutput
from harness.config import MetricSettings
from harness.metrics.detection import choose_dice_threshold, dice_at_threshold, pixel_detection
from harness.metrics.detection_suite import estimate_rows, strata_names
from harness.metrics.suite import MethodEvaluation, MetricInfo, MetricSuite, metric_row, register_metric_suite
from harness.results import STRATUM_PREFIX

__all__ = ["DICE_METRICS", "LOCALISATION_INFOS", "LocalisationSuite", "pixel_rows", "with_label_rule"]

DICE_METRICS = frozenset({"dice", "dice_oracle", "volume_dice", "volume_dice_oracle", "volume_dice_fpr"})

LOCALISATION_INFOS = (
    MetricInfo("pixel_auroc", "Pixel AUROC", "localisation", higher_is_better=True, summarised=True),
    MetricInfo("pixel_ap", "Pixel AP", "localisation", higher_is_better=True),
    MetricInfo("dice", "Dice", "localisation", higher_is_better=True, summarised=True),
    MetricInfo("dice_oracle", "Dice (oracle threshold)", "localisation", higher_is_better=True),
)


def pixel_rows(method: str, test: ImageSet, test_out: ScoreOutput, settings: MetricSettings,
               seed: int, test_subjects: list[str] | None = None, *, val: ImageSet | None = None,
               val_out: ScoreOutput | None = None, test_strata: list[str] | None = None,
               label_rule: str = "") -> list[dict]:
    """Pixel AUROC/AP, the oracle Dice, and ``dice`` at the threshold that maximises Dice on
    ``val`` (overall and, with ``test_strata``, per stratum); rows with a note when maps or
    masks are missing. ``label_rule`` (which slices the data leaves out) joins every Dice note."""
    return with_label_rule(_pixel_rows(method, test, test_out, settings, seed, test_subjects, val, val_out,
                                       test_strata), label_rule)


def with_label_rule(rows: list[dict], label_rule: str) -> list[dict]:
    """Dice rows whose note also states the data's label rule: a Dice over slices that exclude
    small lesions is not the Dice of a benchmark that keeps them."""
    if not label_rule:
        return rows
    for row in rows:
        if row["metric"] in DICE_METRICS and row["value"] is not None:
            row["note"] = f"{row['note']}; {label_rule}" if row.get("note") else label_rule
    return rows


def _pixel_rows(method: str, test: ImageSet, test_out: ScoreOutput, settings: MetricSettings, seed: int,
                test_subjects: list[str] | None, val: ImageSet | None, val_out: ScoreOutput | None,
                test_strata: list[str] | None) -> list[dict]:
    if test.masks is None or test_out.maps is None:
        missing = "ground-truth masks" if test.masks is None else "anomaly maps"
        note = f"not computed: the test set has no {missing}"
        return [metric_row(method, m, None, n=len(test), note=note)
                for m in ("pixel_auroc", "pixel_ap", "dice", "dice_oracle")]
    maps, masks, brain = np.asarray(test_out.maps), test.masks.numpy(), test.brain.numpy()
    labels = test.labels.numpy()
    rows = estimate_rows(method, pixel_detection(maps, masks, brain, labels, settings, seed, groups=test_subjects))
    if val is None or val_out is None or val.masks is None or val_out.maps is None:
        return rows + [metric_row(method, "dice", None, n=len(test),
                                  note="not computed: no validation maps and masks to fix the threshold on")]
    threshold = choose_dice_threshold(np.asarray(val_out.maps), val.masks.numpy(), val.brain.numpy())
    rows += estimate_rows(method, [dice_at_threshold(maps, masks, brain, labels, threshold, settings, seed,
                                                     test_subjects)])
    strata = np.asarray(test_strata if test_strata is not None else [""] * len(test), dtype=str)
    subjects = None if test_subjects is None else np.asarray(test_subjects, dtype=str)
    for name in strata_names(strata, len(test)):
        members = strata == name
        estimate = dice_at_threshold(maps[members], masks[members], brain[members], labels[members], threshold,
                                     settings, seed, None if subjects is None else subjects[members])
        rows += estimate_rows(method, [estimate], domain=f"{STRATUM_PREFIX}{name}")
    return rows


@register_metric_suite("localisation")
class LocalisationSuite(MetricSuite):
    needs = frozenset({"scores", "maps"})
    infos = LOCALISATION_INFOS

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        return pixel_rows(ev.method, ev.test, ev.test_out, ev.settings, ev.seed, ev.subjects, val=ev.val,
                          val_out=ev.val_out, test_strata=ev.strata, label_rule=ev.label_rule)
