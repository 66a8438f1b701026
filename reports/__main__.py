"""``python -m reports``: render ``runs/`` into the site without loading the harness's ML stack.

``python -m harness report`` does the same through the harness CLI, which imports torch; the
docs build (``tox -e docs``) uses this entry so its environment needs no torch at all.
"""

from __future__ import annotations

import argparse
import sys

from reports.render import report_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    parser.add_argument("--out", default="docs/reports", help="where the pages go (default: docs/reports)")
    args = parser.parse_args(argv)
    try:
        return report_command(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
