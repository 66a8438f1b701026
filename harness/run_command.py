"""``python -m harness run``: one run, a run resumed, one run per seed (``--seeds``) and per train
seed (``--train-seeds``), or one rank of a torchrun job.

Why apart from the runner: the runner executes one config; choosing between one run, several
seeds (which go through the grid's cells, run here one after another, so there is one seed loop
and ``harness grid run --grid ID`` finishes an interrupted series) and torchrun is the command's job.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from harness import distributed
from harness.grid import collect, grid_table, new_grid_dir, spec_from_args, submit
from harness.request import config_and_folder
from harness.run_inputs import DataLayer
from harness.runner import Runner

__all__ = ["RunOutcome", "execute_run", "run_command"]


@dataclass(frozen=True)
class RunOutcome:
    """What a ``run`` request did: its exit status (0 ok, 1 a method or a seed's run failed) and
    the run folders it wrote or continued (a ``--seeds`` series: one per seed and train seed)."""

    status: int
    folders: tuple[Path, ...]


def run_command(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    """Entry point of ``python -m harness run``; returns the exit status (0 ok, 1 a method failed).
    ``defaults`` are the options' defaults, to tell what the user gave explicitly."""
    return execute_run(args, defaults).status


def execute_run(args: argparse.Namespace, defaults: argparse.Namespace,
                argv: list[str] | None = None) -> RunOutcome:
    """Carry out a parsed ``run`` request: the one implementation behind the command line and
    :func:`harness.run_benchmark`. ``argv``: the command line run.json records (default: this
    process's); a torchrun rank reports no folders (rank 0's run folder is its log's last line)."""
    if distributed.launched():
        from harness.torchrun_run import torchrun_command

        return RunOutcome(torchrun_command(args, defaults), ())
    if args.seeds or args.train_seeds:
        return _run_seeds(args, defaults)
    config, folder, info = config_and_folder(args, defaults)
    runner = Runner(config, DataLayer.default(), progress=not args.no_progress, argv=argv)
    status = runner.execute(folder, info)
    return RunOutcome(status, (runner.folder.path,))


def _run_seeds(args: argparse.Namespace, defaults: argparse.Namespace) -> RunOutcome:
    """One run of the chosen methods per seed (``--seeds``, else ``--seed``) and train seed, as the
    cells of a grid run in this process, then the spread across seeds and the paired tests across
    them; status 1 if any run did not complete."""
    if args.resume:
        raise ValueError("--seeds and --train-seeds start new runs; continue an interrupted one with --resume "
                         "RUN_ID alone, or the whole series with `python -m harness grid run --grid GRID_ID`")
    if args.seeds and args.seed != defaults.seed:
        raise ValueError("give either --seed N or --seeds N [N ...], not both")
    as_grid = argparse.Namespace(**{**vars(args), "seeds": args.seeds or [args.seed], "executor": "inline"})
    spec = spec_from_args(as_grid, together=True)
    grid_dir = new_grid_dir(spec, args.output)
    submit(spec, grid_dir, as_grid)
    grid = collect(grid_dir)
    print(grid_table(grid))
    print(f"grid folder: {grid_dir} (finish an interrupted series with: python -m harness grid run "
          f"--grid {grid_dir.name} --executor inline --output {args.output})")
    runs_dir = Path(spec["runs_dir"])
    folders = tuple(runs_dir / c["run_id"] for c in grid["cells"]
                    if c["role"] == "cell" and c.get("run_id") and (runs_dir / c["run_id"] / "run.json").is_file())
    return RunOutcome(0 if all(c["status"] == "complete" for c in grid["cells"]) else 1, folders)
