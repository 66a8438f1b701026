"""What a result depends on besides its config: versions, git commit, device, command line.

Every probe is best-effort: a missing git or package yields None, never an exception, because
an environment quirk must not cost a user their run.
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from harness import __version__

PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scipy", "scikit-learn", "pandas",
            "pillow", "nilearn", "imagehash", "matplotlib", "jinja2", "pydantic", "monai", "submitit")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding ``path`` (default: this package), ``+dirty`` when the
    work tree has changes; None outside git or without a git executable."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=where, capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    if not commit:
        return None
    return commit + ("+dirty" if status.returncode == 0 and status.stdout.strip() else "")


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def command_line(argv: list[str] | None = None) -> str:
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(("__main__.py", "harness")):
        argv = ["python", "-m", "harness", *argv[1:]]
    return shlex.join(argv)


def capture_environment(device: torch.device, argv: list[str] | None = None) -> dict[str, Any]:
    """The run.json fields describing where and how a run was made."""
    return {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "command": command_line(argv),
        "device": device_description(device),
        "packages": package_versions(),
        "platform": platform.platform(),
    }
