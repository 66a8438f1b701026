"""`python -m harness list`: datasets, methods (with capabilities) and profiles."""

from __future__ import annotations

from harness.config import DEFAULT_PROFILE, PROFILES
from harness.registry import METHODS


def print_listing() -> int:
    from harness.data.sources import DATASETS

    print("Datasets:")
    for name, description in DATASETS.items():
        print(f"  {name:<16} {description}")
    print("Methods:")
    names = METHODS.names()
    if not names:
        print("  (none registered)")
    for name in names:
        cls = METHODS.get(name)
        caps = ", ".join(sorted(getattr(cls, "capabilities", ())))
        print(f"  {name:<16} [{caps}] {getattr(cls, 'description', '')}")
    for name, error in METHODS.load_errors.items():
        print(f"  {name:<16} NOT LOADED: {error}")
    print("Profiles:")
    for name, profile in PROFILES.items():
        mark = " (default)" if name == DEFAULT_PROFILE else ""
        print(f"  {name:<16} {profile.description}{mark}")
    return 0
