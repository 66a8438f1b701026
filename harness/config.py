"""Run configuration: the core's typed settings (split, metrics), named profiles (smoke, quick,
paper) and overrides; each method's and each data source's own settings live beside its code.

A profile fixes every knob that changes numbers, so a result names its profile and the full
resolved config (``RunConfig.to_dict``) and can be reproduced from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.settings import SettingsError, validate_settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitSettings(_Section):
    """Fractions of subjects (or duplicate groups) per split; the rest is test."""

    train: float = Field(0.6, gt=0.0, lt=1.0)
    val: float = Field(0.15, gt=0.0, lt=1.0)
    test: float = Field(0.25, gt=0.0, lt=1.0)


class MetricSettings(_Section):
    bootstrap: int = Field(1000, ge=10)
    ci: float = Field(0.95, gt=0.0, lt=1.0)
    isc_splits: int = Field(10, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    generative_max_images: int = Field(0, ge=0)  # 0: all test images of a domain


CORE_SECTIONS: dict[str, type[_Section]] = {"split": SplitSettings, "metrics": MetricSettings}


class Profile(_Section):
    """A named bundle of the core's settings plus per-method and per-data-source overrides
    ({name: {key: value}}).

    Each method's and data source's own per-profile defaults live beside its code
    (``profile_defaults``); ``methods`` and ``datasets`` hold only what a user changed on top.
    """

    name: str
    description: str
    split: SplitSettings = SplitSettings()
    metrics: MetricSettings = MetricSettings()
    datasets: dict[str, dict[str, Any]] = {}
    methods: dict[str, dict[str, Any]] = {}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="Seconds per method; for tests and CI. Numbers are not meaningful.",
        metrics=MetricSettings(bootstrap=100, isc_splits=2, kid_subset_size=50),
    ),
    "quick": Profile(
        name="quick",
        description="The default: minutes on a 2-core CPU, numbers that still mean something.",
    ),
    "paper": Profile(
        name="paper",
        description="The seed's settings: 224 px ResNet18, 256 px CycleGAN (9 blocks, 64 filters); GPU.",
        metrics=MetricSettings(bootstrap=2000, isc_splits=10, kid_subset_size=1000),
    ),
}

DEFAULT_PROFILE = "quick"


class DataSpec(_Section):
    """One data source of a run: the registered source, the path it reads (None for a source
    that makes its own data, as the embedded cohort does) and its fully resolved settings."""

    dataset: str
    path: str | None = None
    settings: dict[str, Any] = {}
    # the name of this source within the cohort (``--data NAME=PATH``; the ``source`` stratum
    # when several sources form one cohort); empty for a run on one source
    source: str = ""


class RunConfig(_Section):
    """Everything a run depends on. Its hash is part of the run id.

    ``data`` holds the run's data sources with their resolved settings, and ``method_settings``
    every method's (class defaults, then the profile's, then the user's overrides), so run.json
    says exactly what the data and each method ran with. Configs written before data sources
    were registered (``profile.cohort``, ``data`` a path or null) are read as the source they
    ran on.
    """

    profile: Profile
    seed: int = 0
    # the seed of training alone (initialisation, data order): ``--train-seeds`` trains a method
    # several times on one split; None (left out of ``to_dict``, so earlier run ids stand): ``seed``
    train_seed: int | None = None
    data: tuple[DataSpec, ...] = Field(min_length=1)  # several: one cohort, each with its ``source`` name
    methods: tuple[str, ...] = ()
    device: str = "auto"
    output: str = "runs"
    inception_weights: str | None = None
    method_settings: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _read_old_shape(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("profile"), dict) and "cohort" in values["profile"]:
            return _upgraded_config(values)
        return values

    @model_validator(mode="before")
    @classmethod
    def _train_seed_of_seed(cls, values: Any) -> Any:
        """A train seed equal to the seed is the ordinary run: one config, one hash."""
        if isinstance(values, dict) and values.get("train_seed") is not None \
                and values["train_seed"] == values.get("seed", 0):
            return {k: v for k, v in values.items() if k != "train_seed"}
        return values

    @property
    def training_seed(self) -> int:
        """The seed every method's training starts from (``seed_everything``, ``FitContext.seed``)."""
        return self.seed if self.train_seed is None else self.train_seed

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if self.train_seed is None:
            del data["train_seed"]
        return data

    def short_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def get_profile(name: str) -> Profile:
    """Return a profile by name, with a did-you-mean error for unknown names."""
    from harness.registry import unknown_name_error

    if name not in PROFILES:
        raise unknown_name_error("profile", name, PROFILES)
    return PROFILES[name]


def apply_overrides(profile: Profile, overrides: Mapping[str, Any]) -> Profile:
    """Override settings, e.g. ``{"cohort": {"n_subjects": 8}}`` or ``{"cyclegan.epochs": 3}``.

    A section is the core's (split, metrics), a registered data source's settings section
    (``cohort`` for the embedded cohort, ``folder``, ...) or a registered method's name; each is
    validated against its settings model now, before any data is loaded.
    """
    from harness.registry import METHODS, unknown_name_error

    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            nested.setdefault(key, {}).update(value)
        elif "." in key:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
        else:
            raise SettingsError(f"setting {key!r} needs a section: SECTION.KEY=VALUE, where SECTION is "
                                f"{', '.join(CORE_SECTIONS)}, a data source's section or a method name")
    update: dict[str, Any] = {}
    methods = {k: dict(v) for k, v in profile.methods.items()}
    datasets = {k: dict(v) for k, v in profile.datasets.items()}
    sources = dataset_sections() if any(s not in CORE_SECTIONS for s in nested) else {}
    for section, values in nested.items():
        if section in CORE_SECTIONS:
            current = getattr(profile, section).model_dump()
            update[section] = validate_settings(section, CORE_SECTIONS[section], {**current, **values})
        elif section in sources:
            name = sources[section]
            merged = {**datasets.get(name, {}), **values}
            dataset_settings(name, profile.name, merged)  # fail now, before any data is loaded
            datasets[name] = merged
        elif section in METHODS:
            merged = {**methods.get(section, {}), **values}
            method_settings(section, profile.name, merged)  # fail now, before any data is loaded
            methods[section] = merged
        else:
            raise SettingsError(str(unknown_name_error("settings section", section,
                                                      [*CORE_SECTIONS, *sources, *METHODS.names()])))
    return profile.model_copy(update={**update, "datasets": datasets, "methods": methods})


def method_settings(name: str, profile_name: str, overrides: Mapping[str, Any] | None = None):
    """Method ``name``'s settings: class defaults < its ``profile_defaults[profile]`` < overrides."""
    from harness.registry import METHODS

    cls = METHODS.get(name)
    values = {**cls.profile_defaults.get(profile_name, {}), **(overrides or {})}
    return validate_settings(name, cls.Settings, values)


def resolve_method_settings(profile: Profile, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The resolved settings of ``names`` under ``profile`` as plain JSON-able dicts."""
    return {n: method_settings(n, profile.name, profile.methods.get(n)).model_dump(mode="json") for n in names}


def dataset_sections() -> dict[str, str]:
    """``--set`` section -> registered data source name (``cohort`` -> ``mni152-lesions``)."""
    from harness.registry import DATASETS

    return {DATASETS.get(n).settings_section(): n for n in DATASETS.names()}


def dataset_settings(name: str, profile_name: str, overrides: Mapping[str, Any] | None = None):
    """Data source ``name``'s settings: class defaults < its ``profile_defaults[profile]`` < overrides."""
    from harness.registry import DATASETS

    cls = DATASETS.get(name)
    values = {**cls.profile_defaults.get(profile_name, {}), **(overrides or {})}
    return validate_settings(cls.settings_section(), cls.Settings, values)


def resolve_dataset_settings(profile: Profile, name: str) -> dict[str, Any]:
    """Data source ``name``'s resolved settings under ``profile`` as a plain JSON-able dict."""
    return dataset_settings(name, profile.name, profile.datasets.get(name)).model_dump(mode="json")


def _upgraded_config(values: dict[str, Any]) -> dict[str, Any]:
    """A config from before data sources were registered, in today's shape: the cohort settings
    it held in ``profile.cohort`` become the embedded source's (or, for a folder run, the size
    images were loaded at when no method set one), and ``data`` (a path or null) a data source."""
    profile = dict(values["profile"])
    cohort = profile.pop("cohort")
    path = values.get("data")
    name, given = ("mni152-lesions", cohort) if path is None else ("folder", {"image_size": cohort["slice_size"]})
    defaults = dataset_settings(name, profile.get("name", "")).model_dump(mode="json")
    changed = {k: v for k, v in given.items() if defaults.get(k) != v}
    profile["datasets"] = {name: changed} if changed else {}
    settings = dataset_settings(name, profile.get("name", ""), changed).model_dump(mode="json")
    return {**values, "profile": profile, "data": [{"dataset": name, "path": path, "settings": settings}]}


def load_toml_overrides(path: str | Path) -> dict[str, Any]:
    if tomllib is None:
        raise RuntimeError("TOML config files need Python 3.11+")
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def parse_set_option(items: list[str]) -> dict[str, Any]:
    """Parse ``--set section.key=value`` pairs; values are JSON when they parse as JSON."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise SettingsError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
