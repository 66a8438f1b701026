"""Run configuration: named profiles (smoke, quick, paper) as dataclasses, with overrides.

A profile fixes every knob that changes numbers, so a result names its profile and the full
resolved config (``RunConfig.to_dict``) and can be reproduced from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]


@dataclass(frozen=True)
class CohortSettings:
    """Size and difficulty of the embedded ``mni152-lesions`` cohort."""

    n_subjects: int = 48
    tumor_fraction: float = 0.6  # tumour subjects also give lesion-free slices: ~balanced labels
    slice_size: int = 128
    slices_per_subject: int = 24
    lesion_radius_mm: tuple[float, float] = (8.0, 22.0)
    lesion_contrast: float = 1.0
    # a slice is tumor when its lesion covers at least this share of its brain area; slices with
    # a smaller lesion are left out as ambiguous (they are neither clearly tumor nor healthy)
    min_lesion_fraction: float = 0.005


@dataclass(frozen=True)
class SplitSettings:
    """Fractions of subjects (or duplicate groups) per split; the rest is test."""

    train: float = 0.6
    val: float = 0.15
    test: float = 0.25


@dataclass(frozen=True)
class ResNetSettings:
    image_size: int = 128
    # quick, embedded cohort, seeds 0/1/2: test AUROC 0.972/0.927/0.955 with 18 epochs,
    # 0.925/0.937/0.953 with 12; about 2 min on a 2-core CPU
    epochs: int = 18
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 6
    # train on simulated acquisition differences too (bias field, resolution, ghosting)
    acquisition_augment: bool = True
    # bf16 autocast when training on CPU: 1.7x images/s at 128 and 224 px on a 2-core CPU
    # with P(tumor) within 5e-4 of fp32 (benchmarks/bench_train.py); GPU precision follows --amp
    cpu_bf16: bool = True


@dataclass(frozen=True)
class CycleGANSettings:
    """Defaults are the quick profile (tuned for a 2-core CPU); ``paper`` is the reference.

    Training runs ``epochs`` at ``lr`` then ``decay_epochs`` of linear decay to zero:
    ``epochs + decay_epochs`` epochs in all, each one pass over the larger domain.
    """

    image_size: int = 64
    ngf: int = 32
    ndf: int = 32
    n_blocks: int = 6
    epochs: int = 8
    decay_epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-4
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5
    pool_size: int = 50
    upsample: str = "resize"  # or "transpose" (the reference; checkerboards when undertrained)
    max_train_per_domain: int = 0  # 0: all
    sample_every: int = 4
    cpu_bf16: bool = True  # bf16 autocast when training on CPU (GPU precision follows --amp)


@dataclass(frozen=True)
class MetricSettings:
    bootstrap: int = 1000
    ci: float = 0.95
    isc_splits: int = 10
    kid_subset_size: int = 1000
    generative_max_images: int = 0  # 0: all test images of a domain


@dataclass(frozen=True)
class Profile:
    """A named bundle of settings; see :data:`PROFILES`."""

    name: str
    description: str
    cohort: CohortSettings = field(default_factory=CohortSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    resnet18: ResNetSettings = field(default_factory=ResNetSettings)
    cyclegan: CycleGANSettings = field(default_factory=CycleGANSettings)
    metrics: MetricSettings = field(default_factory=MetricSettings)
    num_workers: int = 0


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="Seconds per method; for tests and CI. Numbers are not meaningful.",
        cohort=CohortSettings(n_subjects=12, slice_size=64, slices_per_subject=12),
        resnet18=ResNetSettings(image_size=64, epochs=2, batch_size=16, patience=2),
        cyclegan=CycleGANSettings(
            image_size=32, ngf=8, ndf=8, n_blocks=2, epochs=2, decay_epochs=1, batch_size=4,
            max_train_per_domain=48, sample_every=1,
        ),
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
        resnet18=ResNetSettings(image_size=224, epochs=30, batch_size=32, lr=1e-4, patience=6),
        cyclegan=CycleGANSettings(
            image_size=256, ngf=64, ndf=64, n_blocks=9, epochs=100, decay_epochs=100, batch_size=1,
            sample_every=5, upsample="transpose", cpu_bf16=False,
        ),
        metrics=MetricSettings(bootstrap=2000, isc_splits=10, kid_subset_size=1000),
        num_workers=4,
    ),
}

DEFAULT_PROFILE = "quick"


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Its hash is part of the run id."""

    profile: Profile
    seed: int = 0
    data: str | None = None  # None: the embedded cohort
    methods: tuple[str, ...] = ()
    device: str = "auto"
    output: str = "runs"
    inception_weights: str | None = None
    pretrained: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def short_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:8]


def get_profile(name: str) -> Profile:
    """Return a profile by name, with a did-you-mean error for unknown names."""
    from harness.registry import unknown_name_error

    if name not in PROFILES:
        raise unknown_name_error("profile", name, PROFILES)
    return PROFILES[name]


def apply_overrides(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """Override nested settings, e.g. ``{"cyclegan": {"epochs": 3}}`` or ``{"cyclegan.epochs": 3}``."""
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        elif "." in key:
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = value
        else:
            top[key] = value
    for section, values in nested.items():
        if not hasattr(profile, section):
            raise ValueError(f"unknown config section {section!r}")
        current = getattr(profile, section)
        valid = {f.name for f in dataclasses.fields(current)}
        bad = set(values) - valid
        if bad:
            raise ValueError(f"unknown {section} setting(s): {', '.join(sorted(bad))}")
        coerced = {k: _coerce(getattr(current, k), v) for k, v in values.items()}
        top[section] = dataclasses.replace(current, **coerced)
    return dataclasses.replace(profile, **top)


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
            raise ValueError(f"--set expects section.key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _coerce(current: Any, value: Any) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    return value
