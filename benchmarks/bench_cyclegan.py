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
import dataclasses
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
    steps: int
    device: str = "cpu"
    tag: str = ""

    @property
    def label(self) -> str:
        return f"{self.device} {self.size}px ngf{self.ngf} b{self.batch} {self.variant} {self.tag}".strip()


def _trainer(case: Case, folder: Path) -> CycleGANTrainer:
    settings = CycleGANSettings(
        image_size=case.size, ngf=case.ngf, ndf=case.ngf, n_blocks=case.n_blocks,
        batch_size=case.batch, cpu_bf16=case.variant == "bf16",
    )
    return CycleGANTrainer(settings, torch.device(case.device), seed=0, output_dir=folder,
                           logger=logging.getLogger("bench"), amp=case.variant == "amp",
                           show_progress=False)


def measure(case: Case, warmup: int = 1) -> tuple[float, float]:
    """(steps/s, image pairs/s) of ``case``; raises whatever the variant raises."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(case, Path(tmp))
        g = make_generator(0)
        a = to_model_range(torch.rand(case.batch, 1, case.size, case.size, generator=g)).to(case.device)
        b = to_model_range(torch.rand(case.batch, 1, case.size, case.size, generator=g)).to(case.device)
        if case.variant == "channels_last":
            for net in (trainer.G_AB, trainer.G_BA, trainer.D_A, trainer.D_B):
                net.to(memory_format=torch.channels_last)
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        if case.variant == "compile":
            for name in ("G_AB", "G_BA", "D_A", "D_B"):
                setattr(trainer, name, torch.compile(getattr(trainer, name)))
        for _ in range(warmup):
            trainer._step(a, b, g)
        _sync(case.device)
        start = time.perf_counter()
        for _ in range(case.steps):
            trainer._step(a, b, g)
        _sync(case.device)
        elapsed = time.perf_counter() - start
    return case.steps / elapsed, case.steps * case.batch / elapsed


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cpu_cases(quick: bool) -> list[Case]:
    """Per size: the plain batch-1 loop first (the baseline), then the variants."""
    cases = []
    sizes = [(64, 32, 6, 12 if quick else 30), (128, 32, 6, 4 if quick else 10), (256, 64, 9, 1 if quick else 2)]
    for size, ngf, blocks, steps in sizes:
        big = 8 if size <= 128 else 2
        fewer = max(1, steps // big)
        cases.append(Case(size, ngf, blocks, 1, "eager", steps))
        if size == 256:
            cases.append(Case(size, ngf, blocks, big, "bf16", fewer))
            continue
        cases.append(Case(size, ngf, blocks, big, "eager", fewer))
        cases.append(Case(size, ngf, blocks, big, "bf16", fewer))
        if not quick or size == 64:
            cases.append(Case(size, ngf, blocks, 1, "bf16", steps))
            cases.append(Case(size, ngf, blocks, big, "channels_last", fewer))
            cases.append(Case(size, ngf, blocks, big, "compile", fewer))
    default = PROFILES["quick"].cyclegan
    steps = max(2, (24 if quick else 60) // default.batch_size)
    cases.append(Case(default.image_size, default.ngf, default.n_blocks, default.batch_size,
                      "bf16" if default.cpu_bf16 else "eager", steps, tag="(quick default)"))
    return cases


def cuda_cases(quick: bool) -> list[Case]:
    paper = PROFILES["paper"].cyclegan
    steps = 10 if quick else 40
    return [Case(paper.image_size, paper.ngf, paper.n_blocks, paper.batch_size, variant, steps, "cuda")
            for variant in ("eager", "amp")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and variants (~3 min on 2 cores)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = cpu_cases(args.quick) + (cuda_cases(args.quick) if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"cuda={'yes' if torch.cuda.is_available() else 'no'}; quick profile default: "
          f"{dataclasses.asdict(PROFILES['quick'].cyclegan)}")
    print(f"{'case':42s} {'steps/s':>9s} {'pairs/s':>9s} {'vs b1 fp32':>11s}")
    baseline: dict[tuple[str, int, int], float] = {}
    for case in cases:
        key = (case.device, case.size, case.ngf)
        try:
            steps_s, pairs_s = measure(case)
        except Exception as exc:  # report and continue: a failing variant is a result too
            first = traceback.format_exception_only(type(exc), exc)[-1].strip().splitlines()[0]
            print(f"{case.label:42s} FAILED: {first[:150]}")
            continue
        if case.batch == 1 and case.variant == "eager":
            baseline.setdefault(key, pairs_s)
        ratio = f"{pairs_s / baseline[key]:.2f}x" if key in baseline else "n/a"
        print(f"{case.label:42s} {steps_s:9.3f} {pairs_s:9.2f} {ratio:>11s}", flush=True)


if __name__ == "__main__":
    main()
