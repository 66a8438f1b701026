"""``harness.run_benchmark``: a run from Python, returning its results as tidy frames.

Why it writes a command line: the Python call and ``python -m harness run`` must be one
implementation, so that a notebook's run is exactly the run the command line would make. The
arguments become the ``run`` command's options, are parsed by the command line's own parser
(same defaults, same checks) and carried out by :func:`harness.run_command.execute_run`;
run.json records that command line, so a run started from a notebook says how to repeat it in
a terminal. The run folders are then read back with :func:`harness.load_results`.

Importing this module imports no torch; the run itself does, when it starts.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from harness.config import DEFAULT_PROFILE
from harness.results_frames import Results, load_results

__all__ = ["run_benchmark", "run_arguments"]

PathLike = str | os.PathLike[str]


def _set_options(overrides: Mapping[str, Any] | Sequence[str]) -> list[str]:
    """``--set`` options: ``{"resnet18.epochs": 1}``, ``{"resnet18": {"epochs": 1}}`` or
    ``["resnet18.epochs=1"]``; values are written as JSON, which ``--set`` parses back."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides: a mapping or a list of 'SECTION.KEY=VALUE' strings, not the string {overrides!r}")
    if not isinstance(overrides, Mapping):
        return [f"--set={item}" for item in overrides]
    out = []
    for key, value in overrides.items():
        if isinstance(value, Mapping) and "." not in key:  # a section: {"cohort": {"n_subjects": 8}}
            out += [f"--set={key}.{inner}={json.dumps(v)}" for inner, v in value.items()]
        else:
            out.append(f"--set={key}={json.dumps(value)}")
    return out


def _data_options(data: PathLike | Sequence[PathLike] | Mapping[str, PathLike]) -> list[str]:
    """``--data`` options: one path, several, or ``{name: path}`` for the sources of one cohort."""
    if isinstance(data, Mapping):
        return [f"--data={name}={os.fspath(path)}" for name, path in data.items()]
    if isinstance(data, (str, os.PathLike)):
        return [f"--data={os.fspath(data)}"]
    return [f"--data={os.fspath(path)}" for path in data]


def _seed_options(seeds: int | Sequence[int]) -> list[str]:
    """One seed: ``--seed N`` (one run); several: ``--seeds N ...`` (one run each, then the spread)."""
    values = [seeds] if isinstance(seeds, int) else list(seeds)
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise TypeError(f"seeds: an int or a non-empty sequence of ints, not {seeds!r}")
    return [f"--seed={values[0]}"] if len(values) == 1 else ["--seeds", *map(str, values)]


def run_arguments(methods: str | Sequence[str] | None = None, *, profile: str = DEFAULT_PROFILE,
                  seeds: int | Sequence[int] | None = None,
                  data: PathLike | Sequence[PathLike] | Mapping[str, PathLike] | None = None,
                  dataset: str | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
                  config: PathLike | None = None, output: PathLike = "runs", device: str = "auto",
                  train_seeds: int | None = None, resume: str | None = None,
                  inception_weights: PathLike | None = None, progress: bool = False) -> list[str]:
    """The ``python -m harness`` arguments (``run`` and its options) that :func:`run_benchmark` carries
    out for these arguments: what run.json records as the run's command."""
    args = ["run"]
    if methods == "all":
        args.append("--all")
    elif methods is not None:
        names = [methods] if isinstance(methods, str) else list(methods)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"methods: 'all', a method name or a sequence of names, not {methods!r}")
        args += [f"--method={name}" for name in names]
    args.append(f"--profile={profile}")
    if seeds is not None:
        args += _seed_options(seeds)
    if data is not None:
        args += _data_options(data)
    if dataset is not None:
        args.append(f"--dataset={dataset}")
    if overrides:
        args += _set_options(overrides)
    if config is not None:
        args.append(f"--config={os.fspath(config)}")
    args += [f"--output={os.fspath(output)}", f"--device={device}"]
    if train_seeds is not None:
        if not isinstance(train_seeds, int) or isinstance(train_seeds, bool):
            raise TypeError(f"train_seeds: an int, not {train_seeds!r}")
        args.append(f"--train-seeds={train_seeds}")
    if resume is not None:
        args.append(f"--resume={resume}")
    if inception_weights is not None:
        args.append(f"--inception-weights={os.fspath(inception_weights)}")
    if not progress:
        args.append("--no-progress")
    return args


def run_benchmark(methods: str | Sequence[str] | None = None, *, profile: str = DEFAULT_PROFILE,
                  seeds: int | Sequence[int] | None = None,
                  data: PathLike | Sequence[PathLike] | Mapping[str, PathLike] | None = None,
                  dataset: str | None = None, overrides: Mapping[str, Any] | Sequence[str] | None = None,
                  config: PathLike | None = None, output: PathLike = "runs", device: str = "auto",
                  train_seeds: int | None = None, resume: str | None = None,
                  inception_weights: PathLike | None = None, progress: bool = False) -> Results:
    """Run methods on the standard splits, as ``python -m harness run`` does, and load the results.

    ``methods``: ``"all"``, one name or several (``python -m harness list`` shows them); None
    only with ``resume``. ``profile``: ``smoke``, ``quick`` or ``paper``. ``seeds``: one seed
    (one run; default 0, as on the command line) or several (one run each, and the spread and
    paired tests across them in ``seed_summary``); seeds 100 and up are for development (see
    docs/protocol.md). ``data``: a folder of images or volumes, several, or ``{name: path}`` for
    one cohort of several sources; None: the embedded cohort. ``overrides``: settings, e.g.
    ``{"resnet18.epochs": 1}``. ``output``: where run folders go. The other arguments are the
    command's options of the same name.

    Bad input raises ``ValueError``/``FileNotFoundError`` (what the command line prints as one
    ``error:`` line); a method that fails leaves its error in the run (``Results.runs`` status,
    run.json) and a warning here, as the command exits 1.
    """
    from harness.cli import build_parser
    from harness.run_command import execute_run

    argv = run_arguments(methods, profile=profile, seeds=seeds, data=data, dataset=dataset, overrides=overrides,
                         config=config, output=output, device=device, train_seeds=train_seeds, resume=resume,
                         inception_weights=inception_weights, progress=progress)
    parser = build_parser()
    outcome = execute_run(parser.parse_args(argv), parser.parse_args(["run"]),
                          argv=["python", "-m", "harness", *argv])
    if not outcome.folders:
        raise RuntimeError("the run wrote no run folder here (under torchrun, rank 0's log names it)")
    if outcome.status != 0:
        warnings.warn("some method or run did not complete: see Results.runs and each run's run.json and log.txt",
                      RuntimeWarning, stacklevel=2)
    return load_results(*outcome.folders)
