"""The run-level ``comparison`` suite, computed once every method ran: the shortcut floors (the
input feature that best separates the labels on validation, and a logistic regression over every
input feature fitted on train, :mod:`harness.metrics.lr_floor`), each scored like a method, and the
paired differences between every two methods and the floors on the same test images
(:mod:`harness.metrics.paired`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harness.api import ImageSet, ScoreOutput
from harness.config import MetricSettings
from harness.data.input_audit import choose_feature, input_features
from harness.evaluate import score_frame
from harness.metrics.detection import image_detection
from harness.metrics.detection_suite import DETECTION_INFOS, stratum_rows
from harness.metrics.lr_floor import fit_lr_floor
from harness.metrics.paired import paired_rows
from harness.metrics.suite import MetricInfo, MetricSuite, RunEvaluation, metric_row, register_metric_suite
from harness.results import FLOOR_METHOD, LR_FLOOR_METHOD, SCORES_COLUMNS

__all__ = ["ComparisonSuite", "PAIRED_INFOS", "comparison_rows", "lr_floor", "shortcut_floor"]

PAIRED_INFOS = (
    MetricInfo("auroc_delta", "Δ AUROC", "paired", higher_is_better=True, paired_of="auroc"),
    MetricInfo("ap_delta", "Δ AP", "paired", higher_is_better=True, paired_of="ap"),
)


def _not_computed(method: str, n: int, note: str) -> tuple[list[dict], pd.DataFrame]:
    return ([metric_row(method, m, None, n=n, note=note) for m in ("auroc", "ap")],
            pd.DataFrame(columns=list(SCORES_COLUMNS)))


def _floor_rows(method: str, what: str, val: ImageSet, test: ImageSet, val_out: ScoreOutput, test_out: ScoreOutput,
                subjects: Mapping[str, str], settings: MetricSettings, seed: int,
                strata: Mapping[str, str] | None) -> tuple[list[dict], pd.DataFrame]:
    """A floor's detection rows (threshold fixed on validation, the same subject bootstrap as every
    method's), overall and per stratum, and its per-image scores for scores.csv."""
    groups = [subjects.get(i, i) for i in test.ids]
    estimates, _ = image_detection(val.labels.numpy(), val_out.scores, test.labels.numpy(), test_out.scores,
                                   settings, seed, groups)
    rows = [metric_row(method, e.metric, e.value, ci_low=e.ci_low, ci_high=e.ci_high, n=e.n,
                       note=f"{what}; {e.note}" if e.note else what) for e in estimates]
    rows += stratum_rows(method, val, test, val_out, test_out, [(strata or {}).get(i, "") for i in test.ids],
                         settings, seed, groups)
    frames = [score_frame(method, "val", val, val_out), score_frame(method, "test", test, test_out)]
    return rows, pd.concat(frames, ignore_index=True)


def shortcut_floor(val: ImageSet, test: ImageSet, subjects: Mapping[str, str],
                   positions: Mapping[str, float] | None, settings: MetricSettings,
                   seed: int, strata: Mapping[str, str] | None = None) -> tuple[list[dict], pd.DataFrame]:
    """Rows (method :data:`FLOOR_METHOD`) and per-image scores (val and test) of the input feature
    that best separates the labels on validation, its direction chosen there too, scored on test
    like a method (:mod:`harness.data.input_audit`), overall and, with ``strata``, per stratum. A
    method that does not beat it has not shown that it needs to find the lesion."""
    fv, ft = input_features(val, positions), input_features(test, positions)
    usable = {name: fv[name] for name in fv if np.all(np.isfinite(ft[name]))}  # it must score every test image
    chosen = choose_feature(val.labels.numpy(), usable)
    if chosen is None:
        return _not_computed(FLOOR_METHOD, len(test), "not computed: no input feature varies on validation "
                                                      "(with both labels) and is known on test")
    name, val_auroc = chosen
    sign = 1.0 if val_auroc >= 0.5 else -1.0
    what = (f"shortcut floor: input feature {name}, {'higher' if sign > 0 else 'lower'} = tumor, chosen on "
            f"validation (val AUROC {max(val_auroc, 1 - val_auroc):.3f})")
    return _floor_rows(FLOOR_METHOD, what, val, test, ScoreOutput(sign * fv[name]), ScoreOutput(sign * ft[name]),
                       subjects, settings, seed, strata)


def lr_floor(train: ImageSet, val: ImageSet, test: ImageSet, subjects: Mapping[str, str],
             positions: Mapping[str, float] | None, settings: MetricSettings, seed: int,
             strata: Mapping[str, str] | None = None) -> tuple[list[dict], pd.DataFrame]:
    """Rows (method :data:`LR_FLOOR_METHOD`) and per-image scores of the logistic regression over
    every input feature, fitted on ``train``'s image labels (:mod:`harness.metrics.lr_floor`)."""
    fitted = fit_lr_floor(train, val, test, positions)
    if fitted.reason is not None:
        return _not_computed(LR_FLOOR_METHOD, len(test), fitted.reason)
    return _floor_rows(LR_FLOOR_METHOD, fitted.description, val, test, ScoreOutput(fitted.val_scores),
                       ScoreOutput(fitted.test_scores), subjects, settings, seed, strata)


def comparison_rows(scores: pd.DataFrame, val: ImageSet, test: ImageSet, subjects: Mapping[str, str],
                    positions: Mapping[str, float] | None, settings: MetricSettings, seed: int,
                    strata: Mapping[str, str] | None = None, train: ImageSet | None = None) -> list[dict]:
    """The shortcut floors' rows (the logistic-regression floor needs ``train``: none without it,
    as from a caller that predates it), then the paired
    differences (``auroc_delta``, ``ap_delta``) of every ordered pair among the methods in
    ``scores`` (scores.csv) and the floors, on the same test images and subject resamples; those
    against a fixed reference (the intensity floor, each shortcut floor) with permutation and Holm
    p-values."""
    single_rows, single_scores = shortcut_floor(val, test, subjects, positions, settings, seed, strata)
    lr_rows, lr_scores = (lr_floor(train, val, test, subjects, positions, settings, seed, strata)
                          if train is not None else ([], scores.iloc[:0]))
    frames = [f for f in (scores, single_scores, lr_scores) if len(f)]
    both = pd.concat(frames, ignore_index=True) if frames else scores
    return single_rows + lr_rows + paired_rows(both, subjects, settings, seed)


@register_metric_suite("comparison")
class ComparisonSuite(MetricSuite):
    """Run-scope: it needs every method's scores, so it runs after the last method (and again
    after a resumed run's methods)."""

    needs = frozenset({"run_scores"})
    scope = "run"
    infos = DETECTION_INFOS + PAIRED_INFOS  # the floor's rows are detection rows

    def rows(self, ev: RunEvaluation) -> list[dict]:
        return comparison_rows(ev.scores, ev.val, ev.test, ev.subjects, ev.positions, ev.settings, ev.seed,
                               ev.strata, ev.train)
