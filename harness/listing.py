"""`python -m harness list [PATTERN]`: datasets, methods (capabilities, supervision, settings per
profile) and profiles. Methods that failed to load are listed with the reason."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from harness.config import DEFAULT_PROFILE, PROFILES
from harness.registry import METHODS
from harness.settings import settings_table


def print_listing(pattern: str = "*") -> int:
    from harness.data.sources import DATASETS

    print("Datasets:")
    for name, description in DATASETS.items():
        print(f"  {name:<16} {description}")
    names = [n for n in METHODS.names() if fnmatch.fnmatchcase(n, pattern)]
    print("Methods:" if pattern == "*" else f"Methods matching {pattern!r}:")
    if not names:
        print("  (none)")
    for name in names:
        _print_method(name)
    for name, error in METHODS.load_errors.items():
        print(f"  {name:<16} NOT LOADED: {error}")
    print("Profiles:")
    for name, profile in PROFILES.items():
        mark = " (default)" if name == DEFAULT_PROFILE else ""
        print(f"  {name:<16} {profile.description}{mark}")
    print("Set any setting with --set METHOD.KEY=VALUE (or SECTION.KEY=VALUE for cohort, split, metrics).")
    return 0


def _print_method(name: str) -> None:
    cls = METHODS.get(name)
    print(f"  {name}  [{', '.join(sorted(cls.capabilities))}; supervision: {cls.supervision}]")
    if cls.description:
        print(f"    {cls.description}")
    per_profile = {p: cls.profile_defaults.get(p, {}) for p in PROFILES}
    rows = settings_table(cls.Settings, per_profile)
    if not rows:
        return
    header = ["setting", "type", *PROFILES]
    table = [[f"{name}.{r['name']}", r["type"], *(_show(r[p]) for p in PROFILES)] for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        print("    " + "  ".join(f"{cell:<{w}}" for cell, w in zip(line, widths)).rstrip())


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value
