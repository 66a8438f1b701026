"""CycleGAN training: losses, image history pool, learning-rate schedule, checkpoint/resume.

Domain A is *tumor*, domain B is *no_tumor*. ``G_AB`` translates tumor -> healthy (the
generator the anomaly scorer uses), ``G_BA`` healthy -> tumor; ``D_A`` judges whether an image
is a real tumor image, ``D_B`` whether it is a real healthy one.

Schedule: ``epochs`` at the base learning rate, then ``decay_epochs`` with a linear decay
(the reference rule: during decay epoch k = 1..decay_epochs the rate is
``lr * (1 - k / (decay_epochs + 1))``), so a run has ``epochs + decay_epochs`` epochs in all.

Exact resume: every random choice inside an epoch (unpaired sampling, flips, pool swaps) is
drawn from a generator seeded by ``(seed, epoch)``, and a checkpoint after every epoch holds
networks, optimizers, schedulers, pool contents and curves. A run killed mid-epoch resumes
from the last epoch boundary and ends with the same weights as an uninterrupted run.

Speed on a CPU (``benchmarks/bench_cyclegan.py``): every batch is full (both domains are
cycled), so shapes never change; each generator runs once per step on everything it
translates (instance norm is per image, so batching the calls changes nothing but speed);
losses stay on the device until the epoch ends (no host sync per step); Adam is fused.

Learning curve: ``fit(evaluate=...)`` calls the caller's evaluation after every epoch and
records what it returns (e.g. validation AUROCs, FID) in ``curves`` beside the losses.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from generative.cyclegan.settings import CycleGANSettings
from harness.training import Checkpointer, autocast, make_generator, progress, seed_everything
from generative.cyclegan.networks import (
    PatchDiscriminator, ResnetGenerator, check_image_size, discriminator_layers, from_model_range,
    init_weights, patch_grid, receptive_field, to_model_range,
)

CURVE_KEYS = ("loss_G", "loss_D", "loss_cycle", "loss_identity", "lr")
N_SAMPLES = 4  # images per domain in the sample grids

Evaluation = Callable[[], Mapping[str, float | None]]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random choices; depends only on the run seed and the epoch."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**63)


class LinearDecay:
    """LR multiplier: 1 for ``epochs`` epochs, then linear to zero over ``decay_epochs``.
    A class (not a lambda) so the scheduler's state dict is complete and picklable."""

    def __init__(self, epochs: int, decay_epochs: int) -> None:
        self.epochs = epochs
        self.decay_epochs = decay_epochs

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - self.epochs) / float(self.decay_epochs + 1)


class ImagePool:
    """History of generated images (Shrivastava et al.): the discriminator sees a mix of current
    and older fakes, which damps oscillation. Random choices come from the caller's generator."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per image: while the pool fills, store it and return it; then with probability 1/2
        return a random stored image and store this one in its place, else return it."""
        if self.size == 0:
            return batch
        batch = batch.detach().float()
        swap = (torch.rand(len(batch), generator=generator) > 0.5).tolist()
        slots = torch.randint(self.size, (len(batch),), generator=generator).tolist()
        out = list(batch)
        for i, image in enumerate(batch):
            if len(self.images) < self.size:
                self.images.append(image.clone())
            elif swap[i]:
                out[i] = self.images[slots[i]]
                self.images[slots[i]] = image.clone()
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [im.cpu() for im in self.images]}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.size = int(state["size"])
        self.images = [im.to(device) for im in state["images"]]


class CycleGANTrainer:
    """Owns the four networks, their optimizers and schedules; ``fit`` trains (or resumes)."""

    def __init__(self, settings: CycleGANSettings, device: torch.device, seed: int,
                 output_dir: Path, logger: logging.Logger, amp: bool = False,
                 show_progress: bool = True) -> None:
        check_image_size(settings.image_size)
        if settings.epochs + settings.decay_epochs < 1:
            raise ValueError("cyclegan.epochs + cyclegan.decay_epochs must be at least 1")
        self.settings = settings
        self.device = device
        self.seed = seed
        self.output_dir = Path(output_dir)
        self.logger = logger
        self.amp = amp
        self.show_progress = show_progress

        init = make_generator(seed)
        s = settings
        self.d_layers = s.d_layers or discriminator_layers(s.image_size)
        self.G_AB = ResnetGenerator(1, s.ngf, s.n_blocks, s.upsample)
        self.G_BA = ResnetGenerator(1, s.ngf, s.n_blocks, s.upsample)
        self.D_A = PatchDiscriminator(1, s.ndf, n_layers=self.d_layers)
        self.D_B = PatchDiscriminator(1, s.ndf, n_layers=self.d_layers)
        for net in (self.G_AB, self.G_BA, self.D_A, self.D_B):
            init_weights(net, init)
            net.to(device)
        adam = {"lr": s.lr, "betas": (0.5, 0.999), "fused": True}
        self.opt_G = torch.optim.Adam([*self.G_AB.parameters(), *self.G_BA.parameters()], **adam)
        self.opt_D = torch.optim.Adam([*self.D_A.parameters(), *self.D_B.parameters()], **adam)
        rule = LinearDecay(s.epochs, s.decay_epochs)
        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, rule)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, rule)
        self.pool_A = ImagePool(s.pool_size)
        self.pool_B = ImagePool(s.pool_size)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._fp16())
        self.curves: dict[str, list[float | None]] = {"epoch": [], **{k: [] for k in CURVE_KEYS}}
        self.checkpointer = Checkpointer(self.output_dir / "checkpoints")

    @property
    def total_epochs(self) -> int:
        return self.settings.epochs + self.settings.decay_epochs

    def discriminator(self) -> dict[str, int]:
        """What the PatchGAN judges at this image size (recorded in run.json)."""
        size = self.settings.image_size
        return {"d_layers": self.d_layers, "receptive_field_px": receptive_field(self.d_layers),
                "patch_grid": patch_grid(size, self.d_layers), "image_size": size}

    # -- precision -------------------------------------------------------------------------
    def _fp16(self) -> bool:
        return (self.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported())

    def _autocast(self) -> contextlib.AbstractContextManager:
        """CUDA: the harness policy (``amp``). CPU: bf16 autocast when ``cpu_bf16`` is set."""
        if self.device.type == "cpu" and self.settings.cpu_bf16:
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return autocast(self.device, self.amp)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(),
            "G_AB": self.G_AB.state_dict(), "G_BA": self.G_BA.state_dict(),
            "D_A": self.D_A.state_dict(), "D_B": self.D_B.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "sched_G": self.sched_G.state_dict(), "sched_D": self.sched_D.state_dict(),
            "pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict(),
            "scaler": self.scaler.state_dict(), "curves": self.curves,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["settings"]
        if saved != self.settings.model_dump():
            diff = sorted(k for k in saved if saved[k] != getattr(self.settings, k, None))
            raise ValueError("cannot resume: the checkpoint was trained with different cyclegan "
                             f"settings ({', '.join(diff)})")
        for name in ("G_AB", "G_BA", "D_A", "D_B", "opt_G", "opt_D", "sched_G", "sched_D", "scaler"):
            getattr(self, name).load_state_dict(state[name])
        self.pool_A.load_state_dict(state["pool_A"], self.device)
        self.pool_B.load_state_dict(state["pool_B"], self.device)
        self.curves = {k: list(v) for k, v in state["curves"].items()}

    # -- training --------------------------------------------------------------------------
    def steps_per_epoch(self, n_a: int, n_b: int) -> int:
        """One epoch = one pass over the larger domain, in full batches."""
        return math.ceil(max(n_a, n_b) / self.settings.batch_size)

    def fit(self, images_a: torch.Tensor, images_b: torch.Tensor, resume: bool = False,
            evaluate: Evaluation | None = None) -> None:
        """Train on tumor images ``images_a`` and healthy images ``images_b`` ((N, 1, S, S) in
        [0, 1] at ``settings.image_size``); with ``resume``, continue from the last checkpoint.
        ``evaluate`` (if given) runs after every epoch; its values join the curves."""
        size = self.settings.image_size
        for name, images in (("tumor", images_a), ("no_tumor", images_b)):
            if images.ndim != 4 or images.shape[1] != 1 or tuple(images.shape[-2:]) != (size, size):
                raise ValueError(f"{name} training images must be (N, 1, {size}, {size}), got {tuple(images.shape)}")
            if len(images) == 0:
                raise ValueError(f"cyclegan needs {name} training images; the train split has none")
        start = 0
        if resume:
            loaded = self.checkpointer.load_last(map_location=self.device)
            if loaded is None:
                self.logger.info("cyclegan: no checkpoint to resume from; training from scratch")
            else:
                start, state = loaded
                self.load_state_dict(state)
                self.logger.info("cyclegan: resumed after epoch %d of %d", start, self.total_epochs)
        images_a = images_a.to(self.device)
        images_b = images_b.to(self.device)
        n_steps = self.steps_per_epoch(len(images_a), len(images_b))
        bar = progress(None, total=n_steps * (self.total_epochs - start), desc="cyclegan",
                       enabled=self.show_progress, unit="step")
        try:
            for epoch in range(start, self.total_epochs):
                values = self._epoch(epoch, images_a, images_b, bar)
                if evaluate is not None:
                    values.update(evaluate())
                self._record(epoch, values)
                bar.set_postfix(epoch=f"{epoch + 1}/{self.total_epochs}", G=f"{values['loss_G']:.3f}",
                                D=f"{values['loss_D']:.3f}", cyc=f"{values['loss_cycle']:.3f}")
                if (epoch + 1) % max(1, self.settings.sample_every) == 0 or epoch + 1 == self.total_epochs:
                    self._save_samples(epoch, images_a, images_b)
                self.checkpointer.save(epoch + 1, self.state_dict())
        finally:
            bar.close()

    def _epoch(self, epoch: int, images_a: torch.Tensor, images_b: torch.Tensor,
               bar: Any) -> dict[str, float | None]:
        """One epoch; the mean of each loss over its steps (read from the device once, here)."""
        seed_everything(epoch_seed(self.seed, epoch))
        gen = make_generator(epoch_seed(self.seed, epoch))
        for net in (self.G_AB, self.G_BA, self.D_A, self.D_B):
            net.train()
        lr = self.opt_G.param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        for real_a, real_b in self._batches(images_a, images_b, gen):
            for k, v in self._step(real_a, real_b, gen).items():
                sums[k] = sums[k] + v if k in sums else v
            steps += 1
            bar.update(1)
        self.sched_G.step()
        self.sched_D.step()
        return {"lr": lr, **{k: float(v.item()) / steps for k, v in sums.items()}}

    def _batches(self, images_a: torch.Tensor, images_b: torch.Tensor,
                 gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unpaired full batches: each domain in its own random order, cycled (reshuffled) to
        fill the last batch; random left-right flips."""
        bs = self.settings.batch_size
        n = self.steps_per_epoch(len(images_a), len(images_b)) * bs
        order_a = _cycled_permutation(len(images_a), n, gen)
        order_b = _cycled_permutation(len(images_b), n, gen)
        flip_a = torch.rand(n, generator=gen) < 0.5
        flip_b = torch.rand(n, generator=gen) < 0.5
        for i in range(0, n, bs):
            a = _flip(images_a[order_a[i:i + bs].to(images_a.device)], flip_a[i:i + bs])
            b = _flip(images_b[order_b[i:i + bs].to(images_b.device)], flip_b[i:i + bs])
            yield to_model_range(a), to_model_range(b)

    def _step(self, real_a: torch.Tensor, real_b: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One optimisation step of both generators, then both discriminators; the losses are
        returned detached, on the device.

        Each generator runs once on everything it translates: G_AB on (real_a, real_b) gives
        fake_b and identity_b; G_BA on (real_b, real_a, fake_b) gives fake_a, identity_a and
        rec_a; G_AB on fake_a gives rec_b. Each discriminator judges real and pooled fakes in
        one call."""
        s = self.settings
        n = len(real_a)
        identity = s.lambda_identity > 0
        for d in (self.D_A, self.D_B):
            d.requires_grad_(False)
        with self._autocast():
            out_ab = self.G_AB(torch.cat([real_a, real_b]) if identity else real_a)
            fake_b = out_ab[:n]
            out_ba = self.G_BA(torch.cat([real_b, real_a, fake_b]) if identity else torch.cat([real_b, fake_b]))
            fake_a, rec_a = out_ba[:n], out_ba[-n:]
            rec_b = self.G_AB(fake_a)
            loss_adv = _lsgan(self.D_B(fake_b), True) + _lsgan(self.D_A(fake_a), True)
            loss_cycle = s.lambda_cycle * (F.l1_loss(rec_a.float(), real_a) + F.l1_loss(rec_b.float(), real_b))
            if identity:
                w = s.lambda_cycle * s.lambda_identity
                loss_idt = w * (F.l1_loss(out_ab[n:].float(), real_b) + F.l1_loss(out_ba[n:2 * n].float(), real_a))
            else:
                loss_idt = torch.zeros((), device=real_a.device)
            loss_g = loss_adv + loss_cycle + loss_idt
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_G)

        for d in (self.D_A, self.D_B):
            d.requires_grad_(True)
        pooled_b = self.pool_B.query(fake_b, gen)
        pooled_a = self.pool_A.query(fake_a, gen)
        with self._autocast():
            loss_d = (_discriminator_loss(self.D_B, real_b, pooled_b)
                      + _discriminator_loss(self.D_A, real_a, pooled_a))
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_D)
        self.scaler.update()
        return {"loss_G": loss_adv.detach(), "loss_cycle": loss_cycle.detach(),
                "loss_identity": loss_idt.detach(), "loss_D": loss_d.detach()}

    def _record(self, epoch: int, values: dict[str, float | None]) -> None:
        self.curves["epoch"].append(epoch + 1)
        for k, v in values.items():
            # a key an evaluation adds late is None for the epochs before it
            self.curves.setdefault(k, [None] * epoch).append(None if v is None else float(v))
        self.logger.info(
            "cyclegan epoch %d/%d: G_adv %.4f  cycle %.4f  identity %.4f  D %.4f  lr %.2e%s",
            epoch + 1, self.total_epochs, values["loss_G"], values["loss_cycle"],
            values["loss_identity"], values["loss_D"], values["lr"],
            "".join(f"  {k} {_fmt(v)}" for k, v in values.items() if k not in CURVE_KEYS),
        )

    @torch.no_grad()
    def _save_samples(self, epoch: int, images_a: torch.Tensor, images_b: torch.Tensor) -> None:
        """A PNG grid; rows: real tumor | -> healthy | cycled back, real healthy | -> tumor | back."""
        self.G_AB.eval()
        self.G_BA.eval()
        a = to_model_range(images_a[:N_SAMPLES])
        b = to_model_range(images_b[:N_SAMPLES])
        fake_b, fake_a = self.G_AB(a), self.G_BA(b)
        rows = [a, fake_b, self.G_BA(fake_b), b, fake_a, self.G_AB(fake_a)]
        grid = make_grid(torch.cat([from_model_range(r.float()) for r in rows]).cpu(),
                         nrow=max(len(a), len(b)), padding=2, pad_value=1.0)
        folder = self.output_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        save_image(grid, folder / f"epoch-{epoch + 1:03d}.png")


def _lsgan(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss against an all-ones (real) or all-zeros (fake) target."""
    prediction = prediction.float()
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def _discriminator_loss(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (LSGAN(real -> 1) + LSGAN(fake -> 0)), real and fake judged in one call."""
    out = d(torch.cat([real, fake.to(real.dtype)]))
    return 0.5 * (_lsgan(out[:len(real)], True) + _lsgan(out[len(real):], False))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _cycled_permutation(count: int, length: int, gen: torch.Generator) -> torch.Tensor:
    parts, total = [], 0
    while total < length:
        parts.append(torch.randperm(count, generator=gen))
        total += count
    return torch.cat(parts)[:length]


def _flip(batch: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    flip = flip.to(batch.device).view(-1, 1, 1, 1)
    return torch.where(flip, batch.flip(-1), batch)

