"""The notes of a page section as footnotes: each distinct note once, marked where it applies.

Why: a metrics row's note is a chain of clauses ("extractor ...; n=24 real and 24 translated ...;
resolution: ...") and the rows of one table share most of them, so a list of each row's note
repeats the same sentence for every cell. Here a section's tables collect the notes of the cells
that show a metrics row; each note is split into its clauses; equal clauses become one footnote,
and clauses that differ only in their numbers ("threshold=0.18 chosen on validation",
"threshold=0.87 ...") become one footnote that lists each value with the rows it belongs to. A
footnote is marked in a column's header when it concerns every cell of that column, at a row's
label when it concerns the whole row, in the first header cell when it concerns the whole table,
and else in each cell it concerns. Labels are prefixed per section, so several sections of a page
never share one; MyST numbers them in the order they are defined (``myst_footnote_sort = False``
in docs/conf.py keeps each definition under its table).
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reports.escape import MyST, escape_note
from reports.tables import cell

__all__ = ["NotedTable", "clauses", "footnoted"]

# A number standing alone ("0.18", "-3", "1e-05", "24"), not part of a name ("mri-resnet18",
# "64x64", "p90", "v1.2").
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?!\.?\w)")
_SLOT = "\ue000"  # where a number stood in a clause's template
_VAR = re.compile("\ue001(\\d+)\ue002")
HEADER = -1  # the row index of a table's header


def clauses(note: str | None) -> list[str]:
    """A note's clauses: split at each "; " outside parentheses and brackets."""
    if not note:
        return []
    parts, depth, start = [], 0, 0
    text = str(note)
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0 and text[i + 1:i + 2] in (" ", ""):
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass
class NotedTable:
    """A table whose cells carry notes. ``titles``: the column titles as plain text (escaped
    when rendered); ``label_col``: the column that names a row and takes a whole row's marker."""

    titles: list[str]
    label_col: int = 0
    columns: list[str] | None = None  # the columns' names in the footnotes' lists (default: the titles)
    rows: list[list[Any]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # each row's name in the footnotes' lists
    shown: set[tuple[int, int]] = field(default_factory=set)  # cells that show a metrics row
    notes: dict[tuple[int, int], list[str]] = field(default_factory=lambda: defaultdict(list))

    def add_row(self, cells: Sequence[Any], name: str) -> int:
        self.rows.append(list(cells))
        self.names.append(name)
        return len(self.rows) - 1

    def attach(self, row: int, col: int, note: str | Sequence[str] | None) -> None:
        """Cell (row, col) shows a metrics row; ``note`` (a note, or its clauses) concerns it."""
        self.shown.add((row, col))
        for clause in clauses(note) if isinstance(note, str) or note is None else note:
            if clause not in self.notes[(row, col)]:
                self.notes[(row, col)].append(clause)


@dataclass
class _Group:
    """The clauses of one template: each text (variant) and the cells, per table, it concerns."""

    variants: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    def cells(self) -> set[tuple[int, int, int]]:
        return {c for where in self.variants.values() for c in where}


def _template(clause: str) -> str:
    return _NUMBER.sub(_SLOT, clause)


def _markers(table: NotedTable, covered: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """Where a footnote concerning ``covered`` (cells of ``table``) is marked: the first header
    cell for the whole table, a header for a whole column, a row's label for a whole row, else each
    cell. A column or row of one shown cell is marked in that cell."""
    if len(table.shown) > 1 and covered >= table.shown:
        return {(HEADER, table.label_col)}
    marks, left = set(), set(covered)
    for col in sorted({c for _, c in table.shown}):
        column = {s for s in table.shown if s[1] == col}
        if len(column) > 1 and column <= covered:
            marks.add((HEADER, col))
            left -= column
    for row in sorted({r for r, _ in left}):
        whole = {s for s in table.shown if s[0] == row}
        if len(whole) > 1 and whole <= covered:
            marks.add((row, table.label_col))
            left -= whole
    return marks | left


def _labels(tables: Sequence[NotedTable], group: _Group) -> dict[str, str]:
    """Per variant, the names of the cells it concerns: their rows where each row has one variant,
    else their columns where each column has one, else both ("Sensitivity of dae FLAIR")."""
    def name(t: int, r: int, c: int, how: str) -> str:
        row, col = tables[t].names[r], (tables[t].columns or tables[t].titles)[c]
        return row if how == "row" else col if how == "col" else f"{col} of {row}"

    def single(key: Callable[[tuple[int, int, int]], Any]) -> bool:
        seen: dict[Any, str] = {}
        return all(seen.setdefault(key(cell), text) == text for text, cells in group.variants.items() for cell in cells)

    how = "row" if single(lambda x: (x[0], x[1])) else "col" if single(lambda x: (x[0], x[2])) else "both"
    return {text: ", ".join(dict.fromkeys(name(*cell, how) for cell in cells)) for text, cells in group.variants.items()}


def _text(tables: Sequence[NotedTable], group: _Group) -> MyST:
    """A footnote's text: the clause, or the clauses' template with a letter for each number that
    differs and, per variant, those numbers and the rows (or columns) they belong to."""
    texts = list(group.variants)
    if len(texts) == 1:
        return escape_note(texts[0])
    numbers = [_NUMBER.findall(t) for t in texts]
    varying = [i for i in range(len(numbers[0])) if len({n[i] for n in numbers}) > 1]
    letters = {i: (string.ascii_lowercase[k] if k < 26 else f"x{k}") for k, i in enumerate(varying)}
    pieces, count = [], 0

    def slot(match: re.Match[str]) -> str:
        nonlocal count
        index, count = count, count + 1
        return f"\ue001{index}\ue002" if index in letters else numbers[0][index]

    pieces.append(_NUMBER.sub(slot, texts[0]))
    template = _VAR.sub(lambda m: f"*{letters[int(m.group(1))]}*", escape_note(pieces[0]))
    labels = _labels(tables, group)
    listed = [f"{', '.join(nums[i] for i in varying)} ({labels[text]})" for text, nums in zip(texts, numbers)]
    head = ", ".join(f"*{letters[i]}*" for i in varying)
    return MyST(f"{template}; {head}: {escape_note('; '.join(listed))}")


def footnoted(tables: Sequence[NotedTable], prefix: str) -> list[tuple[MyST, list[MyST]]]:
    """Each table as markdown with its footnote markers, and the footnotes defined under it (those
    first marked in it). ``prefix``: the section's label prefix, unique on the page."""
    groups: dict[str, _Group] = {}
    for t, table in enumerate(tables):
        for (r, c), found in table.notes.items():
            for clause in found:
                where = groups.setdefault(_template(clause), _Group()).variants.setdefault(clause, [])
                where.append((t, r, c))
    spots = {}  # template -> the (table, row, col) cells its footnote is marked in
    for key, group in groups.items():
        cells = group.cells()
        spots[key] = sorted((t, r, c) for t in {t for t, _, _ in cells}
                            for r, c in _markers(tables[t], {(r, c) for tt, r, c in cells if tt == t}))
    # clauses marked in the same cells read as one note ("higher is better; threshold 10.4"), with
    # one list of the numbers that change from cell to cell
    merged: dict[tuple[tuple[int, int, int], ...], list[_Group]] = {}
    for key in sorted(groups, key=lambda key: spots[key][0]):
        merged.setdefault(tuple(spots[key]), []).append(groups[key])
    notes = [(list(where), _text(tables, _joined(members))) for where, members in merged.items()]
    marks: dict[tuple[int, int, int], list[str]] = defaultdict(list)  # (table, row, col) -> labels, in order
    defined: list[list[MyST]] = [[] for _ in tables]
    for k, (cells, text) in enumerate(notes, start=1):
        label = f"{prefix}-{k}"
        for spot in cells:
            marks[spot].append(label)
        defined[cells[0][0]].append(MyST(f"[^{label}]: {text}"))
    return [(_markdown(table, {(r, c): labels for (tt, r, c), labels in marks.items() if tt == t}), defined[t])
            for t, table in enumerate(tables)]


def _joined(groups: list[_Group]) -> _Group:
    """Groups marked in the same cells as one: a variant per distinct combination of the groups'
    variants over the cells, its text their clauses joined."""
    if len(groups) == 1:
        return groups[0]
    text_of = [{cell: text for text, cells in g.variants.items() for cell in cells} for g in groups]
    joined = _Group()
    for cell in sorted(set().union(*(g.cells() for g in groups))):
        text = "; ".join(texts[cell] for texts in text_of if cell in texts)
        joined.variants.setdefault(text, []).append(cell)
    return joined


def _markdown(table: NotedTable, marks: dict[tuple[int, int], list[str]]) -> MyST:
    """The table as a GFM pipe table, each cell followed by its footnote markers."""
    def marked(r: int, c: int, value: Any) -> str:
        return cell(value) + "".join(f"[^{label}]" for label in marks.get((r, c), []))

    lines = ["| " + " | ".join(marked(HEADER, c, title) for c, title in enumerate(table.titles)) + " |",
             "|" + "---|" * len(table.titles)]
    lines += ["| " + " | ".join(marked(r, c, v) for c, v in enumerate(row)) + " |" for r, row in enumerate(table.rows)]
    return MyST("\n".join(lines))
