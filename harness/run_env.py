"""What a result depends on besides its config: versions, git commit, device, command line.

Every probe is best-effort: a missing git or package yields None, never an exception, because
an environment quirk must not cost a user their run.
"""

from __future__ import annotations

import os
import platform
import re
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


CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")  # what decides oneDNN's bf16/fp32 kernels


def cpu_description() -> dict[str, Any]:
    """The CPU and the kernels torch will use on it. Why: the same seed gave test AUROC 0.972 on an
    AMD CPU with AVX512-BF16 and 0.908 on an Intel one with AMX (bf16 kernels round differently),
    and 1 vs 2 threads changed it too; a result names both, and another CPU family is another draw."""
    model, flags = platform.processor() or None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in (None, "", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    onednn = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
    return {
        "model": model, "machine": platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": {flag: flag in flags for flag in CPU_FLAGS} if flags else None,
        "bf16_capable": torch.backends.mkldnn.is_available() and bool(flags & {"amx_bf16", "avx512_bf16"}),
        "amx": "amx_tile" in flags,
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__, "onednn": onednn.group(1) if onednn else None,
    }


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
        "cpu": cpu_description(),
        "packages": package_versions(),
        "platform": platform.platform(),
    }
