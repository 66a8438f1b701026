"""The ``detection`` suite: image-level AUROC, AP, its chance level and the rates at the
validation threshold, overall and per acquisition stratum (:mod:`harness.metrics.detection`)."""

from __future__ import annotations

import numpy as np

from harness.api import ImageSet, ScoreOutput
from harness.config import MetricSettings
from harness.metrics.detection import Estimate, image_detection
from harness.metrics.suite import MethodEvaluation, MetricInfo, MetricSuite, metric_row, register_metric_suite
from harness.results import STRATUM_PREFIX

__all__ = ["DETECTION_INFOS", "DetectionSuite", "detection_rows", "estimate_rows", "strata_names", "stratum_rows"]

DETECTION_INFOS = (
    MetricInfo("auroc", "AUROC", "detection", higher_is_better=True, summarised=True),
    MetricInfo("ap", "AP", "detection", higher_is_better=True, summarised=True),
    MetricInfo("sensitivity", "Sensitivity", "detection", higher_is_better=True),
    MetricInfo("specificity", "Specificity", "detection", higher_is_better=True),
    MetricInfo("balanced_accuracy", "Balanced acc.", "detection", higher_is_better=True),
    MetricInfo("ap_chance", "AP chance level", "detection"),
)


def estimate_rows(method: str, estimates: list[Estimate], domain: str = "all") -> list[dict]:
    return [metric_row(method, e.metric, e.value, domain=domain, ci_low=e.ci_low, ci_high=e.ci_high, n=e.n,
                       note=e.note) for e in estimates]


def detection_rows(method: str, val: ImageSet, test: ImageSet, val_out: ScoreOutput,
                   test_out: ScoreOutput, settings: MetricSettings, seed: int,
                   test_subjects: list[str] | None = None) -> tuple[list[dict], float | None]:
    """Image-level rows on test (threshold from val) and the threshold; with ``test_subjects``
    the CIs resample subjects."""
    estimates, threshold = image_detection(val.labels.numpy(), np.asarray(val_out.scores),
                                           test.labels.numpy(), np.asarray(test_out.scores),
                                           settings, seed, test_subjects)
    return estimate_rows(method, estimates), threshold


def strata_names(strata: np.ndarray, n: int) -> list[str]:
    """The named strata of the test split; empty unless there are two or more."""
    if strata.shape != (n,):
        raise ValueError(f"{len(strata)} strata for {n} test images")
    names = sorted(set(strata.tolist()) - {""})
    return names if len(names) >= 2 else []


def stratum_rows(method: str, val: ImageSet, test: ImageSet, val_out: ScoreOutput, test_out: ScoreOutput,
                 test_strata: list[str], settings: MetricSettings, seed: int,
                 test_subjects: list[str] | None = None) -> list[dict]:
    """Image-level rows per acquisition stratum of the test split (domain ``stratum:<name>``).

    An overall AUROC can hide a method that fails on one sequence or scanner; the threshold
    stays the one chosen on all of validation, so each stratum is read at the operating point a
    user would deploy. Nothing is returned unless the test split holds two or more strata.
    """
    strata = np.asarray(test_strata, dtype=str)
    labels, scores = test.labels.numpy(), np.asarray(test_out.scores)
    subjects = None if test_subjects is None else np.asarray(test_subjects, dtype=str)
    rows = []
    for name in strata_names(strata, len(test)):
        members = strata == name
        estimates, _ = image_detection(val.labels.numpy(), np.asarray(val_out.scores), labels[members],
                                       scores[members], settings, seed,
                                       None if subjects is None else subjects[members])
        rows += estimate_rows(method, estimates, domain=f"{STRATUM_PREFIX}{name}")
    return rows


@register_metric_suite("detection")
class DetectionSuite(MetricSuite):
    """Every method scores images, so every method gets these rows; the validation threshold
    they are read at goes into run.json (``threshold``)."""

    needs = frozenset({"scores"})
    infos = DETECTION_INFOS

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        rows, ev.record["threshold"] = detection_rows(ev.method, ev.val, ev.test, ev.val_out, ev.test_out,
                                                      ev.settings, ev.seed, ev.subjects)
        return rows + stratum_rows(ev.method, ev.val, ev.test, ev.val_out, ev.test_out, ev.strata, ev.settings,
                                   ev.seed, ev.subjects)
