"""Run configuration: the core's typed settings (cohort, split, metrics), named profiles (smoke,
quick, paper) and overrides; each method's own settings live beside its code.

A profile fixes every knob that changes numbers, so a result names its profile and the full
resolved config (``RunConfig.to_dict``) and can be reproduced from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.settings import SettingsError, validate_settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CohortSettings(_Section):
    """Size and difficulty of the embedded ``mni152-lesions`` cohort."""

    n_subjects: int = Field(48, ge=1)
    tumor_fraction: float = Field(0.6, ge=0.0, le=1.0)  # tumour subjects also give lesion-free slices
    slice_size: int = Field(128, ge=16)
    slices_per_subject: int = Field(24, ge=1)
    lesion_radius_mm: tuple[float, float] = (8.0, 22.0)
    lesion_contrast: float = Field(1.0, ge=0.0)
    # a slice is tumor when its lesion covers at least this share of its brain area; slices with
    # a smaller lesion are left out as ambiguous (they are neither clearly tumor nor healthy)
    min_lesion_fraction: float = Field(0.005, gt=0.0, lt=1.0)


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


CORE_SECTIONS: dict[str, type[_Section]] = {"cohort": CohortSettings, "split": SplitSettings,
                                            "metrics": MetricSettings}


class Profile(_Section):
    """A named bundle of the core's settings plus per-method overrides ({method: {key: value}}).

    Each method's own per-profile defaults live beside its code (``Method.profile_defaults``);
    ``methods`` holds only what a user changed on top of them.
    """

    name: str
    description: str
    cohort: CohortSettings = CohortSettings()
    split: SplitSettings = SplitSettings()
    metrics: MetricSettings = MetricSettings()
    methods: dict[str, dict[str, Any]] = {}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="Seconds per method; for tests and CI. Numbers are not meaningful.",
        cohort=CohortSettings(n_subjects=12, slice_size=64, slices_per_subject=12),
        metrics=MetricSettings(bootstrap=100, isc_splits=2, kid_subset_size=50),
    ),
    "quick": Profile(
        name="quick",
        description="The default: minutes on a 2-core CPU, numbers that still mean something.",
    ),
    "paper": Profile(
        name="paper",
        description="The seed's settings: 224 px ResNet18, 256 px CycleGAN (9 blocks, 64 filters); GPU.",
        cohort=CohortSettings(n_subjects=120, slice_size=256, slices_per_subject=32),
        metrics=MetricSettings(bootstrap=2000, isc_splits=10, kid_subset_size=1000),
    ),
}

DEFAULT_PROFILE = "quick"


class RunConfig(_Section):
    """Everything a run depends on. Its hash is part of the run id.

    ``method_settings`` holds every method's fully resolved settings (class defaults, then the
    profile's, then the user's overrides), so run.json says exactly what each method ran with.
    """

    profile: Profile
    seed: int = 0
    data: str | None = None  # None: the embedded cohort
    methods: tuple[str, ...] = ()
    device: str = "auto"
    output: str = "runs"
    inception_weights: str | None = None
    method_settings: dict[str, dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

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

    Core sections (cohort, split, metrics) are validated here; any other section must name a
    registered method and is validated against that method's settings model.
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
                                f"{', '.join(CORE_SECTIONS)} or a method name")
    update: dict[str, Any] = {}
    methods = {k: dict(v) for k, v in profile.methods.items()}
    for section, values in nested.items():
        if section in CORE_SECTIONS:
            current = getattr(profile, section).model_dump()
            update[section] = validate_settings(section, CORE_SECTIONS[section], {**current, **values})
        elif section in METHODS:
            merged = {**methods.get(section, {}), **values}
            method_settings(section, profile.name, merged)  # fail now, before any data is loaded
            methods[section] = merged
        else:
            raise SettingsError(str(unknown_name_error("settings section", section,
                                                      [*CORE_SECTIONS, *METHODS.names()])))
    return profile.model_copy(update={**update, "methods": methods})


def method_settings(name: str, profile_name: str, overrides: Mapping[str, Any] | None = None):
    """Method ``name``'s settings: class defaults < its ``profile_defaults[profile]`` < overrides."""
    from harness.registry import METHODS

    cls = METHODS.get(name)
    values = {**cls.profile_defaults.get(profile_name, {}), **(overrides or {})}
    return validate_settings(name, cls.Settings, values)


def resolve_method_settings(profile: Profile, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The resolved settings of ``names`` under ``profile`` as plain JSON-able dicts."""
    return {n: method_settings(n, profile.name, profile.methods.get(n)).model_dump(mode="json") for n in names}


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
