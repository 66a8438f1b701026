"""`python -m harness list [PATTERN]`: data sources and methods (each with its settings per
profile), metric suites (with their metrics) and profiles. Sources and methods that failed to load are listed with the reason."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from harness.config import DEFAULT_PROFILE, PROFILES
from harness.registry import DATASETS, METHODS, METRICS, VARIANT_SEPARATOR, metric_suites
from harness.settings import settings_table
from harness.text_table import text_table


def print_listing(pattern: str = "*") -> int:
    print("Datasets:")
    for name in DATASETS.names():
        _print_dataset(name)
    for name, error in DATASETS.load_errors.items():
        print(f"  {name:<16} NOT LOADED: {error}")
    names = [n for n in METHODS.names() if fnmatch.fnmatchcase(n, pattern)]
    print("Methods:" if pattern == "*" else f"Methods matching {pattern!r}:")
    if not names:
        print("  (none)")
    for name in names:
        _print_method(name)
    for name, error in METHODS.load_errors.items():
        print(f"  {name:<16} NOT LOADED: {error}")
    print("Metric suites (every suite whose needs a method meets runs on it):")
    for suite in metric_suites():
        metrics = ", ".join(f"{i.id} ({i.title})" for i in suite.infos)
        print(f"  {suite.name}  [{suite.scope}; needs {', '.join(sorted(suite.needs))}]\n    {metrics}")
    for name, error in METRICS.load_errors.items():
        print(f"  {name:<16} NOT LOADED: {error}")
    print("Profiles:")
    for name, profile in PROFILES.items():
        mark = " (default)" if name == DEFAULT_PROFILE else ""
        print(f"  {name:<16} {profile.description}{mark}")
    print("--data PATH reads PATH with the data source that recognises it; --dataset NAME names one.")
    print("Set any setting with --set SECTION.KEY=VALUE: a method's name, a data source's section "
          "(cohort, folder, ...), split or metrics.")
    return 0


def _print_dataset(name: str) -> None:
    cls = DATASETS.get(name)
    claims = f"--data: {cls.expects}" if cls.takes_path else cls.expects
    print(f"  {name}  [--set {cls.settings_section()}.KEY=VALUE; {claims}]")
    if cls.description:
        print(f"    {cls.description}")
    _print_settings(cls.settings_section(), cls.Settings, cls.profile_defaults)


def _print_method(name: str) -> None:
    cls = METHODS.get(name)
    print(f"  {name}  [{', '.join(sorted(cls.capabilities))}; supervision: {cls.supervision}]")
    if cls.description:
        print(f"    {cls.description}")
    if getattr(cls, "paper", ""):
        print(f"    paper: {cls.paper}")
    if getattr(cls, "departures", ""):
        print(f"    departs from it: {cls.departures}")
    for suffix, supervision in getattr(cls, "variants", {}).items():  # scored from the same fit, reported apart
        what = cls.variant_descriptions.get(suffix, "")
        print(f"    variant {name}{VARIANT_SEPARATOR}{suffix}  [supervision: {supervision}]{': ' + what if what else ''}")
    _print_settings(name, cls.Settings, cls.profile_defaults)


def _print_settings(section: str, model: type[BaseModel], defaults: Mapping[str, Mapping[str, Any]]) -> None:
    """One line per setting: SECTION.KEY, its type and its default in each profile."""
    rows = settings_table(model, {p: defaults.get(p, {}) for p in PROFILES})
    if rows:
        print(text_table(["setting", "type", *PROFILES],
                         [[f"{section}.{r['name']}", r["type"], *(_show(r[p]) for p in PROFILES)] for r in rows],
                         indent="    ", rule=False))


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
