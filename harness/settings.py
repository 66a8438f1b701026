"""Typed settings: the base model every method's settings extend, and readable validation errors.

A method owns its settings (a pydantic model next to its code, with per-profile defaults); the
core only resolves them: class defaults, then the profile's defaults, then the user's overrides.
A wrong type, an out-of-range value or an unknown key becomes one :class:`SettingsError` that names
the key, what was expected and the valid keys, before any data is loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["MethodSettings", "SettingsError", "validate_settings", "settings_table"]


class MethodSettings(BaseModel):
    """Base of every method's settings: frozen, unknown keys refused, values checked by type."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class SettingsError(ValueError):
    """A bad setting; the CLI prints it as one ``error:`` line and exits with 2."""


def validate_settings(section: str, model: type[BaseModel], values: Mapping[str, Any]) -> BaseModel:
    """``model(**values)``, with pydantic's errors rewritten as one line a user can act on."""
    try:
        return model(**dict(values))
    except ValidationError as exc:
        raise SettingsError(_explain(section, model, exc)) from None


def _explain(section: str, model: type[BaseModel], exc: ValidationError) -> str:
    fields = model.model_fields
    valid = ", ".join(fields)
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "?"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {section}.{close[0]}?" if close else ""
            problems.append(f"unknown setting {section}.{key}{hint} (valid keys: {valid})")
            continue
        if err["type"] == "value_error":  # a validator's own sentence (paths, hashes): keep it as written
            where = f"{section}.{key}" if err["loc"] else section
            problems.append(f"{where}: {err['ctx']['error']}")
            continue
        field = fields.get(str(err["loc"][0])) if err["loc"] else None
        expected = _type_name(field.annotation) if field is not None else "a valid value"
        problems.append(f"{section}.{key}={err.get('input')!r}: {err['msg'].lower()} "
                        f"(expected {expected})")
    return "; ".join(problems)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def settings_table(model: type[BaseModel], per_profile: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting: name, type, description and the default in each profile."""
    rows = []
    for name, field in model.model_fields.items():
        row: dict[str, Any] = {"name": name, "type": _type_name(field.annotation),
                               "description": field.description or ""}
        for profile, values in per_profile.items():
            row[profile] = values.get(name, field.default)
        rows.append(row)
    return rows
