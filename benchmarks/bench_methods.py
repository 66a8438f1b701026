"""Training and scoring throughput of the reconstruction methods (autoencoder, dae and the diffusion methods).

Each row times a method's own training step (its ``loss`` hook: noise draws, forward, loss,
backward, Adam step) on random images after warm-up steps, and its scoring pass (its
``reconstruct_batch`` hook: for a diffusion method the whole partial-noising and denoising chain), at the
quick and paper profiles' sizes, in fp32 and in bf16 autocast, reporting images/s and the
ratio against fp32 at the same profile and batch, measured in the same run.

Safety. ``loss drift`` is the relative difference between the training loss after the timed
steps in the variant and in fp32 (same seeds, same data): bf16 *training* is safe when it stays
under ``SAFE_LOSS_DRIFT``. ``max|dx|`` is the largest pixel difference between bf16 and fp32
reconstructions by the same (seeded, untrained) weights; it is why the methods never *score* in
bf16 on CPU (``cpu_bf16`` covers training steps only). MONAI's diffusion UNet starts with a zeroed
output layer, so a diffusion method's ``max|dx|`` is 0 by construction there. Each training rate is the
fastest of a few timing windows (the least disturbed on a shared machine). The last lines name,
per method, the fastest safe quick-profile training setting.

A paper profile's diffusion chain (hundreds of UNet passes per image) is timed on a few of its
steps and scaled to the full chain; such rows are marked ``(scaled)``.

    python benchmarks/bench_methods.py --quick          # quick sizes only: about a minute on 2 cores
    python benchmarks/bench_methods.py                  # quick and paper sizes
    python benchmarks/bench_methods.py --device cuda    # amp instead of bf16
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass

import torch

from harness.registry import METHODS
from harness.training import autocast
from generative.reconstruction import ReconstructionMethod

METHOD_NAMES = ("autoencoder", "dae", "gaussian-ddpm", "anoddpm", "pddpm")
SAFE_LOSS_DRIFT = 0.05  # bf16 training may end this far (relative) from fp32's loss and still count as safe
SCALED_STEPS = 4  # denoising steps actually timed when a chain is longer


@dataclass
class Row:
    method: str
    profile: str
    variant: str
    batch: int
    train_ips: float
    loss: float
    score_ips: float
    max_dx: float
    scaled: bool


def _method(name: str, profile: str, device: torch.device) -> ReconstructionMethod:
    cls = METHODS.get(name)
    method = cls(cls.Settings(**cls.profile_defaults.get(profile, {})))
    method.device = device
    return method


def _precision(variant: str, device: torch.device) -> contextlib.AbstractContextManager:
    if variant == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if variant == "amp":
        return autocast(device, True)
    return contextlib.nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_ips(method: ReconstructionMethod, variant: str, batch: int, warmup: int,
              steps: int, repeats: int) -> tuple[float, float]:
    """Training images/s of the fastest of ``repeats`` windows of ``steps`` steps after
    ``warmup`` steps (the least disturbed window on a shared machine), and the final loss."""
    device = method.device
    torch.manual_seed(0)
    model = method.build().to(device).train()
    optimizer = method.make_optimizer(model.parameters())
    g = torch.Generator().manual_seed(0)
    size = method.settings.image_size
    x = torch.rand(batch, 1, size, size, generator=g).to(device)

    def step() -> torch.Tensor:
        with _precision(variant, device):
            loss = method.loss(model, x, g)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        return loss.detach()

    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return batch * steps / best, float(loss)


def _shortened(method: ReconstructionMethod) -> tuple[ReconstructionMethod, float]:
    """For a diffusion chain longer than SCALED_STEPS: the same method with a chain of SCALED_STEPS
    DDIM steps, and the factor that scales its time to the real chain's."""
    if not hasattr(method, "chain"):
        return method, 1.0
    n = len(method.chain())
    if n <= SCALED_STEPS:
        return method, 1.0
    short = type(method)(method.settings.model_copy(update={"sampler": "ddim", "inference_steps": SCALED_STEPS}))
    short.device = method.device
    return short, n / len(short.chain())


@torch.no_grad()
def reconstruct(method: ReconstructionMethod, variant: str, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Reconstructions of ``x`` by the seeded model under ``variant``, and images/s."""
    torch.manual_seed(0)
    model = method.build().to(method.device).eval()
    timed, scale = _shortened(method)
    with _precision(variant, method.device):
        timed.reconstruct_batch(model, x[:2])  # warm-up
        _sync(method.device)
        start = time.perf_counter()
        out = timed.reconstruct_batch(model, x)
        _sync(method.device)
    return out.float().clamp(0, 1).cpu(), len(x) / ((time.perf_counter() - start) * scale)


def measure(name: str, profile: str, device: torch.device, batches: list[int], warmup: int,
            steps: int, repeats: int, score_images: int) -> list[Row]:
    method = _method(name, profile, device)
    size = method.settings.image_size
    x = torch.rand(score_images, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    variants = ["fp32", "amp" if device.type == "cuda" else "bf16"]  # fp32 first: the reference
    reference, _ = reconstruct(method, "fp32", x)
    rows: list[Row] = []
    for variant in variants:
        out, score = reconstruct(method, variant, x)
        dx = float((out - reference).abs().max())
        for batch in batches or [method.settings.batch_size]:
            ips, loss = train_ips(method, variant, batch, warmup, steps, repeats)
            rows.append(Row(name, profile, variant, batch, ips, loss, score, dx, _shortened(method)[1] > 1))
            print(_fmt(rows[-1], rows), flush=True)
    return rows


def _fp32(row: Row, rows: list[Row]) -> Row:
    """The fp32 row measured with the same method, profile and batch (the reference)."""
    return next((r for r in rows if (r.method, r.profile, r.batch, r.variant) ==
                 (row.method, row.profile, row.batch, "fp32")), row)


def loss_drift(row: Row, rows: list[Row]) -> float:
    base = _fp32(row, rows)
    return abs(row.loss - base.loss) / max(abs(base.loss), 1e-12)


def _fmt(row: Row, rows: list[Row]) -> str:
    base = _fp32(row, rows)
    drift = "" if row is base else f"{100 * loss_drift(row, rows):.2f}%"
    return (f"{row.method:<12}{row.profile:<7}{row.variant:<6}{row.batch:>6}{row.train_ips:>11.1f}"
            f"{row.train_ips / base.train_ips:>7.2f}x{drift:>11}{row.score_ips:>11.1f}"
            f"{' (scaled)' if row.scaled else '':<9}{row.score_ips / base.score_ips:>7.2f}x{row.max_dx:>10.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick-profile sizes only, fewer steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    parser.add_argument("--batches", nargs="*", type=int, default=[],
                        help="training batch sizes to compare (default: each profile's own)")
    args = parser.parse_args()
    device = torch.device(args.device)
    profiles = ["quick"] if args.quick else ["quick", "paper"]
    warmup, steps, repeats = (1, 2, 3) if args.quick else (2, 3, 3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    print(f"{'method':<12}{'prof':<7}{'var':<6}{'batch':>6}{'train img/s':>12}{'ratio':>7}{'loss drift':>11}"
          f"{'score img/s':>12}{'':<8}{'ratio':>8}{'max|dx|':>10}")
    rows = []
    for name in args.methods:
        for profile in profiles:
            rows += measure(name, profile, device, args.batches, warmup, steps, repeats,
                            8 if profile == "paper" else 32)
    for name in args.methods:
        safe = [r for r in rows if r.method == name and r.profile == "quick"
                and loss_drift(r, rows) <= SAFE_LOSS_DRIFT]
        best = max(safe, key=lambda r: r.train_ips)
        print(f"fastest safe quick training for {name}: {best.variant}, batch {best.batch} "
              f"({best.train_ips:.1f} train img/s; scoring fp32)")


if __name__ == "__main__":
    main()
