"""The logistic-regression shortcut floor: every input feature of the audit at once.

The single-feature floor (:func:`harness.metrics.comparison_suite.shortcut_floor`) cannot see a
shortcut that lives in a combination (tumor slices a little darker *and* a little smaller, say),
which a network finds as easily as one feature. This floor fits a standardised, L2-regularised
logistic regression (scikit-learn's default ``C`` = 1; no tuning, so nothing is chosen on test)
over every feature of :data:`harness.data.input_audit.FEATURES` that is known on every image, on
the **train split's image labels**: its supervision is image labels, as a classifier's would be.
Its score on an image is the fitted log-odds; validation only fixes the threshold of the
sensitivity/specificity rows, as for every method. Like the single floor, a method that does not
beat it has not shown that it needs to find the lesion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from harness.api import ImageSet
from harness.data.input_audit import FEATURES, input_features

__all__ = ["LRFloor", "fit_lr_floor"]

MAX_ITER = 1000  # lbfgs converges in tens of iterations on six standardised features; a ceiling, not a knob


@dataclass(frozen=True)
class LRFloor:
    """The fitted floor's scores on val and test, or why there are none (``reason``)."""

    features: tuple[str, ...] = ()
    val_scores: np.ndarray | None = None
    test_scores: np.ndarray | None = None
    n_train: int = 0
    reason: str | None = None

    @property
    def description(self) -> str:
        return (f"shortcut floor (logistic regression): {len(self.features)} input features "
                f"({', '.join(self.features)}), standardised, fitted on the image labels of {self.n_train} "
                "train images")


def _matrix(features: Mapping[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    return np.column_stack([features[n] for n in names])


def fit_lr_floor(train: ImageSet, val: ImageSet, test: ImageSet,
                 positions: Mapping[str, float] | None = None) -> LRFloor:
    """Fit on ``train`` (both labels needed) over the features finite on every train, val and
    test image and not constant on train; score val and test."""
    labels = train.labels.numpy().astype(int)
    if np.unique(labels).size < 2:
        return LRFloor(reason="not computed: the train split holds only one label")
    sets = [input_features(s, positions) for s in (train, val, test)]
    names = tuple(n for n in FEATURES
                  if all(np.all(np.isfinite(f[n])) for f in sets) and np.ptp(sets[0][n]) > 0)
    if not names:
        return LRFloor(reason="not computed: no input feature is known on every image and varies on train")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    model.fit(_matrix(sets[0], names), labels)
    return LRFloor(names, model.decision_function(_matrix(sets[1], names)),
                   model.decision_function(_matrix(sets[2], names)), int(labels.size))
