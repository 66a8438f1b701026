"""A ``run`` request -> a :class:`RunConfig`: the selected methods, the profile and overrides, and
for ``--resume`` the stored config, with explicit options that contradict it refused.

Why apart from the runner: the runner executes a config; how a config is made from a command
line (and checked against a run that already exists) is a separate job the grid shares.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.config import RunConfig, resolve_method_settings
from harness.mri_reference import feature_method
from harness.registry import METHODS
from harness.results import RunFolder

__all__ = ["config_from_args", "selected_methods", "config_from_dict", "resume_config", "config_and_folder"]


def config_from_args(args: argparse.Namespace, methods: tuple[str, ...]) -> RunConfig:
    from harness.data.commands import resolve_profile
    from harness.data.sources import data_specs

    profile = resolve_profile(args)
    return RunConfig(profile=profile, seed=args.seed, data=data_specs(args.data, args.dataset, profile),
                     methods=methods, device=args.device,
                     output=args.output, inception_weights=args.inception_weights,
                     method_settings=resolve_method_settings(profile, _with_feature_method(methods)))


def _with_feature_method(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The run's methods plus the MRI feature method when a method translates (its settings are
    part of the config: they decide the feature space the generative metrics are computed in)."""
    if not any("translates" in METHODS.get(n).capabilities for n in methods):
        return methods
    extra = feature_method(methods)
    return methods if extra is None or extra in methods else (*methods, extra)


def selected_methods(args: argparse.Namespace) -> tuple[str, ...]:
    if args.all:
        names = METHODS.names()
        if not names:
            raise ValueError("no methods are registered (see `python -m harness list`)")
        return tuple(names)
    for name in args.method:
        METHODS.get(name)  # unknown names fail here, with a did-you-mean hint
    return tuple(dict.fromkeys(args.method))


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Rebuild the RunConfig stored in run.json."""
    try:
        return RunConfig.model_validate(data)
    except ValueError as exc:
        raise ValueError(f"run.json holds a config this harness cannot read (written by another "
                         f"version?): {exc}") from None


_EXPLICIT = ("profile", "seed", "data", "dataset", "overrides", "config", "device", "inception_weights")


def resume_config(args: argparse.Namespace, stored: RunConfig, defaults: argparse.Namespace) -> RunConfig:
    """The stored config; explicit options that contradict it are refused, not silently ignored."""
    explicit = [k for k in _EXPLICIT if getattr(args, k, None) != getattr(defaults, k, None)]
    if args.all or args.method or explicit:
        methods = selected_methods(args) if (args.all or args.method) else stored.methods
        given = config_from_args(args, methods)
        mine = given.model_copy(update={"output": stored.output}).to_dict()
        theirs = stored.to_dict()
        if args.device == defaults.device:
            mine["device"] = theirs["device"]
        if not any(k in explicit for k in ("profile", "overrides", "config")):
            mine["profile"], mine["method_settings"] = theirs["profile"], theirs["method_settings"]
        for k in ("seed", "data", "inception_weights"):
            if k not in explicit and not (k == "data" and "dataset" in explicit):
                mine[k] = theirs[k]
        if "train_seed" in theirs:  # a cell of --train-seeds; no option of --resume sets it
            mine["train_seed"] = theirs["train_seed"]
        diff = sorted(k for k in theirs if mine.get(k) != theirs[k])
        if diff:
            raise ValueError(f"--resume {args.resume}: the options given differ from the run's stored "
                             f"config in {', '.join(diff)}; drop them to resume, or start a new run")
    return stored



def config_and_folder(args: argparse.Namespace, defaults: argparse.Namespace,
                       ) -> tuple[RunConfig, RunFolder | None, dict[str, Any] | None]:
    """A new run's config (no folder yet), or the stored config, folder and run.json of ``--resume``."""
    if args.resume:
        folder = RunFolder.open(args.output, args.resume)
        info = folder.read_run()
        return resume_config(args, config_from_dict(info["config"]), defaults), folder, info
    if not args.all and not args.method:
        raise ValueError("choose the methods: --all or --method NAME (see `python -m harness list`)")
    return config_from_args(args, selected_methods(args)), None, None
