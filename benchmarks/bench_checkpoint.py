"""Per-epoch checkpoints: the epoch file written twice (the baseline: epoch file and last.pt, each
serialised and fsynced) against once plus a hard link (``Checkpointer.save``), in the same run.

    python benchmarks/bench_checkpoint.py [--mb 13] [--epochs 10] [--folder runs/bench-checkpoint]

The payload is a state of ``--mb`` megabytes of float32 tensors (13 MB: the quick autoencoder's
model and optimizer). Write to the disk the runs use (``--folder``): fsync time is the disk's,
so a busy shared disk shows the difference best. Prints seconds per epoch and the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.training import Checkpointer, atomic_torch_save, rng_state  # noqa: E402


def payload(megabytes: float) -> dict[str, torch.Tensor]:
    n = int(megabytes * 2**20 / 4 / 4)
    return {f"t{i}": torch.randn(n, generator=torch.Generator().manual_seed(i)) for i in range(4)}


def written_twice(folder: Path, epoch: int, state: dict) -> None:
    """The previous ``Checkpointer.save``: the same payload serialised to both names."""
    data = {"epoch": epoch, "rng": rng_state(), "state": state}
    atomic_torch_save(data, folder / f"epoch-{epoch:03d}.pt")
    atomic_torch_save(data, folder / "last.pt")
    for old in sorted(folder.glob("epoch-*.pt"))[:-1]:
        old.unlink()


def seconds_per_epoch(save, epochs: int) -> float:
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        save(epoch)
    return (time.perf_counter() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=13.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=Path("runs/bench-checkpoint"))
    args = parser.parse_args()
    state = payload(args.mb)
    base, linked = args.folder / "twice", args.folder / "linked"
    for folder in (base, linked):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    ckpt = Checkpointer(linked, keep_last=1)
    try:
        before = seconds_per_epoch(lambda e: written_twice(base, e, state), args.epochs)
        after = seconds_per_epoch(lambda e: ckpt.save(e, state), args.epochs)
        same = (base / "last.pt").stat().st_size == ckpt.last_path.stat().st_size
    finally:
        shutil.rmtree(args.folder, ignore_errors=True)
    print(f"{args.mb:g} MB per checkpoint, {args.epochs} epochs, folder {args.folder}")
    print(f"written twice (baseline): {before:.3f} s per epoch")
    print(f"written once + hard link: {after:.3f} s per epoch")
    print(f"ratio baseline / now: {before / after:.2f}x; last.pt same size: {same}")


if __name__ == "__main__":
    main()
