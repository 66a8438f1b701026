"""The one plain-text table printer of the command line (run summaries, seed spreads, grids, ``list``).

Why one: every table the CLI prints should line up the same way and be changed in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None,
               indent: str = "", rule: bool = True) -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the header (``rule``), trailing
    blanks stripped; ``title`` goes on its own line above. Cells are shown with ``str``."""
    table = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]

    def line(cells: Sequence[str]) -> str:
        return (indent + "  ".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()

    lines = [line(table[0])]
    if rule:
        lines.append(line(["-" * w for w in widths]))
    lines += [line(r) for r in table[1:]]
    return "\n".join(([title] if title else []) + lines)
