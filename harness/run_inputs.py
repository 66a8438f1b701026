"""What a run measures on: its data source, split and loaded image sets, with the per-image facts
(subject, stratum, axial position, subject group) the metrics need.

Why public and apart from the runner: a development tool or a notebook that re-scores a finished
run must see exactly the images the run saw (same source, split and load size), without
reaching into the runner's internals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.config import RunConfig
from harness.data.input_audit import axial_positions
from harness.data.types import DataSource, ImageSet
from harness.metrics.subject_halves import subject_groups
from harness.registry import METHODS

__all__ = ["DataLayer", "RunInputs", "load_size", "method_settings_model", "open_inputs"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataLayer:
    """The data functions a run calls; swappable so the runner can be tested alone."""

    open_dataset: Callable[..., Any]
    make_split: Callable[..., Any]
    load_imageset: Callable[..., ImageSet]
    run_eda: Callable[..., dict]

    @classmethod
    def default(cls) -> DataLayer:
        from harness.data.eda import run_eda
        from harness.data.loading import load_imageset
        from harness.data.sources import open_dataset
        from harness.data.splits import make_split

        return cls(open_dataset, make_split, load_imageset, run_eda)


@dataclass
class RunInputs:
    """A run's source and split, and once :meth:`load` ran, its image sets and per-image facts."""

    source: DataSource
    split: Any  # harness.data.splits.Split
    timings: dict[str, float]
    sets: dict[str, ImageSet] = field(default_factory=dict)

    @property
    def strata(self) -> dict[str, str]:
        """Image id -> acquisition stratum ("" when unknown)."""
        return {r.id: r.stratum for r in self.source.records}

    @property
    def subjects(self) -> dict[str, str]:
        """Image id -> subject (the id itself when unknown); CIs resample these."""
        return {r.id: r.subject for r in self.source.records}

    @property
    def positions(self) -> dict[str, float]:
        """Image id -> axial slice position, where the source records one."""
        return axial_positions(self.source.records)

    def groups(self) -> dict[str, str]:
        """Image id -> subject joined with its duplicate group (the unit of FID reference halves)."""
        ids = self.split.manifest["path"].tolist()
        subjects = self.subjects
        return dict(zip(ids, subject_groups([subjects[i] for i in ids], self.split.manifest["dup_group"])))

    def load(self, data: DataLayer, size: int, progress: bool) -> dict[str, ImageSet]:
        self.sets = {which: data.load_imageset(self.source, self.split, which, size, progress) for which in SPLITS}
        return self.sets


def open_inputs(config: RunConfig, data: DataLayer, progress: bool = False) -> RunInputs:
    """The source and split of ``config`` (the same split hash as the run made), timed."""
    t = time.perf_counter()
    source = data.open_dataset(config.data, config.seed, progress)
    t_data = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    split = data.make_split(source, config.seed, config.profile.split)
    return RunInputs(source, split, {"data": t_data, "split": round(time.perf_counter() - t, 3)})


def method_settings_model(config: RunConfig, name: str) -> Any:
    """Method ``name``'s resolved settings in ``config`` as its typed model (validated again)."""
    cls = METHODS.get(name)
    return cls.Settings(**config.method_settings[name])


def load_size(config: RunConfig) -> int:
    """The largest working size of the config's methods (the feature method included), so each
    method can take its own size down from it; the data source's size when none declares one."""
    sizes = [METHODS.get(n).working_size(method_settings_model(config, n)) for n in config.method_settings]
    sizes = [s for s in sizes if s]
    from harness.data.sources import data_working_size

    return max(sizes) if sizes else data_working_size(config.data)
