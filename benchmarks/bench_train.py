"""ResNet18 training throughput: eager fp32 vs channels_last vs bf16 autocast vs torch.compile.

Each row times the real training step of :mod:`baselines.resnet18` (augmentation, per-image
z-score, forward, cross-entropy, backward, AdamW) on random images after warm-up steps, and
reports images/s and the ratio against eager fp32 at the same size, measured in the same run.
``max|dP|`` is the largest difference in P(tumor) between the variant's and eager fp32's
forward pass on the same weights and inputs: a fast variant is only *safe* if it stays small.
Failures (e.g. torch.compile on CPU) are caught and shown as rows.

    python benchmarks/bench_train.py            # 128 and 224 px, batch 32, more steps
    python benchmarks/bench_train.py --quick    # ~3 minutes on a 2-core CPU
    python benchmarks/bench_train.py --device cuda   # the GPU variants (amp instead of bf16)
"""

from __future__ import annotations

import argparse
import contextlib
import time
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F

from baselines.augment import augment_batch
from baselines.resnet18_net import build_resnet18_classifier, standardize
from harness.training import autocast

SAFE_MAX_DP = 0.02  # P(tumor) may move this much and the variant still counts as safe


def _precision(variant: str, device: torch.device) -> contextlib.AbstractContextManager:
    if variant == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if variant == "amp":
        return autocast(device, True)
    return contextlib.nullcontext()


def _build(variant: str, device: torch.device) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The model (seeded: same weights for every variant) and the callable to run it."""
    torch.manual_seed(0)
    model = build_resnet18_classifier().to(device)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if variant == "compile" else model
    return model, forward


def _prepare(x: torch.Tensor, variant: str) -> torch.Tensor:
    x = standardize(x)
    return x.contiguous(memory_format=torch.channels_last) if variant == "channels_last" else x


def probabilities(variant: str, device: torch.device, x: torch.Tensor) -> torch.Tensor:
    """P(tumor) of the seeded, untrained model in eval mode under ``variant``."""
    model, forward = _build(variant, device)
    model.eval()
    with torch.no_grad(), _precision(variant, device):
        return torch.softmax(forward(_prepare(x, variant)).float(), 1)[:, 1].cpu()


def images_per_second(variant: str, device: torch.device, size: int, batch: int, warmup: int,
                      steps: int) -> float:
    model, forward = _build(variant, device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, size, size, generator=g).to(device)
    y = (torch.rand(batch, generator=g) < 0.5).long().to(device)

    def step() -> None:
        xb = _prepare(augment_batch(x, g), variant)
        with _precision(variant, device):
            logits = forward(xb)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 16, fewer steps (~3 min on 2 CPU cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--variants", nargs="+", default=None,
                        help="default: eager channels_last bf16 compile (amp instead of bf16 on cuda)")
    args = parser.parse_args()
    device = torch.device(args.device)
    variants = args.variants or (["eager", "channels_last", "amp", "compile"] if device.type == "cuda"
                                 else ["eager", "channels_last", "bf16", "compile"])
    batch, warmup, steps = (16, 1, 3) if args.quick else (32, 2, 6)
    if device.type == "cuda":
        batch, warmup, steps = 64, 3, 20
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"batch {batch}, {warmup} warm-up + {steps} timed steps")
    print(f"{'size':>5} {'variant':<14} {'img/s':>8} {'ratio':>6} {'max|dP|':>8}  note")
    for size in args.sizes:
        probe = torch.rand(8, 1, size, size, generator=torch.Generator().manual_seed(1)).to(device)
        reference_p = probabilities("eager", device, probe)
        base: float | None = None
        for variant in variants:
            try:
                rate = images_per_second(variant, device, size, batch, warmup, steps)
                dp = float((probabilities(variant, device, probe) - reference_p).abs().max())
            except Exception as exc:  # report, don't hide: a failing variant is a result
                last = traceback.format_exception_only(type(exc), exc)[-1].strip()
                print(f"{size:>5} {variant:<14} {'-':>8} {'-':>6} {'-':>8}  FAILED: {last[:150]}")
                continue
            base = rate if variant == "eager" else base
            ratio = f"{rate / base:.2f}" if base else "-"
            note = "safe" if dp <= SAFE_MAX_DP else f"UNSAFE (>{SAFE_MAX_DP})"
            print(f"{size:>5} {variant:<14} {rate:>8.1f} {ratio:>6} {dp:>8.4f}  {note}", flush=True)


if __name__ == "__main__":
    main()
