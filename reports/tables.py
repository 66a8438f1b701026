"""Metric rows -> markdown tables (run page, index, compare page).

Numbers are formatted here, once, so every page shows a metric the same way; any text that came
from a user (method names, notes, errors) goes through :func:`reports.escape.escape_text`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.metric_info import MetricInfo
from harness.registry import SUPERVISION_LABELS
from harness.results import STRATUM_PREFIX
from reports.escape import MyST, escape_text

__all__ = [
    "DASH", "SUPERVISION", "MetricIndex", "cell", "fmt", "fmt_ci", "fmt_compact", "fmt_mean_std", "fmt_metric",
    "fmt_std", "info_of", "md_table", "is_number", "short_hash",
]

DASH = MyST("—")
# run.json methods[name].supervision -> how the page names it
SUPERVISION = SUPERVISION_LABELS
_HASH = re.compile(r"[0-9a-f]{16,}(\+dirty)?")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any, digits: int = 3) -> MyST:
    """A number with fixed digits; missing or non-finite values become a dash."""
    return MyST(f"{value:.{digits}f}") if is_number(value) else DASH


def fmt_ci(row: dict[str, Any] | None, digits: int = 3) -> MyST:
    """``value [low, high]`` (the 95% CI) or the bare value when there is no CI."""
    if row is None or not is_number(row.get("value")):
        return DASH
    text = fmt(row["value"], digits)
    if is_number(row.get("ci_low")) and is_number(row.get("ci_high")):
        return MyST(f"{text} [{fmt(row['ci_low'], digits)}, {fmt(row['ci_high'], digits)}]")
    return text


def fmt_std(row: dict[str, Any], digits: int = 3) -> MyST | None:
    """A row's std as a table shows it: None where the row has none; a dash where it has one that
    measures no spread: one sample (n < 2), or a spread below float32 resolution of the value
    (every draw was the same set, e.g. KID subsets as large as the set), which printed as
    "± 0.0000" would read as a measured, perfect agreement."""
    std, value, n = row.get("std"), row.get("value"), row.get("n")
    if std is None:
        return None
    if not is_number(std) or std < 0 or (is_number(n) and n < 2) \
            or (is_number(value) and abs(std) < 1e-6 * abs(value)):
        return DASH
    return fmt(std, digits)


def fmt_mean_std(row: dict[str, Any] | None, digits: int = 3) -> MyST:
    if row is None or not is_number(row.get("value")):
        return DASH
    std = fmt_std(row, digits)
    return MyST(f"{fmt(row['value'], digits)} ± {std}") if std is not None else fmt(row["value"], digits)


def info_of(infos: Mapping[str, MetricInfo], metric: str) -> MetricInfo:
    """How the run says to show ``metric`` (metrics.json ``metrics``); a metric it does not
    describe shows under its id, with three digits."""
    return infos.get(metric) or MetricInfo(metric or "?", metric or "?", "other")


def fmt_metric(row: dict[str, Any] | None, info: MetricInfo) -> MyST:
    """The display of one metrics row, with the metric's digits: with its CI when it has one,
    else with its std."""
    digits = info.digits
    if row is not None and not (is_number(row.get("ci_low")) and is_number(row.get("ci_high"))):
        return fmt_mean_std(row, digits)
    return fmt_ci(row, digits)


def fmt_compact(row: dict[str, Any] | None, digits: int = 3) -> MyST:
    """A compact cell: the value, then its CI (or ± std) in a smaller span (class ``ci``)."""
    if row is None or not is_number(row.get("value")):
        return DASH
    text = fmt(row["value"], digits)
    low, high = row.get("ci_low"), row.get("ci_high")
    if is_number(low) and is_number(high):
        ci_digits = max(2, digits - 1)
        return MyST(f"{text} [{fmt(low, ci_digits)}–{fmt(high, ci_digits)}]{{.ci}}")
    std = fmt_std(row, digits)
    return MyST(f"{text} [± {std}]{{.ci}}") if std is not None else text


def short_hash(value: Any, keep: int = 12) -> MyST:
    """A long hex hash (commit, fingerprint) cut to ``keep`` digits, the full value on hover."""
    if value is None:
        return DASH
    text = str(value)
    if not _HASH.fullmatch(text) or len(text) <= keep + 2:
        return escape_text(text)
    dirty = "+dirty" if text.endswith("+dirty") else ""
    return MyST(f"{{abbr}}`{text[:keep]}…{dirty} ({text})`")


def cell(value: Any) -> MyST:
    """A table cell: MyST passes through, None is a dash, anything else is escaped text."""
    if isinstance(value, MyST):
        return value
    if value is None:
        return DASH
    return escape_text(value)


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> MyST:
    """A GFM pipe table; every cell escaped (``|`` included) unless already MyST."""
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return MyST("\n".join(lines))


class MetricIndex:
    """Metrics rows keyed by (method, split, domain, metric, feature_space)."""

    def __init__(self, rows: Iterable[dict[str, Any]]):
        self.rows: dict[tuple, dict[str, Any]] = {}
        for row in rows:
            self.rows[self.key(row)] = row

    @staticmethod
    def key(row: dict[str, Any]) -> tuple:
        return (str(row.get("method")), str(row.get("split") or "test"), str(row.get("domain") or "all"),
                str(row.get("metric")), row.get("feature_space"))

    def get(self, method: str, metric: str, domain: str = "all", feature_space: str | None = None,
            split: str = "test") -> dict[str, Any] | None:
        return self.rows.get((method, split, domain, metric, feature_space))

    def methods(self) -> list[str]:
        return sorted({k[0] for k in self.rows})

    def has(self, metric: str) -> bool:
        return any(k[3] == metric for k in self.rows)

    def generative_spaces(self, method: str) -> list[str]:
        """Feature spaces of the method's generative rows (the rows that name a feature space)."""
        return sorted({k[4] for k in self.rows if k[0] == method and k[4]})

    def strata(self) -> list[str]:
        """Names of the acquisition strata with detection rows (domain ``stratum:<name>``)."""
        return sorted({k[2][len(STRATUM_PREFIX):] for k in self.rows
                       if k[2].startswith(STRATUM_PREFIX) and k[3] == "auroc"})

    def generative_domains(self, method: str) -> list[str]:
        found = {k[2] for k in self.rows if k[0] == method and k[4]}
        order = {"tumor": 0, "no_tumor": 1}
        return sorted(found, key=lambda d: (order.get(d, 2), d))
