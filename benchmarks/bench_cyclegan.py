"""CycleGAN training throughput against the reference loop and against the machine's peak.

Every case runs a real training step (2 generators + 2 discriminators, losses, pool, Adam) on
random images. Per case it prints steps/s, image pairs/s, the speedup over the **plain loop**
(the reference implementation's step: batch 1, fp32, one network call per translation, Adam's
default implementation, losses read back every step) at the same image size, the FLOPs of one
step (``torch.utils.flop_counter.FlopCounterMode``: convolutions and matmuls, forward and
backward), the achieved GFLOP/s, and that as a share of the machine's practical peak: a large
fp32 and a large bf16 matmul timed in the same run on the same threads.

The quick profile's default is also checked for equivalence: 50 steps from the same weights
and batches in fp32 and with the default's precision, compared as 10-step means of each loss.

    python benchmarks/bench_cyclegan.py --quick    # 64 px only (~4 minutes on an idle 2-core CPU)
    python benchmarks/bench_cyclegan.py            # also 128 and 256 px (~15 minutes)

Timings on a loaded machine mean nothing: the script prints the load average first. Ratios
within one run are what counts.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from generative.cyclegan.networks import to_model_range
from generative.cyclegan.settings import PROFILE_DEFAULTS, CycleGANSettings
from generative.cyclegan.train import CycleGANTrainer, _lsgan
from harness.training import make_generator

EQUIVALENCE_STEPS = 50
EQUIVALENCE_WINDOW = 10
EQUIVALENCE_TOLERANCE = 0.10  # relative, per loss, on 10-step means


@dataclass(frozen=True)
class Case:
    size: int
    ngf: int
    n_blocks: int
    batch: int
    bf16: bool
    plain: bool = False  # the reference loop instead of the harness trainer's step
    device: str = "cpu"
    tag: str = ""

    @property
    def label(self) -> str:
        kind = "plain loop" if self.plain else "trainer"
        precision = "bf16" if self.bf16 else "fp32"
        return f"{self.size}px ngf{self.ngf} b{self.batch} {precision} {kind} {self.tag}".strip()

    def settings(self) -> CycleGANSettings:
        return CycleGANSettings(image_size=self.size, ngf=self.ngf, ndf=self.ngf, n_blocks=self.n_blocks,
                                batch_size=self.batch, cpu_bf16=self.bf16)


def plain_step(t: CycleGANTrainer, real_a: torch.Tensor, real_b: torch.Tensor,
               gen: torch.Generator) -> dict[str, float]:
    """The reference implementation's step on the trainer's networks: one call per
    translation, the discriminator judging real and fake separately, losses read every step."""
    s = t.settings
    for d in (t.D_A, t.D_B):
        d.requires_grad_(False)
    fake_b, fake_a = t.G_AB(real_a), t.G_BA(real_b)
    rec_a, rec_b = t.G_BA(fake_b), t.G_AB(fake_a)
    loss_adv = _lsgan(t.D_B(fake_b), True) + _lsgan(t.D_A(fake_a), True)
    loss_cycle = s.lambda_cycle * (F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b))
    w = s.lambda_cycle * s.lambda_identity
    loss_idt = w * (F.l1_loss(t.G_AB(real_b), real_b) + F.l1_loss(t.G_BA(real_a), real_a))
    t.opt_G.zero_grad(set_to_none=True)
    (loss_adv + loss_cycle + loss_idt).backward()
    t.opt_G.step()
    for d in (t.D_A, t.D_B):
        d.requires_grad_(True)
    pooled_b, pooled_a = t.pool_B.query(fake_b, gen), t.pool_A.query(fake_a, gen)
    loss_d = 0.5 * (_lsgan(t.D_B(real_b), True) + _lsgan(t.D_B(pooled_b), False)
                    + _lsgan(t.D_A(real_a), True) + _lsgan(t.D_A(pooled_a), False))
    t.opt_D.zero_grad(set_to_none=True)
    loss_d.backward()
    t.opt_D.step()
    return {"loss_G": loss_adv.item(), "loss_cycle": loss_cycle.item(), "loss_identity": loss_idt.item(),
            "loss_D": loss_d.item()}


def make_trainer(case: Case, folder: Path) -> CycleGANTrainer:
    trainer = CycleGANTrainer(case.settings(), torch.device(case.device), seed=0, output_dir=folder,
                              logger=logging.getLogger("bench"), show_progress=False)
    if case.plain:  # the reference's optimizer: Adam's default (foreach) implementation
        for name in ("opt_G", "opt_D"):
            old = getattr(trainer, name)
            setattr(trainer, name, torch.optim.Adam(old.param_groups[0]["params"], lr=case.settings().lr,
                                                    betas=(0.5, 0.999)))
    return trainer


class Bench:
    """A ready-to-step trainer for one case; ``time`` steps it for about ``seconds``."""

    def __init__(self, case: Case, folder: Path) -> None:
        self.case = case
        self.trainer = make_trainer(case, folder)
        self.gen = make_generator(0)
        shape = (case.batch, 1, case.size, case.size)
        self.a = to_model_range(torch.rand(shape, generator=self.gen)).to(case.device)
        self.b = to_model_range(torch.rand(shape, generator=self.gen)).to(case.device)
        with FlopCounterMode(display=False) as counter:
            self.step()  # also the warm-up
        self.flops = counter.get_total_flops()
        _sync(case.device)

    def step(self) -> None:
        if self.case.plain:
            plain_step(self.trainer, self.a, self.b, self.gen)
        else:
            self.trainer._step(self.a, self.b, self.gen)

    def time(self, seconds: float) -> float:
        """Steps per second over at least two steps and about ``seconds``."""
        steps, start = 0, time.perf_counter()
        while steps < 2 or time.perf_counter() - start < seconds:
            self.step()
            steps += 1
        _sync(self.case.device)
        return steps / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of a large n x n matmul: the practical peak of this machine on these threads."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    reps, start = 0, time.perf_counter()
    while reps < 2 or time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def quick_default() -> Case:
    d = CycleGANSettings()  # the class defaults are the quick profile
    return Case(d.image_size, d.ngf, d.n_blocks, d.batch_size, d.cpu_bf16, tag="(quick default)")


def cpu_cases(quick: bool) -> list[Case]:
    """Per size: the plain loop (the baseline), the trainer at batch 1 and at a larger batch in
    fp32 and bf16; the quick default last."""
    default = quick_default()
    shapes = [(default.size, default.ngf, default.n_blocks)]
    if not quick:
        paper = CycleGANSettings(**PROFILE_DEFAULTS["paper"])
        shapes += [(128, default.ngf, default.n_blocks), (paper.image_size, paper.ngf, paper.n_blocks)]
    cases = []
    for size, ngf, blocks in shapes:
        big = 8 if size <= 128 else 2
        cases += [Case(size, ngf, blocks, 1, False, plain=True), Case(size, ngf, blocks, 1, False),
                  Case(size, ngf, blocks, big, False), Case(size, ngf, blocks, 1, True)]
        if Case(size, ngf, blocks, big, True) != replace(default, tag=""):
            cases.append(Case(size, ngf, blocks, big, True))
    return cases + [default]


def equivalence(case: Case, folder: Path) -> list[str]:
    """``case`` against the same trainer in fp32 over EQUIVALENCE_STEPS steps from the same
    weights and batches: the largest relative gap between 10-step means of each loss."""
    losses = {}
    for bf16 in (False, True):
        trainer = make_trainer(Case(case.size, case.ngf, case.n_blocks, case.batch, bf16), folder / str(bf16))
        gen = make_generator(1)
        shape = (EQUIVALENCE_STEPS, case.batch, 1, case.size, case.size)
        data_a, data_b = (to_model_range(torch.rand(shape, generator=gen)) for _ in range(2))
        pool_gen = make_generator(2)
        steps = [trainer._step(a, b, pool_gen) for a, b in zip(data_a, data_b)]
        losses[bf16] = {k: torch.stack([s[k] for s in steps]).float() for k in steps[0]}
    lines, worst = [], 0.0
    for k in losses[False]:
        ref = losses[False][k].view(-1, EQUIVALENCE_WINDOW).mean(1)
        got = losses[True][k].view(-1, EQUIVALENCE_WINDOW).mean(1)
        gap = float(((got - ref).abs() / ref.abs().clamp(min=1e-8)).max())
        worst = max(worst, gap)
        lines.append(f"  {k:14s} fp32 {' '.join(f'{v:.4f}' for v in ref.tolist())}\n"
                     f"  {'':14s} bf16 {' '.join(f'{v:.4f}' for v in got.tolist())}   max gap {gap:.1%}")
    verdict = "within" if worst <= EQUIVALENCE_TOLERANCE else "OUTSIDE"
    return lines + [f"bf16 vs fp32, first {EQUIVALENCE_STEPS} steps: worst gap {worst:.1%}, {verdict} the "
                    f"{EQUIVALENCE_TOLERANCE:.0%} tolerance on {EQUIVALENCE_WINDOW}-step means"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick profile's size only (~4 min on 2 cores)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timing rounds over all cases; the best round counts (default 2)")
    args = parser.parse_args()
    rounds = args.rounds or 2
    seconds = 5.0 if args.quick else 10.0
    torch.manual_seed(0)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"1-minute load average {load:.2f}{'  (LOADED: timings unreliable)' if load > 1.5 else ''}; "
          f"{rounds} round(s) of ~{seconds:.0f} s per case, best round kept")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"practical peak (2048^3 matmul): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    cases = cpu_cases(args.quick)
    best: dict[Case, float] = {}
    flops: dict[Case, int] = {}
    errors: dict[Case, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for i, case in enumerate(cases):
                if case in errors:
                    continue
                try:
                    bench = Bench(case, Path(tmp) / f"{r}-{i}")
                    flops[case] = bench.flops
                    best[case] = max(best.get(case, 0.0), bench.time(seconds))
                except Exception as exc:  # a failing variant is a result too: report it, go on
                    errors[case] = traceback.format_exception_only(type(exc), exc)[-1].strip().splitlines()[0]
        default = cases[-1]
        check = equivalence(default, Path(tmp) / "equivalence") if default.bf16 and default not in errors else []
    print(f"{'case':40s} {'steps/s':>8s} {'pairs/s':>8s} {'speedup':>8s} {'GFLOP/step':>10s} "
          f"{'GFLOP/s':>8s} {'of fp32':>8s} {'of bf16':>8s}")
    for case in cases:
        if case in errors:
            print(f"{case.label:40s} FAILED: {errors[case][:160]}")
            continue
        base = Case(case.size, case.ngf, case.n_blocks, 1, False, plain=True, device=case.device)
        pairs = best[case] * case.batch
        speedup = pairs / (best[base] * base.batch) if base in best else float("nan")
        gflops = flops[case] * best[case] / 1e9
        print(f"{case.label:40s} {best[case]:8.3f} {pairs:8.2f} {speedup:7.2f}x {flops[case] / 1e9:10.1f} "
              f"{gflops:8.0f} {gflops / peak['fp32']:8.0%} {gflops / peak['bf16']:8.0%}")
    for line in check:
        print(line)
    if default in best:
        base = Case(default.size, default.ngf, default.n_blocks, 1, False, plain=True)
        print(f"default speedup: {best[default] * default.batch / best[base]:.2f}x")
        print(f"default share of bf16 peak: {flops[default] * best[default] / 1e9 / peak['bf16']:.0%}")


if __name__ == "__main__":
    main()
