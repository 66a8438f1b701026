"""CycleGAN training throughput: batch size, memory format, bf16 autocast, torch.compile.

Every row runs the real training step (2 generators + 2 discriminators, losses, pool, Adam)
on random images and reports steps/s, image pairs/s and the ratio of pairs/s against the plain
loop at the same image size: batch 1, fp32, eager (the reference implementation's setting),
measured in the same run. Failures (e.g. torch.compile) are caught and printed as rows.

    python benchmarks/bench_cyclegan.py            # 64/128/256 px, every variant (~10+ min)
    python benchmarks/bench_cyclegan.py --quick    # ~3 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config import PROFILES, CycleGANSettings
from harness.training import make_generator
from generative.cyclegan.networks import to_model_range
from generative.cyclegan.train import CycleGANTrainer


@dataclass(frozen=True)
class Case:
    size: int
    ngf: int
    n_blocks: int
    batch: int
    variant: str  # eager | channels_last | bf16 | compile | amp (CUDA)
    device: str = "cpu"
    tag: str = ""

    @property
    def label(self) -> str:
        return f"{self.device} {self.size}px ngf{self.ngf} b{self.batch} {self.variant} {self.tag}".strip()


class Bench:
    """A ready-to-step trainer for one case; ``time`` runs steps for about ``seconds``."""

    def __init__(self, case: Case, folder: Path) -> None:
        self.case = case
        settings = CycleGANSettings(image_size=case.size, ngf=case.ngf, ndf=case.ngf,
                                    n_blocks=case.n_blocks, batch_size=case.batch,
                                    cpu_bf16=case.variant == "bf16")
        self.trainer = CycleGANTrainer(settings, torch.device(case.device), seed=0, output_dir=folder,
                                       logger=logging.getLogger("bench"), amp=case.variant == "amp",
                                       show_progress=False)
        self.gen = make_generator(0)
        shape = (case.batch, 1, case.size, case.size)
        self.a = to_model_range(torch.rand(shape, generator=self.gen)).to(case.device)
        self.b = to_model_range(torch.rand(shape, generator=self.gen)).to(case.device)
        if case.variant == "channels_last":
            for net in (self.trainer.G_AB, self.trainer.G_BA, self.trainer.D_A, self.trainer.D_B):
                net.to(memory_format=torch.channels_last)
            self.a = self.a.contiguous(memory_format=torch.channels_last)
            self.b = self.b.contiguous(memory_format=torch.channels_last)
        if case.variant == "compile":
            for name in ("G_AB", "G_BA", "D_A", "D_B"):
                setattr(self.trainer, name, torch.compile(getattr(self.trainer, name)))
        self.trainer._step(self.a, self.b, self.gen)  # warm-up (and compilation)
        _sync(case.device)

    def time(self, seconds: float) -> float:
        """Image pairs per second over at least one step and about ``seconds``."""
        steps, start = 0, time.perf_counter()
        while steps == 0 or time.perf_counter() - start < seconds:
            self.trainer._step(self.a, self.b, self.gen)
            _sync(self.case.device)
            steps += 1
        return steps * self.case.batch / (time.perf_counter() - start)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_cases(quick: bool) -> list[Case]:
    """Per size: the plain batch-1 fp32 eager loop (the baseline), then the variants."""
    cases = []
    for size, ngf, blocks in ((64, 32, 6), (128, 32, 6), (256, 64, 9)):
        big = 8 if size <= 128 else 2
        cases.append(Case(size, ngf, blocks, 1, "eager"))
        cases.append(Case(size, ngf, blocks, big, "bf16"))
        if size == 256:
            continue
        cases.append(Case(size, ngf, blocks, big, "eager"))
        if not quick or size == 64:
            cases.append(Case(size, ngf, blocks, 1, "bf16"))
            cases.append(Case(size, ngf, blocks, big, "channels_last"))
            cases.append(Case(size, ngf, blocks, big, "compile"))
    default = PROFILES["quick"].cyclegan
    cases.append(Case(default.image_size, default.ngf, default.n_blocks, default.batch_size,
                      "bf16" if default.cpu_bf16 else "eager", tag="(quick default)"))
    return cases


def cuda_cases() -> list[Case]:
    paper = PROFILES["paper"].cyclegan
    return [Case(paper.image_size, paper.ngf, paper.n_blocks, paper.batch_size, variant, "cuda")
            for variant in ("eager", "amp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants, shorter timings (~3 min on 2 cores)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timing rounds over all cases; the best round counts (default 2, --quick 1)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    seconds = 4.0 if args.quick else 10.0
    torch.manual_seed(0)
    cases = cpu_cases(args.quick) + (cuda_cases() if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"cuda={'yes' if torch.cuda.is_available() else 'no'}; {rounds} round(s) of ~{seconds:.0f} s per case, "
          f"best round kept (rounds interleave cases, so a busy machine hurts all alike)")
    best: dict[Case, float] = {}
    errors: dict[Case, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for i, case in enumerate(cases):
                if case in errors:
                    continue
                try:
                    pairs_s = Bench(case, Path(tmp) / f"{r}-{i}").time(seconds)
                except Exception as exc:  # a failing variant is a result too: report it, go on
                    errors[case] = traceback.format_exception_only(type(exc), exc)[-1].strip().splitlines()[0]
                    continue
                best[case] = max(best.get(case, 0.0), pairs_s)
    print(f"{'case':44s} {'steps/s':>8s} {'pairs/s':>8s} {'vs b1 fp32 eager':>17s}")
    for case in cases:
        if case in errors:
            print(f"{case.label:44s} FAILED: {errors[case][:160]}")
            continue
        base = best.get(Case(case.size, case.ngf, case.n_blocks, 1, "eager", case.device))
        ratio = f"{best[case] / base:.2f}x" if base else "n/a"
        print(f"{case.label:44s} {best[case] / case.batch:8.3f} {best[case]:8.2f} {ratio:>17s}")


if __name__ == "__main__":
    main()
