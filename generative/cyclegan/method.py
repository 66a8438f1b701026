"""The registered method ``cyclegan``: tumor <-> no_tumor translation as an anomaly scorer.

``fit`` trains the CycleGAN on the train split (tumor = domain A, no_tumor = domain B).
``score`` (the main row) translates every image to healthy with G_AB and scores how much its
**structure** had to change, as the seed project framed the CycleGAN (structural consistency rather
than pixel-level reconstruction; :func:`harness.scoring.structural_scoring`): the map is 1 - local
SSIM(translation, x) inside the brain, the image score its mean; nothing is chosen on validation.

The ``residual`` variant (``cyclegan+residual``, supervision ``image_labels``: it uses nothing
more) scores the same translations by the pixel difference, as Fixed-Point GAN does
(:func:`harness.scoring.fixed_point_scoring`): |translation - x| inside the brain, its maximum.

The ``tuned`` variant (reported as ``cyclegan+tuned``, supervision ``image_labels+val_masks``)
scores the same translations with the map (raw residual, 1-SSIM, or the gain/offset-matched
residual: |d|, its brighter or darker part) and aggregate (max, top1, top5, mean) picked on the
validation split by :func:`harness.scoring.select_scoring`: the map by pixel AUROC against the
lesion masks when val has them, the aggregate by image AUROC. Selection and scoring share one
code path, so its recorded validation AUROC is the deployed scorer's. The last two image sets'
translations are kept, so the variant costs no second pass of the generator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.api import NO_TUMOR, TUMOR, FitContext, ImageSet, Method, ScoreOutput, register_method
from harness.scoring import (TUNED, deploy, fixed_point_scoring, plain_record, resize, select_scoring,
                             structural_scoring)
from harness.training import make_generator
from generative.cyclegan.networks import from_model_range, to_model_range
from generative.cyclegan.settings import PROFILE_DEFAULTS, CycleGANSettings
from generative.cyclegan.train import CycleGANTrainer

INFERENCE_BATCH = 32
RESIDUAL = "residual"  # the pixel-difference variant (Fixed-Point GAN's map and maximum)


@register_method("cyclegan")
class CycleGANMethod(Method):
    capabilities = frozenset({"scores", "maps", "translates"})
    supervision = "image_labels"
    variants: ClassVar[Mapping[str, str]] = {RESIDUAL: "image_labels", TUNED: "image_labels+val_masks"}
    variant_descriptions: ClassVar[Mapping[str, str]] = {
        RESIDUAL: "the same translations scored by the pixel difference |translation - image| in the brain, "
                  "image score its maximum (Fixed-Point GAN); nothing chosen on validation",
        TUNED: "the same translations scored with the map (5 kinds, e.g. the gain/offset-matched residual) and "
               "aggregate (4) chosen on validation lesion masks"}
    description = ("CycleGAN tumor<->no_tumor; anomaly map = 1 - local SSIM(tumor->healthy translation, image) in "
                   "the brain (structural consistency), image score = its mean; cyclegan+residual: "
                   "|translation - image| and its maximum (Fixed-Point GAN); cyclegan+tuned: map and aggregate "
                   "chosen on val lesion masks")
    paper = ("Zhu et al., Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks, ICCV 2017, "
             "as the seed project scored it (structural consistency); cyclegan+residual: Siddiquee et al., "
             "Fixed-Point GAN, ICCV 2019")
    departures = ("quick: 64 px, ngf/ndf 32, 6 residual blocks, 4+2 epochs, batch 8, resize-convolution upsampling "
                  "(paper profile as the reference: 256 px, 64 filters, 9 blocks, 100+100 epochs, batch 1, "
                  "transposed convolutions)")
    Settings = CycleGANSettings
    profile_defaults = PROFILE_DEFAULTS

    def __init__(self, settings: CycleGANSettings | None = None) -> None:
        super().__init__(settings)
        self.trainer: CycleGANTrainer | None = None
        self.selected: dict[str, object] = {}  # the main row's record (nothing selected)
        self.residual: dict[str, object] = {}  # the residual variant's record (nothing selected)
        self.tuned: dict[str, object] = {}  # the tuned variant's selection
        self._healthy: list[tuple[ImageSet, torch.Tensor]] = []  # the last translations, by ImageSet

    # -- training --------------------------------------------------------------------------
    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        s: CycleGANSettings = self.settings
        small = train.resized(s.image_size)
        images_a = _limit(small.of_label(1).images, s.max_train_per_domain, ctx.seed)
        images_b = _limit(small.of_label(0).images, s.max_train_per_domain, ctx.seed + 1)
        for name, images in ((TUMOR, images_a), (NO_TUMOR, images_b)):
            if len(images) == 0:
                raise ValueError(f"cyclegan needs {name} images in the train split; it has none")
        ctx.logger.info("cyclegan: training on %d tumor and %d no_tumor images at %d px for %d+%d epochs",
                        len(images_a), len(images_b), s.image_size, s.epochs, s.decay_epochs)
        self.trainer = CycleGANTrainer(s, ctx.device, ctx.seed, ctx.output_dir, ctx.logger,
                                       amp=ctx.amp, show_progress=ctx.progress)
        self.selected, self.residual, self.tuned = {}, {}, {}
        self.trainer.fit(images_a, images_b, resume=ctx.resume, evaluate=lambda: self._evaluate(val, ctx.mri_fid))
        if not self.selected:  # resumed after the last epoch: no evaluation ran
            self._select(val)
        ctx.logger.info("cyclegan: main row val AUROC %s, pixel AUROC %s; cyclegan+%s val AUROC %s, pixel AUROC %s; "
                        "cyclegan+%s selected %s map with %s aggregate by %s (val AUROC %s, pixel AUROC %s)",
                        _fmt(self.selected["val_auroc"]), _fmt(self.selected["val_pixel_auroc"]), RESIDUAL,
                        _fmt(self.residual["val_auroc"]), _fmt(self.residual["val_pixel_auroc"]), TUNED, self.tuned["map"], self.tuned["aggregate"],
                        self.tuned["criterion"], _fmt(self.tuned["val_auroc"]), _fmt(self.tuned["val_pixel_auroc"]))

    def _select(self, val: ImageSet) -> None:
        """The main row's record and the tuned variant's selection with the generator as it is now."""
        self._healthy = []  # the generator changed since any kept translation
        healthy = self.to_healthy(val)
        self.selected = plain_record(val, *structural_scoring(val, healthy),
                                     "1 - local SSIM(translation, image) (structural consistency)", "mean")
        self.residual = plain_record(val, *fixed_point_scoring(val, healthy),
                                     "|translation - image| (Fixed-Point GAN)", "max")
        self.tuned = select_scoring(val, healthy)

    def _evaluate(self, val: ImageSet, mri_fid: Callable[[torch.Tensor, torch.Tensor], float | None] | None
                  ) -> dict[str, float | None]:
        """After every epoch, for the learning curve: the main row's validation image and pixel
        AUROC and the tuned variant's as they would be deployed now (after the last epoch they are
        the records), and, when the run has an MRI feature network, the FID of validation images
        translated into each domain against that domain's real validation images."""
        self._select(val)
        values = {"val_auroc": self.selected["val_auroc"], "val_pixel_auroc": self.selected["val_pixel_auroc"],
                  "val_auroc_residual": self.residual["val_auroc"],
                  "val_pixel_auroc_residual": self.residual["val_pixel_auroc"],
                  "val_auroc_tuned": self.tuned["val_auroc"], "val_pixel_auroc_tuned": self.tuned["val_pixel_auroc"]}
        if mri_fid is not None:
            tumor, healthy = val.of_label(1).images, val.of_label(0).images
            values["val_mri_fid_no_tumor"] = mri_fid(healthy, self.translate(tumor, NO_TUMOR))
            values["val_mri_fid_tumor"] = mri_fid(tumor, self.translate(healthy, TUMOR))
        return values

    # -- inference -------------------------------------------------------------------------
    def score(self, images: ImageSet) -> ScoreOutput:
        healthy = self.to_healthy(images)
        scores, maps = structural_scoring(images, healthy)
        translated = resize(healthy, tuple(images.images.shape[-2:]))
        return ScoreOutput(scores=scores, maps=maps.numpy(),
                           extras={"translated": translated.squeeze(1).numpy()})

    def score_variant(self, images: ImageSet, variant: str) -> ScoreOutput:
        if variant == RESIDUAL:
            scores, maps = fixed_point_scoring(images, self.to_healthy(images))
        elif variant == TUNED:
            scores, maps = deploy(images, self.to_healthy(images), self.tuned)
        else:
            raise ValueError(f"cyclegan has no variant {variant!r}; it has {sorted(self.variants)}")
        return ScoreOutput(scores=scores, maps=maps.numpy())

    def translate(self, images: torch.Tensor, to_domain: str) -> torch.Tensor:
        self._require_fitted()
        assert self.trainer is not None
        if to_domain == NO_TUMOR:
            generator = self.trainer.G_AB
        elif to_domain == TUMOR:
            generator = self.trainer.G_BA
        else:
            raise ValueError(f"to_domain must be {TUMOR!r} or {NO_TUMOR!r}, got {to_domain!r}")
        return self._run(generator, images)

    def training_curves(self) -> dict[str, list[float]]:
        return {} if self.trainer is None else {k: list(v) for k, v in self.trainer.curves.items()}

    def selection(self) -> dict[str, Any]:
        """The main row's map, aggregate and validation AUROC, and the discriminator's patch size."""
        if self.trainer is None:
            return dict(self.selected)
        return {**self.selected, "discriminator": self.trainer.discriminator()}

    def variant_selection(self, variant: str) -> dict[str, Any]:
        """The residual variant's map and aggregate, or those the tuned variant chose on validation."""
        return dict({RESIDUAL: self.residual, TUNED: self.tuned}.get(variant, {}))

    def checkpoint(self) -> Path | None:
        return None if self.trainer is None else self.trainer.checkpointer.last_path

    def restore(self, output_dir: Path, device: torch.device, seed: int, logger: logging.Logger) -> int:
        """Load the newest checkpoint a finished ``fit`` left in ``output_dir`` (trains nothing),
        for development tools that re-score a run; returns its epoch."""
        self.trainer = CycleGANTrainer(self.settings, device, seed, output_dir, logger)
        last = self.trainer.checkpointer.load_last(map_location=device)
        if last is None:
            raise FileNotFoundError(f"no cyclegan checkpoint under {output_dir / 'checkpoints'}")
        epoch, state = last
        self.trainer.load_state_dict(state)
        self._healthy = []
        return epoch

    # -- helpers ---------------------------------------------------------------------------
    def _require_fitted(self) -> None:
        if self.trainer is None:
            raise RuntimeError("cyclegan: call fit() before score() or translate()")

    def to_healthy(self, images: ImageSet) -> torch.Tensor:
        """The tumor->healthy translation at the model's size (what the anomaly maps compare with).
        The last two ImageSets' are kept (the runner scores val and test by the main row, then by
        the variant): the same object gets the same tensor back without running G_AB again."""
        self._require_fitted()
        assert self.trainer is not None
        for seen, healthy in self._healthy:
            if seen is images:
                return healthy
        healthy = self._run(self.trainer.G_AB, images.resized(self.settings.image_size).images)
        self._healthy = [*self._healthy[-1:], (images, healthy)]
        return healthy

    @torch.no_grad()
    def _run(self, generator: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Apply a generator to (N, 1, H, W) images in [0, 1] at the model's size, in batches,
        and resize the result back to (H, W)."""
        assert self.trainer is not None
        if images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(f"expected images shaped (N, 1, H, W), got {tuple(images.shape)}")
        size = self.settings.image_size
        height, width = images.shape[-2:]
        device = self.trainer.device
        generator.eval()
        out = []
        for batch in images.split(INFERENCE_BATCH):
            x = resize(batch.float().to(device), (size, size))
            y = from_model_range(generator(to_model_range(x)).float())
            out.append(resize(y, (height, width)).clamp(0, 1).cpu())
        return torch.cat(out) if out else images.new_zeros(images.shape)


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _limit(images: torch.Tensor, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` images (0: all), a seeded random subset."""
    if limit <= 0 or len(images) <= limit:
        return images
    index = torch.randperm(len(images), generator=make_generator(seed))[:limit]
    return images[index.sort().values]
