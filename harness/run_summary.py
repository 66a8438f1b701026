"""The table a finished run prints: each method's test AUROC with its CI, AP with its chance level,
sensitivity/specificity at the validation threshold, status and time; the shortcut floors below."""

from __future__ import annotations

from typing import Any

from harness.results import FLOOR_METHOD, LR_FLOOR_METHOD
from harness.text_table import text_table

__all__ = ["summary_table"]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def summary_table(info: dict[str, Any], rows: list[dict]) -> str:
    """Plain-text table: method, AUROC [CI], AP (chance), sens/spec, status, time."""
    by = {(r["method"], r["metric"]): r for r in rows if r.get("domain") == "all" and r.get("split") == "test"}
    header = ["method", "AUROC [95% CI]", "AP (chance)", "sens/spec", "status", "time (s)"]
    lines = []
    kinds = {FLOOR_METHOD: "input feature", LR_FLOOR_METHOD: "input features, LR"}
    floor = {name: {"status": status} for name, status in kinds.items() if (name, "auroc") in by}
    for name, entry in {**info["methods"], **floor}.items():
        auroc = by.get((name, "auroc"), {})
        ci = (f" [{_fmt(auroc.get('ci_low'))}, {_fmt(auroc.get('ci_high'))}]"
              if auroc.get("ci_low") is not None else "")
        ap, chance = by.get((name, "ap"), {}), by.get((name, "ap_chance"), {})
        sens, spec = by.get((name, "sensitivity"), {}), by.get((name, "specificity"), {})
        total = sum(v for v in entry.get("timings", {}).values() if isinstance(v, (int, float)))
        lines.append([name, _fmt(auroc.get("value")) + ci,
                      f"{_fmt(ap.get('value'))} ({_fmt(chance.get('value'), 2)})",
                      f"{_fmt(sens.get('value'), 2)}/{_fmt(spec.get('value'), 2)}", entry["status"],
                      f"{total:.1f}"])
    return text_table(header, lines)
