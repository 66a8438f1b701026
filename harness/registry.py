"""A small generic registry with lazy entry points and did-you-mean errors.

Built-in methods register by decorator when their module is imported; third-party methods
register through the entry-point group ``harness.methods`` and are loaded only when the
registry is first read. Metric suites (:mod:`harness.metrics.suite`) work the same way through
``METRICS`` and the group ``harness.metrics``.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

METHOD_ENTRY_POINT_GROUP = "harness.methods"
BUILTIN_METHOD_MODULES = ("baselines.resnet18", "baselines.intensity", "generative.cyclegan",
                          "generative.autoencoder", "generative.dae", "generative.gaussian_ddpm",
                          "generative.anoddpm", "generative.pddpm", "baselines.patchcore")
# A built-in method that fails to import is recorded in ``METHODS.load_errors`` (and shown by
# `list`), never skipped silently: a missing optional dependency must say which it is.


class UnknownNameError(KeyError):
    """An unknown method, dataset or profile name; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.75)  # only names that are close
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "(none registered)"
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}")


class Registry(Generic[T]):
    """Name -> factory mapping with optional lazy loaders run on first lookup."""

    def __init__(self, kind: str, loaders: Iterable[Callable[[], None]] = ()) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loaders = list(loaders)
        self._loaded = False
        self.load_errors: dict[str, str] = {}

    def register(self, name: str, item: T | None = None):
        """Register ``item`` under ``name``; usable as ``@registry.register("name")``."""

        def add(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add(item) if item is not None else add

    def unregister(self, name: str) -> None:
        self._items.pop(name, None)

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for loader in self._loaders:
            loader()

    def get(self, name: str) -> T:
        self._ensure_loaded()
        if name not in self._items:
            raise unknown_name_error(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items

    def import_builtins(self, modules: Iterable[str]) -> None:
        """Import each module (its entries register by decorator). A module that fails is recorded
        in ``load_errors``, not raised: one broken entry must not hide the others, and `list` says why."""
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:
                self.load_errors[module] = f"{type(exc).__name__}: {exc}"

    def load_entry_points(self, group: str, register: Callable[[str], Callable[[T], T]]) -> None:
        """Register each entry point of ``group`` through ``register(name)`` (which validates it);
        a plugin that fails to load or validate is recorded in ``load_errors``, never raised."""
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if self._items.get(ep.name) is not obj:
                    register(ep.name)(obj)
            except Exception as exc:
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"


METHODS: Registry = Registry("method", loaders=[
    lambda: METHODS.import_builtins(BUILTIN_METHOD_MODULES),
    lambda: METHODS.load_entry_points(METHOD_ENTRY_POINT_GROUP, register_method)])

# What a method may declare (harness.api re-exports both). Capabilities: scores: per-image
# scores; maps: per-pixel maps; translates: translate(images, to_domain); features: can serve as
# the MRI-domain feature extractor for FID/KID (Method.feature_extractor); distributed: under
# torchrun, fit trains on every process with DDP (FitContext.distributed).
CAPABILITIES = frozenset({"scores", "maps", "translates", "features", "distributed"})
# what a method learns from: labelled images and masks, image labels only, healthy images only,
# nothing; "+val_masks": a variant that also chose its scorer with the validation lesion masks
SUPERVISION = ("supervised", "image_labels", "healthy_only", "none", "image_labels+val_masks",
               "healthy_only+val_masks", "none+val_masks")
# how tables name each (the run page, `harness export`, `list`): one wording everywhere
SUPERVISION_LABELS = {"supervised": "supervised", "image_labels": "image labels", "healthy_only": "healthy only",
                      "none": "none", "image_labels+val_masks": "image labels + validation masks",
                      "healthy_only+val_masks": "healthy only + validation masks", "none+val_masks": "validation masks"}
# a method's variant (Method.variants) is reported as "<method>+<suffix>", e.g. "dae+tuned"
VARIANT_SEPARATOR = "+"
_VARIANT_SUFFIX = re.compile(r"[a-z0-9][a-z0-9_-]*")


def split_variant(name: str) -> tuple[str, str | None]:
    """("dae", "tuned") for "dae+tuned", ("dae", None) for "dae"."""
    base, sep, variant = name.partition(VARIANT_SEPARATOR)
    return (base, variant) if sep else (name, None)


def method_variants(name: str) -> dict[str, str]:
    """The variants of registered method ``name`` as reported names -> their supervision."""
    return {f"{name}{VARIANT_SEPARATOR}{suffix}": sup for suffix, sup in METHODS.get(name).variants.items()}


def _did_you_mean(value: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, sorted(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_method_traits(name: str, cls: object) -> None:
    """Refuse a method whose capabilities or supervision the runner would not recognise: a typo
    such as "map" would otherwise silently drop its pixel metrics."""
    capabilities = getattr(cls, "capabilities", None)
    valid = ", ".join(sorted(CAPABILITIES))
    if not isinstance(capabilities, (set, frozenset, tuple, list)) or not all(isinstance(c, str) for c in capabilities):
        raise ValueError(f"method {name!r}: capabilities must be a set of strings, got {capabilities!r}; "
                         f"valid capabilities: {valid}")
    for capability in sorted(set(capabilities) - CAPABILITIES):
        raise ValueError(f"method {name!r}: unknown capability {capability!r}{_did_you_mean(capability, CAPABILITIES)}; "
                         f"valid capabilities: {valid}")
    supervision = getattr(cls, "supervision", None)
    if supervision not in SUPERVISION:
        hint = _did_you_mean(supervision, SUPERVISION) if isinstance(supervision, str) else ""
        raise ValueError(f"method {name!r}: unknown supervision {supervision!r}{hint}; "
                         f"valid supervision values: {', '.join(SUPERVISION)}")
    if VARIANT_SEPARATOR in name:
        raise ValueError(f"method {name!r}: a method name cannot contain {VARIANT_SEPARATOR!r}, which names its "
                         f"variants (e.g. 'dae+tuned')")
    variants = getattr(cls, "variants", {})
    if not isinstance(variants, Mapping):
        raise ValueError(f"method {name!r}: variants must map a suffix to its supervision, got {variants!r}")
    for suffix, sup in variants.items():
        if not isinstance(suffix, str) or not _VARIANT_SUFFIX.fullmatch(suffix):
            raise ValueError(f"method {name!r}: variant suffix {suffix!r} must be lower-case letters, digits, "
                             f"'_' or '-'")
        if sup not in SUPERVISION:
            hint = _did_you_mean(sup, SUPERVISION) if isinstance(sup, str) else ""
            raise ValueError(f"method {name!r}: variant {suffix!r} has unknown supervision {sup!r}{hint}; "
                             f"valid supervision values: {', '.join(SUPERVISION)}")


def register_method(name: str):
    """Decorator for a :class:`harness.api.Method` subclass; unknown capabilities or supervision
    fail here, naming the valid values."""

    def add(cls):
        _check_method_traits(name, cls)
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return add


# ---------------------------------------------------------------- metric suites

METRIC_ENTRY_POINT_GROUP = "harness.metrics"
# in the order the runner runs them (and metrics.json lists their rows); plugins follow, by name
BUILTIN_METRIC_MODULES = ("harness.metrics.detection_suite", "harness.metrics.localisation_suite",
                          "harness.metrics.generative_suite", "harness.metrics.fidelity_suite",
                          "harness.metrics.comparison_suite",
                          "harness.metrics.volume_suite")


METRICS: Registry = Registry("metric suite", loaders=[
    lambda: METRICS.import_builtins(BUILTIN_METRIC_MODULES),
    lambda: METRICS.load_entry_points(METRIC_ENTRY_POINT_GROUP, register_metric_suite)])


def register_metric_suite(name: str):
    """Decorator for a :class:`harness.metrics.suite.MetricSuite` subclass; an invalid suite
    (unknown needs, missing or conflicting infos) fails here, with the reason."""

    def add(cls):
        check = getattr(cls, "validate_registration", None)
        if check is None:
            raise TypeError(f"metric suite {name!r}: {cls!r} is not a harness.metrics.suite.MetricSuite subclass")
        check(name, [other for key, other in METRICS._items.items() if key != name])
        cls.name = name
        METRICS.register(name, cls)
        return cls

    return add


def metric_suites() -> list:
    """Every registered metric suite: the built-ins in their declared order, then the others by name."""
    suites = {name: METRICS.get(name) for name in METRICS.names()}
    builtin = {module: i for i, module in enumerate(BUILTIN_METRIC_MODULES)}

    def order(name: str) -> tuple[int, str]:
        return builtin.get(suites[name].__module__, len(builtin)), name

    return [suites[name] for name in sorted(suites, key=order)]


# ---------------------------------------------------------------- data sources

DATASET_ENTRY_POINT_GROUP = "harness.datasets"
BUILTIN_DATASET_MODULES = ("harness.data.embedded", "harness.data.folders", "harness.data.volumes")


DATASETS: Registry = Registry("dataset", loaders=[
    lambda: DATASETS.import_builtins(BUILTIN_DATASET_MODULES),
    lambda: DATASETS.load_entry_points(DATASET_ENTRY_POINT_GROUP, register_dataset)])


def register_dataset(name: str):
    """Decorator for a :class:`harness.data.sources.DatasetSource` subclass; an invalid source
    (no ``open``, a bad settings section, profile defaults its settings refuse) fails here."""

    def add(cls):
        check = getattr(cls, "validate_registration", None)
        if check is None:
            raise TypeError(f"dataset {name!r}: {cls!r} is not a harness.data.sources.DatasetSource subclass")
        check(name)
        cls.name = name
        DATASETS.register(name, cls)
        return cls

    return add
