"""Command line: ``python -m harness {run,list,data,report,compare,weights,grid,export}``.

Each sub-command imports its implementation lazily so ``--help`` and ``list`` stay fast.
Expected failures (bad paths, unusable datasets, unknown names) print one ``error:`` line and
exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import __version__
from harness.config import DEFAULT_PROFILE, PROFILES


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="PATH", action="append", default=None,
                   help="your data; the data source that recognises PATH reads it (a folder of images: "
                        "Kaggle layouts work as they come; a folder of NIfTI volumes: BraTS, IXI, ...); "
                        "repeat as --data NAME=PATH for several sources in one cohort (--data brats=PATH "
                        "--data ixi=PATH); default: the embedded mni152-lesions cohort")
    p.add_argument("--dataset", metavar="NAME", default=None,
                   help="the data source by name (see `list`), when several or none recognise --data")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (default {DEFAULT_PROFILE})")
    p.add_argument("--seed", type=int, default=0, help="seed for data generation, splits and training (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a setting of the core (split, metrics), of a data source (cohort, "
                        "folder, ...) or of any method, e.g. --set cyclegan.epochs=3 (repeatable; `list` "
                        "shows every setting)")
    p.add_argument("--config", metavar="TOML", default=None, help="TOML file of profile overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark harness for anomaly detection in brain MRI.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run methods on the standard splits and write runs/<run_id>/")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every registered method")
    which.add_argument("--method", action="append", default=[], metavar="NAME", help="a method (repeatable)")
    _add_data_options(run)
    run.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    run.add_argument("--output", default="runs", metavar="DIR", help="where run folders go (default runs/)")
    run.add_argument("--seeds", type=int, nargs="+", metavar="N", default=None,
                     help="one run per seed (instead of --seed), then the mean, sd and range across them and "
                          "the paired tests across seeds")
    run.add_argument("--train-seeds", type=int, metavar="K", default=None,
                     help="train each method K times on each split (--seed or --seeds): other initialisation "
                          "and data order, same data; the summary then tells training noise from split noise")
    run.add_argument("--resume", metavar="RUN_ID", default=None, help="continue an interrupted run")
    run.add_argument("--inception-weights", metavar="PATH", default=None,
                     help="torch-fidelity Inception-v3 weights file (else the torch hub cache)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    listing = sub.add_parser("list", help="list datasets, methods (capabilities, supervision, settings) and profiles")
    listing.add_argument("pattern", nargs="?", default="*",
                         help="shell-style filter on method names, e.g. 'cycle*' (default: all)")

    data = sub.add_parser("data", help="dataset tools: eda, splits, export")
    data_sub = data.add_subparsers(dest="data_command", metavar="TOOL")
    eda = data_sub.add_parser("eda", help="exploratory data analysis with a shortcut audit")
    _add_data_options(eda)
    eda.add_argument("--out", default="eda", metavar="DIR", help="output folder (default eda/)")
    splits = data_sub.add_parser("splits", help="make the seeded, de-duplicated split and print its hash")
    _add_data_options(splits)
    splits.add_argument("--out", default=None, metavar="CSV", help="write the manifest CSV here")
    export = data_sub.add_parser("export", help="write the embedded cohort as NIfTI volumes (brats: lesion "
                                 "subjects with seg files; ixi: lesion-free subjects; generic: all)")
    export.add_argument("out", metavar="DIR")
    export.add_argument("--layout", choices=("brats", "ixi", "generic"), required=True)
    export.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (the cohort's size)")
    export.add_argument("--seed", type=int, default=0, help="the cohort's seed (default 0)")
    export.add_argument("--set", dest="overrides", action="append", default=[], metavar="cohort.KEY=VALUE")
    export.add_argument("--config", metavar="TOML", default=None)

    report = sub.add_parser("report", help="render runs into MyST pages for the Sphinx site")
    report.add_argument("--runs", default="runs", metavar="DIR")
    report.add_argument("--out", default="docs/reports", metavar="DIR")

    compare = sub.add_parser("compare", help="compare two runs (paired on shared test images) into "
                             "RUNS/compares/ and render its page")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.add_argument("--runs", default="runs", metavar="DIR")
    compare.add_argument("--out", default="docs/reports", metavar="DIR")

    weights = sub.add_parser("weights", help="show which model weights are found where; --fetch downloads them")
    weights.add_argument("--fetch", action="store_true", help="download missing weights (needs network)")
    weights.add_argument("--inception-weights", metavar="PATH", default=None)
    _add_grid_parser(sub)
    export = sub.add_parser("export", help="a run's table for a paper: booktabs LaTeX, CSV or markdown, with the "
                                           "run's own numbers")
    export.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run folder (runs/<run_id>), or several runs of one `run --seeds` series")
    export.add_argument("--format", default="latex", metavar="FORMAT", help="latex (default), csv or markdown")
    export.add_argument("--table", default="headline", metavar="TABLE",
                        help="headline (default), seeds, paired or generative")
    export.add_argument("--out", default=None, metavar="FILE", help="write here (default: print)")
    return parser


def _add_grid_parser(sub: argparse._SubParsersAction) -> None:
    grid = sub.add_parser("grid", help="method x seed x dataset cells as jobs (Slurm or local, through "
                                       "submitit), read back as one table")
    actions = grid.add_subparsers(dest="grid_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="submit a grid, or with --grid ID resubmit its missing and failed cells")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every registered method")
    which.add_argument("--method", action="append", default=[], metavar="NAME", help="a method (repeatable)")
    run.add_argument("--seeds", type=int, nargs="+", metavar="N", default=None)
    run.add_argument("--train-seeds", type=int, metavar="K", default=None,
                     help="K cells per (method, seed, dataset), trained with other train seeds on the same split")
    run.add_argument("--data", action="append", default=None, metavar="PATH",
                     help="a dataset folder (repeatable: one dataset each); 'embedded' or none: the embedded "
                          "cohort; every NAME=PATH together: one cohort of several sources")
    run.add_argument("--dataset", metavar="NAME", default=None,
                     help="the data source of every --data by name, when several or none recognise it")
    run.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)}")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    run.add_argument("--config", metavar="TOML", default=None)
    run.add_argument("--device", default="auto")
    run.add_argument("--inception-weights", metavar="PATH", default=None)
    run.add_argument("--output", default="runs", metavar="DIR", help="runs go here, the grid in DIR/grids/")
    run.add_argument("--grid", metavar="GRID_ID", default=None, help="resubmit this grid's missing and failed cells")
    run.add_argument("--executor", choices=("auto", "slurm", "local", "debug", "inline"), default="auto",
                     help="auto: Slurm where sbatch exists, else local processes; debug: submitit's in-process "
                          "debugger; inline: one cell after another in this process (what run --seeds uses)")
    run.add_argument("--partition", default=None, help="Slurm partition")
    run.add_argument("--gpus", type=int, default=None, help="GPUs per cell (default 1 on Slurm, 0 locally)")
    run.add_argument("--cpus", type=int, default=None, help="CPUs per cell (default by profile)")
    run.add_argument("--mem-gb", type=int, default=None, help="memory per cell (default by profile)")
    run.add_argument("--timeout-min", type=int, default=None, help="time limit per cell (default by profile)")
    run.add_argument("--array-parallelism", type=int, default=None, help="Slurm: cells running at once")
    run.add_argument("--no-wait", action="store_true", help="return after submitting (Slurm); collect later")
    collect = actions.add_parser("collect", help="read a grid's cells back into one table and grid.json")
    collect.add_argument("grid_id", metavar="GRID_ID")
    collect.add_argument("--output", default="runs", metavar="DIR")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from harness.data.types import DatasetError
    from harness.registry import UnknownNameError

    try:
        return _dispatch(args, parser)
    except (DatasetError, UnknownNameError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume RUN_ID where the command supports it", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "list":
        from harness.listing import print_listing

        return print_listing(args.pattern)
    if args.command == "data":
        if args.data_command == "eda":
            from harness.data.commands import eda_command

            return eda_command(args)
        if args.data_command == "splits":
            from harness.data.commands import splits_command

            return splits_command(args)
        if args.data_command == "export":
            from harness.data.export import export_command

            return export_command(args)
        parser.parse_args(["data", "--help"])
        return 2
    if args.command == "run":
        from harness.run_command import run_command

        return run_command(args, parser.parse_args(["run"]))
    if args.command == "report":
        from reports.render import report_command

        return report_command(args)
    if args.command == "compare":  # the harness computes and writes the comparison, the report renders it
        from pathlib import Path

        from harness.compare import compare_runs
        from reports.compare import render_comparison

        return render_comparison(compare_runs(args.run_a, args.run_b, Path(args.runs)), Path(args.runs), Path(args.out))
    if args.command == "weights":
        from harness.metrics.weights import weights_command

        return weights_command(args)
    if args.command == "export":
        from harness.export import export_command

        return export_command(args)
    if args.command == "grid":
        from harness.grid import grid_command

        return grid_command(args)
    raise AssertionError(args.command)
