"""A :class:`~harness.paper_tables.Table` as LaTeX (booktabs), CSV or markdown text.

Why written by hand and not through pandas' ``Styler.to_latex``: that needs jinja2 at a version
pandas accepts and escapes differently across pandas versions; a paper table is a dozen lines
whose escaping must be exact (an ``_`` in a method name or a ``%`` in a caption breaks the
document), so the rules are here, in one place, and tested.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

from harness.paper_tables import Table

__all__ = ["FORMATS", "latex_escape", "to_latex", "to_csv", "to_markdown", "render"]

# LaTeX's special characters in text mode, each to what prints it
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}
# characters the tables use that a default (pdf)LaTeX document cannot typeset as text
_LATEX_SYMBOLS = {"±": r"$\pm$", "—": "---", "–": "--", "Δ": r"$\Delta$", "−": "$-$", "↑": r"$\uparrow$",
                  "↓": r"$\downarrow$"}
_LATEX_CHARS = re.compile("|".join(map(re.escape, [*_LATEX_SPECIAL, *_LATEX_SYMBOLS])))
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")  # a minus sign before a number, not a hyphen in a word


def latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it verbatim: special characters escaped, ±/Δ/dashes as math or
    ligatures, and the minus of a negative number as a math minus (a hyphen is shorter)."""
    text = _NEGATIVE.sub("−", text)
    return _LATEX_CHARS.sub(lambda m: _LATEX_SPECIAL.get(m.group(), _LATEX_SYMBOLS.get(m.group(), "")), text)


def to_latex(table: Table) -> str:
    """A ``table`` float holding a booktabs ``tabular`` (``\\usepackage{booktabs}``): labels
    left-aligned, numbers right-aligned, the caption above."""
    spec = "l" * table.text_columns + "r" * (len(table.header) - table.text_columns)

    def line(cells: tuple[str, ...]) -> str:
        text = " & ".join(latex_escape(c) for c in cells) + r" \\"
        return "{}" + text if text.startswith("[") else text  # else the previous row's \\ reads [..] as its option

    return "\n".join([
        "% needs \\usepackage{booktabs}; written by python -m harness export",
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(table.caption)}}}",
        rf"\label{{tab:harness-{table.name}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        line(table.header),
        r"\midrule",
        *(line(row) for row in table.rows),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]) + "\n"


def to_csv(table: Table) -> str:
    """The header and rows (no caption: a CSV file is the table alone)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """A pipe table with the caption under it as pandoc's ``Table:`` line."""
    align = ["---"] * table.text_columns + ["--:"] * (len(table.header) - table.text_columns)
    lines = ["| " + " | ".join(_md_cell(c) for c in table.header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join([*lines, "", f"Table: {_md_cell(table.caption)}"]) + "\n"


FORMATS: dict[str, Callable[[Table], str]] = {"latex": to_latex, "csv": to_csv, "markdown": to_markdown}


def render(table: Table, fmt: str) -> str:
    """``table`` in format ``fmt`` of :data:`FORMATS`; ``ValueError`` for another."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt](table)
