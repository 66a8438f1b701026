"""``torchrun ... -m harness run``: rank 0 runs the command as without torchrun and alone writes the
run folder; once its data are ready it sends the other ranks a plan (config, folder, split, the
methods to train), and they join the training of each method with the ``distributed`` capability.

Why a plan and not a second runner per rank: only rank 0 may write the run folder and compute
metrics; the other ranks must rebuild the very same split and train in lockstep, nothing more.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from harness import distributed
from harness.method_build import build_method, trains_distributed
from harness.request import config_and_folder, config_from_dict
from harness.results import RunFolder
from harness.run_inputs import DataLayer, load_size, open_inputs
from harness.runner import Runner
from harness.training import choose_device

__all__ = ["torchrun_command"]


def torchrun_command(args: argparse.Namespace, defaults: argparse.Namespace) -> int:
    """The ``run`` command on one torchrun rank; returns the exit status."""
    if args.seeds or args.train_seeds:
        raise ValueError("--seeds and --train-seeds are not supported under torchrun: start one torchrun job per "
                         "seed, or a grid (python -m harness grid run)")
    try:
        distributed.setup(choose_device(args.device))
    except RuntimeError as exc:
        raise ValueError(str(exc)) from exc
    try:
        if not distributed.is_main():
            return _follow(DataLayer.default())
        sent = []
        try:
            config, folder, info = config_and_folder(args, defaults)
            runner = Runner(config, DataLayer.default(), progress=not args.no_progress,
                            on_data_ready=lambda r: sent.append(_send_plan(r)))
            return runner.execute(folder, info)
        finally:
            if not sent:
                distributed.broadcast(None)  # the other ranks wait for a plan: there is none
    finally:
        distributed.teardown()


def _send_plan(runner: Runner) -> None:
    """Rank 0: tell the other ranks what to train with it, in this run's order."""
    methods = [(n, runner.resuming and runner.info["methods"][n]["status"] != "pending")
               for n in runner.order()
               if runner.info["methods"][n]["status"] != "complete" and trains_distributed(n)]
    distributed.broadcast({"config": runner.config.to_dict(), "folder": str(runner.folder.path),
                           "split_hash": runner.split_hash, "size": load_size(runner.config), "methods": methods})


def _follow(data: DataLayer) -> int:
    """A rank other than 0: rebuild rank 0's split and train each method of its plan together with
    it. It writes nothing; rank 0 writes the run folder and evaluates."""
    plan: dict[str, Any] | None = distributed.broadcast(None)
    if plan is None:
        return 0  # rank 0 stopped before training; its error is the run's
    config = config_from_dict(plan["config"])
    device = distributed.setup(choose_device(config.device))
    inputs = open_inputs(config, data)
    if inputs.split.hash != plan["split_hash"]:
        raise RuntimeError(f"rank {distributed.rank()} made split {inputs.split.hash}, rank 0 {plan['split_hash']}: "
                           f"the ranks do not see the same data")
    train, val = (data.load_imageset(inputs.source, inputs.split, which, plan["size"], False) for which in ("train", "val"))
    folder = RunFolder(plan["folder"])
    for name, resume in plan["methods"]:
        method, ctx = build_method(name, config.method_settings[name], device=device, seed=config.training_seed,
                                   profile=config.profile.name, output_dir=folder.method_dir(name),
                                   logger=logging.getLogger(f"harness.rank{distributed.rank()}.{name}"),
                                   resume=resume, progress=False, distributed=True)
        method.fit(train, val, ctx)
    return 0
