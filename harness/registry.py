"""A small generic registry with lazy entry points and did-you-mean errors.

Built-in methods register by decorator when their module is imported; third-party methods
register through the entry-point group ``harness.methods`` and are loaded only when the
registry is first read.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

METHOD_ENTRY_POINT_GROUP = "harness.methods"
BUILTIN_METHOD_MODULES = ("baselines.resnet18", "baselines.intensity", "generative.cyclegan",
                          "generative.autoencoder", "generative.dae", "generative.ddpm")
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


def _load_builtin_methods() -> None:
    for module in BUILTIN_METHOD_MODULES:
        try:
            importlib.import_module(module)
        except Exception as exc:  # one broken method must not hide the others; `list` shows why
            METHODS.load_errors[module] = f"{type(exc).__name__}: {exc}"


def _load_entry_point_methods() -> None:
    for ep in entry_points(group=METHOD_ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not hide the built-in methods
            METHODS.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        if ep.name not in METHODS._items:
            if not getattr(obj, "name", ""):
                obj.name = ep.name  # what the decorator does for built-in methods
            METHODS.register(ep.name, obj)


METHODS: Registry = Registry("method", loaders=[_load_builtin_methods, _load_entry_point_methods])


def register_method(name: str):
    """Decorator for a :class:`harness.api.Method` subclass."""

    def add(cls):
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return add
