"""Several processes training one method: torchrun's environment -> a process group, rank helpers,
each rank's share of a batch, sharded evaluation gathered back, and a rank-0-only guard for writes.

Why: PyTorch's engine for multi-GPU and multi-node training is torch.distributed launched by
``torchrun``; the harness uses it as it is. Outside torchrun every helper answers as rank 0 of a
world of one, so the code path of a plain run does not change.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["TIMEOUT", "launched", "setup", "teardown", "active", "rank", "world_size", "is_main", "broadcast",
           "barrier", "all_sum", "shard", "gather", "wrap", "unwrap", "main_only"]

T = TypeVar("T")

# Ranks wait in a collective while rank 0 alone evaluates a method or trains one that does not
# train distributed; torch's default (10 min for NCCL) would kill a paper-profile run.
TIMEOUT = datetime.timedelta(hours=6)
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True in a process started by torchrun (or anything that sets its environment variables)."""
    return all(k in os.environ for k in _TORCHRUN_VARS)


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (nccl on CUDA, gloo otherwise) and return this rank's device:
    ``cuda:LOCAL_RANK`` when ``device`` is CUDA, so each process drives its own GPU. Outside
    torchrun, ``device`` unchanged and no group."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT,
                                device_id=device if device.type == "cuda" else None)
    return device


def teardown() -> None:
    if active():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes run folders, checkpoints and metrics."""
    return rank() == 0


def main_only(write: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``write(*args, **kwargs)`` on rank 0 only: every rank holds the same weights, one writes them."""
    return write(*args, **kwargs) if is_main() else None


def broadcast(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (any picklable object)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if active():
        dist.barrier()


def all_sum(value: float) -> float:
    """The sum of ``value`` over the ranks (loss totals for the curves)."""
    if not active():
        return value
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, float(value))
    return float(sum(parts))


def shard(batch: torch.Tensor) -> torch.Tensor:
    """This rank's share of one global batch: positions rank, rank + W, rank + 2W, ...

    When the global batch is a multiple of the world size W this is exactly the partition
    ``DistributedSampler(shuffle=False)`` makes of the epoch's seeded order followed by per-rank
    batches of global/W; unlike the sampler it never pads a short last batch with repeated
    images, so the union of one step's shards is the global batch, nothing more.
    """
    return batch[rank()::world_size()]


def gather(local: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`shard` over the ranks: every rank's rows back in the global order (CPU)."""
    if world_size() == 1:
        return local
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, local.detach().cpu())
    out = torch.empty((sum(len(p) for p in parts), *local.shape[1:]), dtype=local.dtype)
    for r, part in enumerate(parts):
        out[r::world_size()] = part
    return out


def wrap(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``model`` for data-parallel training: gradients averaged over the ranks after each backward.

    On CUDA its BatchNorm layers become SyncBatchNorm, so batch statistics are those of the global
    batch as in a one-process run. torch's SyncBatchNorm runs on GPUs only; on CPU (gloo) each rank
    normalises with its own shard's statistics, which makes a CPU run close to, not equal to, the
    one-process run (README, "Scaling out").
    """
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DistributedDataParallel wrapper (for eval and state dicts)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
