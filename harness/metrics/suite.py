"""Metric suites: what a metric needs, the rows it writes and how results show them.

A suite is registered by name (built-ins with :func:`register_metric_suite`, third parties
through the entry-point group ``harness.metrics``) and declares

* ``needs``: what it reads (:data:`NEEDS`). The runner runs a method-scope suite for every method
  that provides them (scores always; ``maps`` for the ``maps`` capability, ``translations`` for
  ``translates``), and a run-scope suite once after all methods ran, on every method's scores;
* ``infos``: a :class:`MetricInfo` per metric id it writes, stored in metrics.json so reports
  and the seed summary take titles, digits and directions from the run, not from lists of their own;
* ``rows(ev)``: rows made with :func:`harness.results.metric_row`, the one row shape of every suite.

A suite imports what it needs from here: the contexts, :class:`MetricInfo`, ``metric_row`` and
the resampling every CI of the harness uses (``bootstrap_counts`` with ``np.random.default_rng(seed)``,
whole subjects when known; ``percentile_interval``), so its intervals read like the built-ins'.

Why suites rather than calls in the runner: a new metric is one module (or one plugin package)
and no edit of the runner, the report or the seed summary.
"""

from __future__ import annotations

import abc
import difflib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch

from harness.api import ImageSet, ScoreOutput
from harness.config import MetricSettings
from harness.metric_info import MetricInfo
from harness.metrics.bootstrap import bootstrap_counts, percentile_interval, subject_counts_note
from harness.registry import register_metric_suite
from harness.results import metric_row

if TYPE_CHECKING:
    from harness.metrics.feature_spaces import FeatureSpace, MRIExtractor
    from harness.metrics.generative import Translations

__all__ = ["NEEDS", "SCOPES", "MethodEvaluation", "MetricInfo", "MetricSuite", "RunEvaluation", "bootstrap_counts",
           "metric_row", "needs_met", "percentile_interval", "register_metric_suite", "subject_counts_note"]

# scores: the method's val/test ScoreOutput; maps: its per-pixel maps; translations: its test
# images translated into each domain; run_scores: every method's scores (scores.csv) of the run
NEEDS = frozenset({"scores", "maps", "translations", "run_scores"})
SCOPES = {"method": frozenset({"scores", "maps", "translations"}), "run": frozenset({"run_scores"})}
_CAPABILITY_NEEDS = {"maps": "maps", "translates": "translations"}  # method capability -> the need it meets


def needs_met(capabilities: Iterable[str]) -> frozenset[str]:
    """What a method with these capabilities provides to method-scope suites."""
    return frozenset({"scores", *(_CAPABILITY_NEEDS[c] for c in capabilities if c in _CAPABILITY_NEEDS)})


@dataclass(frozen=True)
class MethodEvaluation:
    """What a method-scope suite reads: one method's outputs on the run's val and test sets.

    ``subjects``, ``strata`` and ``groups`` hold one entry per test image (subject; acquisition
    stratum, "" when unknown; subject joined with its duplicate group); ``val_subjects`` and
    ``val_strata`` the same per validation image (what a suite that selects on validation
    volumes or subjects groups by). ``translations()``
    translates the test set on first call (timed by the runner) and returns the same object after.
    ``mri_extractor()`` gives the run's MRI-domain network or None and why not; ``realism_space()``
    the run's ``realism-ssl`` space (its ladder verdict in its description) or None and why not.
    ``translate`` is the method's own ``translate`` (None without the capability), for suites
    that translate images of the target domain themselves (reconstruction fidelity). ``record`` is
    stored in the method's entry of run.json (the detection suite puts the validation
    ``threshold`` there).
    """

    method: str
    capabilities: frozenset[str]
    val: ImageSet
    test: ImageSet
    val_out: ScoreOutput
    test_out: ScoreOutput
    subjects: list[str]
    strata: list[str]
    groups: list[str]
    settings: MetricSettings
    seed: int
    translations: Callable[[], Translations]
    device: torch.device
    working_size: int | None
    inception_weights: str | None
    mri_extractor: Callable[[], tuple[MRIExtractor | None, str]]
    cache_dir: Path
    logger: logging.Logger
    record: dict[str, Any] = field(default_factory=dict)
    val_subjects: list[str] = field(default_factory=list)
    val_strata: list[str] = field(default_factory=list)
    realism_space: Callable[[], tuple[FeatureSpace | None, str]] = lambda: (None, "no realism space in this evaluation")
    translate: Callable[[torch.Tensor, str], torch.Tensor] | None = None
    label_rule: str = ""  # the data's DataSource.label_rule, said beside every Dice


@dataclass(frozen=True)
class RunEvaluation:
    """What a run-scope suite reads, once every method ran: all methods' scores (scores.csv
    columns) and the run's val/test sets with their per-image facts keyed by image id; ``train``
    the train split, for a suite that fits on it (the logistic-regression shortcut floor; None:
    such a suite says it was not given one)."""

    scores: pd.DataFrame
    val: ImageSet
    test: ImageSet
    subjects: Mapping[str, str]
    positions: Mapping[str, float]
    strata: Mapping[str, str]
    settings: MetricSettings
    seed: int
    logger: logging.Logger
    train: ImageSet | None = None


class MetricSuite(abc.ABC):
    """Base class of a registered metric suite; see the module docstring.

    Subclasses set ``needs``, ``scope`` and ``infos`` and implement :meth:`rows`. Every row's
    ``metric`` must be one of ``infos``' ids. The runner makes a new instance per evaluation.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"scores"})
    scope: ClassVar[str] = "method"
    infos: ClassVar[tuple[MetricInfo, ...]] = ()

    @abc.abstractmethod
    def rows(self, ev: Any) -> list[dict]:
        """The suite's metrics.json rows: ``ev`` is a :class:`MethodEvaluation` for scope
        "method", a :class:`RunEvaluation` for scope "run"."""

    @classmethod
    def validate_registration(cls, name: str, registered: Iterable[type[MetricSuite]] = ()) -> None:
        """Refuse, with the reason, a suite the runner could not run correctly: unknown needs (a
        typo would silently skip it), needs its scope cannot meet, no or duplicate infos, or an
        info that disagrees with another suite's info of the same metric id."""
        where = f"metric suite {name!r}"
        if cls.scope not in SCOPES:
            raise ValueError(f"{where}: scope {cls.scope!r} is not one of {', '.join(sorted(SCOPES))}")
        needs = frozenset(cls.needs)
        for need in sorted(needs - NEEDS):
            close = difflib.get_close_matches(need, sorted(NEEDS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: unknown need {need!r}{hint}; known needs: {', '.join(sorted(NEEDS))}")
        if not needs or not needs <= SCOPES[cls.scope]:
            allowed = ", ".join(sorted(SCOPES[cls.scope]))
            raise ValueError(f"{where}: a {cls.scope}-scope suite needs some of {allowed}, "
                             f"not {', '.join(sorted(needs)) or 'nothing'}")
        if not cls.infos or not all(isinstance(i, MetricInfo) for i in cls.infos):
            raise ValueError(f"{where}: infos must be a non-empty tuple of MetricInfo")
        ids = [i.id for i in cls.infos]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{where}: infos name a metric id twice")
        mine = {i.id: i for i in cls.infos}
        for other in registered:
            for info in getattr(other, "infos", ()):
                if info.id in mine and mine[info.id] != info:
                    raise ValueError(f"{where}: its info of metric {info.id!r} differs from that of metric suite "
                                     f"{other.name!r}; one id, one meaning")
