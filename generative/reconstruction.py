"""What every reconstruction-based method shares: train on healthy images, score by residual.

A subclass supplies its network (``build``), its training loss on a batch (``loss``) and how it
makes the healthy version of a batch (``reconstruct_batch``); this base does the rest the same
way for all of them:

- ``fit`` trains on the **no_tumor train images only** (resized to ``image_size``), Adam with
  cosine decay to zero over ``epochs``. Every random draw of an epoch (order, noise, timesteps)
  comes from a generator seeded by ``(seed, epoch)``, and a checkpoint after every epoch holds
  model, optimizer, scheduler and curves, so a resumed run reaches exactly the weights of an
  uninterrupted one.
- ``score`` (the main row) is the paper's plain map, :func:`harness.scoring.baur_scoring`: the
  residual with Baur et al.'s post-processing (positive residuals on FLAIR/T2, 5 x 5 median
  filter, eroded brain mask) and its mean over the brain as the image score; nothing is chosen
  on validation.
- The ``tuned`` variant (reported as ``<name>+tuned``, supervision ``healthy_only+val_masks``)
  scores the same reconstructions with the map and aggregate that
  :func:`harness.scoring.select_scoring` picks on the validation split's lesion masks, by the
  same function that scores test images. Reconstructions of the last two image sets are kept,
  so the variant costs no second pass of the model.
- ``translate(images, "no_tumor")`` is the healthy reconstruction; these methods only model
  healthy anatomy, so they offer no ``tumor`` direction (``translates_to``) and refuse it.
"""

from __future__ import annotations

import abc
import contextlib
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field

from harness.api import NO_TUMOR, TUMOR, FitContext, ImageSet, Method, MethodSettings, ScoreOutput
from harness.scoring import TUNED, baur_scoring, deploy, plain_record, resize, select_scoring
from harness.training import Checkpointer, atomic_torch_save, autocast, progress, seed_everything

INFERENCE_BATCH = 32


class ReconstructionSettings(MethodSettings):
    """Settings every reconstruction method has; defaults are the quick profile."""

    image_size: int = Field(64, ge=16, le=512, description="training and reconstruction size (px)")
    epochs: int = Field(20, ge=1, description="passes over the healthy train images")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (cosine decay to zero)")
    weight_decay: float = Field(0.0, ge=0)
    cpu_bf16: bool = Field(True, description="bf16 autocast for CPU training (scoring stays fp32): 1.4-1.5x "
                           "fp32 for each method in benchmarks/bench_methods.py")


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one epoch's random draws."""
    state = np.random.SeedSequence([seed % 2**64, epoch, 0x5EC0]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


class ReconstructionMethod(Method):
    """Base of ``autoencoder``, ``dae`` and the diffusion methods (:mod:`generative.diffusion`): see the module docstring."""

    capabilities = frozenset({"scores", "maps", "translates"})
    supervision = "healthy_only"
    variants: ClassVar[Mapping[str, str]] = {TUNED: "healthy_only+val_masks"}
    variant_descriptions: ClassVar[Mapping[str, str]] = {
        TUNED: "the same model scored with the map (5 kinds) and aggregate (4) chosen on validation lesion masks"}
    translates_to: ClassVar[frozenset[str]] = frozenset({NO_TUMOR})
    Settings: ClassVar[type[MethodSettings]] = ReconstructionSettings

    def __init__(self, settings: MethodSettings | None = None) -> None:
        super().__init__(settings)
        self.model: torch.nn.Module | None = None
        self.device = torch.device("cpu")
        self.seed = 0
        self.amp = False
        self.model_path: Path | None = None
        self.selected: dict[str, Any] = {}  # the main row's record (nothing selected)
        self.tuned: dict[str, Any] = {}  # the tuned variant's selection
        self.curves: dict[str, list[float]] = {}
        self._healthy: list[tuple[ImageSet, torch.Tensor]] = []  # the last reconstructions, by ImageSet

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def build(self) -> torch.nn.Module:
        """A freshly initialised network (the global RNG is seeded just before)."""

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Training loss on a batch ``x`` (N, 1, s, s) in [0, 1]; random draws from ``g`` only."""

    @abc.abstractmethod
    def reconstruct_batch(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The healthy version of ``x`` (N, 1, s, s) in [0, 1], same shape (eval mode, no grad)."""

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.settings.lr, weight_decay=self.settings.weight_decay)

    def extra_selection(self) -> dict[str, Any]:
        """Method-specific facts recorded beside the selected map (e.g. the noise level)."""
        return {}

    # ------------------------------------------------------------------ training
    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        s = self.settings
        name = self.name or type(self).__name__
        healthy = train.of_label(0).resized(s.image_size).images.float()
        if len(healthy) == 0:
            raise ValueError(f"{name} trains on healthy (no_tumor) images; the train split has none")
        val_healthy = val.of_label(0).resized(s.image_size).images.float()
        self.device, self.seed, self.amp = ctx.device, ctx.seed, ctx.amp
        seed_everything(ctx.seed)
        model = self.build().to(self.device)
        optimizer = self.make_optimizer(model.parameters())
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs)
        curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": [], "lr": [], "seconds": []}
        ckpt = Checkpointer(ctx.output_dir / "checkpoints", keep_last=1)
        start = 0
        if ctx.resume:
            loaded = ckpt.load_last(map_location=self.device)
            if loaded is None:
                ctx.logger.info("%s: no checkpoint to resume from; training from scratch", name)
            else:
                start, state = loaded
                changed = sorted(k for k, v in s.model_dump().items() if state["settings"].get(k) != v)
                if changed:
                    raise ValueError(f"cannot resume {name}: the checkpoint was trained with other settings "
                                     f"({', '.join(changed)})")
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                curves = {k: list(v) for k, v in state["curves"].items()}
                ctx.logger.info("%s: resumed after epoch %d of %d", name, start, s.epochs)
        ctx.logger.info("%s: training on %d healthy images at %d px for %d epochs", name, len(healthy),
                        s.image_size, s.epochs)
        for epoch in range(start + 1, s.epochs + 1):
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, optimizer, healthy, epoch, ctx)
            val_loss = self._val_loss(model, val_healthy)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            seconds = time.perf_counter() - t0
            for key, value in zip(curves, (epoch, train_loss, val_loss, lr, seconds)):
                curves[key].append(value)
            ctx.logger.info("%s epoch %d/%d: train_loss=%.5f val_loss=%.5f lr=%.2e (%.1fs)", name, epoch,
                            s.epochs, train_loss, val_loss, lr, seconds)
            ckpt.save(epoch, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "curves": curves,
                              "settings": s.model_dump()})
        self.model, self.curves = model.eval(), curves
        self.model_path = ctx.output_dir / "model.pt"
        atomic_torch_save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                           "settings": s.model_dump(), "method": name}, self.model_path)
        self._healthy = []
        healthy_val = self.healthy_version(val)
        scores, maps = baur_scoring(val, healthy_val)
        self.selected = {**plain_record(val, scores, maps, "residual (Baur et al. post-processing)", "mean"),
                         "image_size": s.image_size, **self.extra_selection()}
        self.tuned = {**select_scoring(val, healthy_val), "image_size": s.image_size, **self.extra_selection()}
        ctx.logger.info("%s: main row val AUROC %s, pixel AUROC %s; %s+%s selected %s map with %s aggregate by %s "
                        "(val AUROC %s, pixel AUROC %s)", name, _fmt(self.selected["val_auroc"]),
                        _fmt(self.selected["val_pixel_auroc"]), name, TUNED, self.tuned["map"],
                        self.tuned["aggregate"], self.tuned["criterion"], _fmt(self.tuned["val_auroc"]),
                        _fmt(self.tuned["val_pixel_auroc"]))

    def _autocast(self, training: bool) -> contextlib.AbstractContextManager:
        """CUDA: the harness policy (``amp``). CPU: bf16 for training steps when ``cpu_bf16``;
        reconstructions stay fp32, so bf16 rounding never shows up in the residual maps."""
        if self.device.type == "cpu":
            use = training and self.settings.cpu_bf16
            return torch.autocast("cpu", dtype=torch.bfloat16) if use else contextlib.nullcontext()
        return autocast(self.device, self.amp)

    def _train_epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                     epoch: int, ctx: FitContext) -> float:
        g = torch.Generator().manual_seed(epoch_seed(ctx.seed, epoch))
        batches = torch.randperm(len(x), generator=g).split(self.settings.batch_size)
        model.train()
        total = 0.0
        bar = progress(batches, total=len(batches), desc=f"{self.name} epoch {epoch}/{self.settings.epochs}",
                       enabled=ctx.progress, unit="batch")
        for idx in bar:
            with self._autocast(training=True):
                loss = self.loss(model, x[idx].to(self.device), g)
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        return total / len(x)

    @torch.no_grad()
    def _val_loss(self, model: torch.nn.Module, x: torch.Tensor) -> float:
        """The training loss on healthy val images, with the same draws every epoch."""
        if len(x) == 0:
            return float("nan")
        g = torch.Generator().manual_seed(epoch_seed(self.seed, 0))
        model.eval()
        total = 0.0
        for batch in x.split(INFERENCE_BATCH):
            with self._autocast(training=False):
                total += float(self.loss(model, batch.to(self.device), g)) * len(batch)
        return total / len(x)

    # ------------------------------------------------------------------ inference
    def _require_fitted(self) -> torch.nn.Module:
        if self.model is None:
            raise RuntimeError(f"{self.name}: call fit() before score() or translate()")
        return self.model

    def healthy_version(self, images: ImageSet) -> torch.Tensor:
        """(N, 1, s, s) reconstructions at the model's size, on the CPU, in [0, 1]. The last two
        ImageSets' are kept (the runner scores val and test by the main row, then by each
        variant): the same object gets the same tensor back without running the model again."""
        for seen, healthy in self._healthy:
            if seen is images:
                return healthy
        healthy = self._reconstruct(images)
        self._healthy = [*self._healthy[-1:], (images, healthy)]
        return healthy

    @torch.no_grad()
    def _reconstruct(self, images: ImageSet) -> torch.Tensor:
        model = self._require_fitted().eval()
        x = images.resized(self.settings.image_size).images.float()
        out = []
        for batch in x.split(INFERENCE_BATCH):
            with self._autocast(training=False):
                y = self.reconstruct_batch(model, batch.to(self.device))
            out.append(y.float().clamp(0, 1).cpu())
        return torch.cat(out) if out else x.new_zeros(x.shape)

    def score(self, images: ImageSet) -> ScoreOutput:
        scores, maps = baur_scoring(images, self.healthy_version(images))
        return ScoreOutput(scores=scores, maps=maps.numpy())

    def score_variant(self, images: ImageSet, variant: str) -> ScoreOutput:
        if variant != TUNED:
            raise ValueError(f"{self.name} has no variant {variant!r}; it has {TUNED!r}")
        scores, maps = deploy(images, self.healthy_version(images), self.tuned)
        return ScoreOutput(scores=scores, maps=maps.numpy())

    def translate(self, images: torch.Tensor, to_domain: str) -> torch.Tensor:
        if to_domain == TUMOR:
            raise ValueError(f"{self.name} models healthy anatomy only: it reconstructs images as "
                             f"{NO_TUMOR!r} and cannot translate to {TUMOR!r}")
        if to_domain != NO_TUMOR:
            raise ValueError(f"to_domain must be {NO_TUMOR!r}, got {to_domain!r}")
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"expected images shaped (N, 1, H, W), got {tuple(images.shape)}")
        n, _, h, w = images.shape
        as_set = ImageSet(images=images.float().cpu(), labels=torch.zeros(n, dtype=torch.long),
                          ids=[str(i) for i in range(n)], brain=torch.ones(images.shape, dtype=torch.bool))
        return resize(self._reconstruct(as_set), (h, w)).clamp(0, 1)

    # ------------------------------------------------------------------ records
    def selection(self) -> dict[str, Any]:
        return dict(self.selected)

    def variant_selection(self, variant: str) -> dict[str, Any]:
        return dict(self.tuned) if variant == TUNED else {}

    def checkpoint(self) -> Path | None:
        return self.model_path

    def training_curves(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.curves.items()}


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"

