"""torchrun/DDP: the helpers outside and inside a process group, a 2-process ResNet18 equal to the
one-process run with the same global batch, and `torchrun -m harness run` (smoke, then --resume)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from harness import distributed
from harness.results import RunFolder

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_NO_PROGRESS": "1", "MPLBACKEND": "Agg",
            "HARNESS_CACHE": os.environ.get("HARNESS_CACHE", str(tmp_path / "cache"))}


def _torchrun(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_outside_torchrun_everything_is_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert not distributed.launched()
    assert distributed.setup(torch.device("cpu")) == torch.device("cpu") and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    batch = torch.arange(7)
    assert torch.equal(distributed.shard(batch), batch) and torch.equal(distributed.gather(batch), batch)
    assert distributed.broadcast({"a": 1}) == {"a": 1} and distributed.all_sum(2.5) == 2.5
    assert distributed.main_only(lambda x: x + 1, 1) == 2
    model = torch.nn.Linear(2, 2)
    assert distributed.unwrap(model) is model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _helpers_on_rank(rank: int, port: int, out: str) -> None:
    """One rank of a 2-process gloo group set up from torchrun's variables, as torchrun would."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    device = distributed.setup(torch.device("cpu"))
    batch = torch.arange(10, 17)  # 7 items: shards of 4 and 3
    mine = distributed.shard(batch)
    result = {"rank": distributed.rank(), "world": distributed.world_size(), "device": str(device),
              "shard": mine.tolist(), "gathered": distributed.gather(mine * 10).tolist(),
              "sum": distributed.all_sum(float(rank + 1)), "plan": distributed.broadcast({"from": rank})}
    distributed.main_only(Path(out).write_text, json.dumps(result))
    distributed.teardown()


def test_helpers_in_a_two_process_group(tmp_path):
    out = tmp_path / "rank0.json"
    mp.spawn(_helpers_on_rank, args=(_free_port(), str(out)), nprocs=2, join=True)
    result = json.loads(out.read_text())
    assert (result["rank"], result["world"], result["device"]) == (0, 2, "cpu")
    assert result["shard"] == [10, 12, 14, 16]  # positions 0, 2, 4, 6: DistributedSampler's partition
    assert result["gathered"] == [100, 110, 120, 130, 140, 150, 160]  # back in the global order
    assert result["sum"] == 3.0 and result["plan"] == {"from": 0}


def _relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> tuple[float, float]:
    keys = [k for k in a if a[k].dtype.is_floating_point]
    assert keys and set(a) == set(b)
    num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in keys)
    den = sum(float((a[k] ** 2).sum()) for k in keys)
    return (num / den) ** 0.5, max(float((a[k] - b[k]).abs().max()) for k in keys)


@pytest.mark.slow
def test_two_process_training_equals_one_process_with_the_global_batch(tmp_path):
    """GroupNorm in place of BatchNorm (tests/ddp_train.py says why): relative L2 difference of all
    weights at most 1e-4 after 2 epochs x 3 steps (measured 2e-6), largest single difference at
    most 1e-3 (one AdamW step is lr = 1e-3), from float sums in another order only."""
    sys.path.insert(0, str(TESTS))
    import ddp_train

    env = _env(tmp_path)
    one = tmp_path / "one"
    threads = torch.get_num_threads()
    try:
        ddp_train.train(one, groupnorm=True)
    finally:
        torch.set_num_threads(threads)
    proc = _torchrun([str(TESTS / "ddp_train.py"), str(tmp_path / "two"), "groupnorm"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (one / "world.txt").read_text() == "1" and (tmp_path / "two" / "world.txt").read_text() == "2"
    a = torch.load(one / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "weights.pt", weights_only=True)
    relative, largest = _relative_difference(a, b)
    assert relative <= 1e-4 and largest <= 1e-3, (relative, largest)


def _own_rows(folder: Path, method: str) -> list[dict]:
    """The method's own metric rows (paired rows against other methods left out)."""
    return [r for r in RunFolder(folder).read_metrics() if r["method"] == method and not r.get("other")]


@pytest.mark.slow
def test_torchrun_smoke_run_and_resume(tmp_path):
    env = _env(tmp_path)
    runs = tmp_path / "runs"
    common = ["-m", "harness", "run", "--profile", "smoke", "--set", "metrics.bootstrap=20", "--device", "cpu",
              "--output", str(runs), "--no-progress"]
    proc = _torchrun([*common, "--method", "resnet18", "--method", "intensity"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = runs.iterdir()  # rank 0 alone made a run folder
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "complete" and info["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert "intensity trains on rank 0 only" in proc.stderr
    before = _own_rows(folder, "resnet18")
    assert before and (folder / "methods" / "resnet18" / "best.pt").is_file()

    # an interrupted resnet18 continues under torchrun: every rank resumes the run rank 0 names
    info["status"] = info["methods"]["resnet18"]["status"] = "interrupted"
    (folder / "run.json").write_text(json.dumps(info))
    proc = _torchrun(["-m", "harness", "run", "--resume", folder.name, "--output", str(runs), "--no-progress"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed after epoch 2 of 2" in proc.stderr and [p.name for p in runs.iterdir()] == [folder.name]
    after = _own_rows(folder, "resnet18")
    assert after == before
