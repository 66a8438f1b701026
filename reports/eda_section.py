"""The dataset section of a run page, from ``eda/eda.json`` (see ``harness.data.eda``).

Known keys get their own headed tables (summary, shortcut audit, skipped files, duplicates);
every other key is shown by its shape (scalars, tables of rows, nested counts), so a key added,
renamed or missing in another EDA version never breaks the page.
"""

from __future__ import annotations

import json
from typing import Any

from reports.escape import MyST, escape_text
from reports.tables import DASH, is_number, md_table

__all__ = ["eda_blocks"]

MAX_ROWS = 200
MAX_DEPTH = 3
# shown as figures or only used to draw them
_HIDDEN = {"eda_version", "figures", "sample_ids"}
_KNOWN = ("dataset", "counts", "shortcut_audit", "skipped", "duplicates")


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _value(v: Any) -> MyST:
    """One cell: numbers formatted, nested values as compact (escaped, truncated) JSON."""
    if isinstance(v, bool):
        return MyST("yes" if v else "no")
    if isinstance(v, int):
        return MyST(str(v))
    if is_number(v):
        return MyST(f"{v:.4g}")
    if v is None:
        return DASH
    if isinstance(v, (list, dict)):
        text = json.dumps(v, sort_keys=True, default=str)
        return escape_text(text if len(text) <= 160 else text[:157] + "...")
    return escape_text(v)


def _rows_table(rows: list[Any]) -> MyST:
    """A list of dicts (or of lists) as a table, capped at MAX_ROWS with a count of the rest."""
    shown = rows[:MAX_ROWS]
    if all(isinstance(r, dict) for r in shown):
        header: list[str] = []
        for r in shown:
            header += [k for k in r if k not in header]
        table = md_table(header, [[_value(r.get(k)) for k in header] for r in shown])
    else:
        cells = [list(r) if isinstance(r, (list, tuple)) else [r] for r in shown]
        width = max(len(c) for c in cells)
        table = md_table([""] * width, [[_value(v) for v in c] + [DASH] * (width - len(c)) for c in cells])
    if len(rows) > MAX_ROWS:
        table = MyST(f"{table}\n\n{len(rows) - MAX_ROWS} more rows not shown (see eda/eda.json).")
    return table


def _block(value: Any, depth: int = 0) -> MyST:
    """Any JSON value, shown by its shape; long numeric series (histograms) are left to figures."""
    if isinstance(value, list):
        if not value:
            return MyST("None.")
        if all(_scalar(v) for v in value):
            if len(value) > 20 and all(is_number(v) for v in value):
                return MyST(f"{len(value)} values (see eda/eda.json).")
            return MyST(", ".join(_value(v) for v in value[:MAX_ROWS]))
        return _rows_table(value)
    if not isinstance(value, dict):
        return _value(value)
    if not value:
        return MyST("None.")
    parts: list[str] = []
    scalars = {k: v for k, v in value.items() if _scalar(v)}
    if scalars:
        parts.append(md_table(["", "value"], [[k, _value(v)] for k, v in scalars.items()]))
    inner_dicts = {k: v for k, v in value.items() if isinstance(v, dict) and v and all(_scalar(x) for x in v.values())}
    if len(inner_dicts) > 1 or (inner_dicts and len(inner_dicts) == len(value)):
        columns: list[str] = []
        for inner in inner_dicts.values():
            columns += [c for c in inner if c not in columns]
        parts.append(md_table([""] + columns, [[k] + [_value(inner.get(c)) for c in columns]
                                               for k, inner in inner_dicts.items()]))
    else:
        inner_dicts = {}
    for key, sub in value.items():
        if key in scalars or key in inner_dicts:
            continue
        body = _block(sub, depth + 1) if depth < MAX_DEPTH else _value(sub)
        parts.append(f"{MyST('**' + escape_text(key) + '**')}\n\n{body}")
    return MyST("\n\n".join(parts))


def _title(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _audit(audit: Any) -> MyST:
    """The shortcut audit: which non-anatomical features separate the labels on their own."""
    if not isinstance(audit, dict):
        return _block(audit)
    lead = []
    flagged = audit.get("flagged")
    if isinstance(flagged, list) and flagged:
        names = ", ".join(str(f.get("feature", f)) if isinstance(f, dict) else str(f) for f in flagged)
        lead.append(MyST(f":::{{warning}}\nFlagged: {escape_text(names)}. A classifier could tell the labels "
                         "apart by these features alone, without looking at anatomy.\n:::"))
    elif isinstance(flagged, list):
        lead.append(MyST("No feature was flagged."))
    rest = {k: v for k, v in audit.items() if k != "flagged"}
    return MyST("\n\n".join(lead + [_block(rest)]))


def _skipped(skipped: Any) -> MyST:
    if isinstance(skipped, list):  # a bare list of {path, reason} or [path, reason]
        skipped = {"files": [{"path": r[0], "reason": r[1]} if isinstance(r, (list, tuple)) and len(r) == 2
                             else r for r in skipped]}
    return _block(skipped)


def eda_blocks(eda: dict[str, Any] | None) -> list[tuple[str, MyST]]:
    """(heading, markdown) pairs for the dataset section: known keys first, then the rest."""
    if not eda:
        return []
    blocks: list[tuple[str, MyST]] = []
    summary = {k: v for k, v in eda.items() if _scalar(v) and k not in _HIDDEN and k not in _KNOWN}
    if isinstance(eda.get("dataset"), dict):
        summary = {**eda["dataset"], **summary}
    if summary:
        blocks.append(("Summary", _block(summary)))
    renderers = {"counts": ("Counts", _block), "shortcut_audit": ("Shortcut audit", _audit),
                 "skipped": ("Skipped files", _skipped), "duplicates": ("Duplicates", _block)}
    for key, (heading, render) in renderers.items():
        if key in eda:
            blocks.append((heading, render(eda[key])))
    for key, value in eda.items():
        if key not in _KNOWN and key not in _HIDDEN and not _scalar(value):
            blocks.append((_title(key), _block(value)))
    return blocks
