"""``python -m harness export RUN... --format latex|csv|markdown --table NAME [--out FILE]``.

Why: the numbers in a paper should be the run's, not copied by hand. Exporting computes
nothing new: the runs are read with :func:`harness.load_results`, the table is chosen by
:mod:`harness.paper_tables` and written by :mod:`harness.table_formats`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.atomic import atomic_write_bytes
from harness.paper_tables import TABLES, build_table
from harness.results_frames import load_results
from harness.table_formats import FORMATS, render

__all__ = ["export_command", "export_text"]


def export_text(runs: list[str], table: str, fmt: str) -> str:
    """The table ``table`` of the runs ``runs`` in format ``fmt``. Bad names raise ``ValueError``
    and paths that hold no run ``FileNotFoundError``, before any run is read."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return render(build_table(load_results(*runs), table), fmt)


def export_command(args: argparse.Namespace) -> int:
    """Write the table to ``--out`` (atomically) or print it; the CLI turns errors into one line."""
    text = export_text(args.runs, args.table, args.format)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise ValueError(f"--out {args.out}: is a folder; give a file name")
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, text.encode("utf-8"))
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
