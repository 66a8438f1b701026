"""Toy methods and a tiny folder dataset for the runner tests (no other engineer's method needed).

The methods are real :class:`harness.api.Method` subclasses registered at run time; their
scores are simple but genuine functions of the images, so every metric path is exercised.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.api import NO_TUMOR, TUMOR, FitContext, ImageSet, Method, ScoreOutput
from harness.training import Checkpointer


def make_folder_dataset(root: Path, n_per_class: int = 16, size: int = 40, seed: int = 0,
                        masks: bool = True) -> Path:
    """``yes/`` and ``no/`` PNGs of an elliptical brain; tumor images carry a bright blob and,
    with ``masks``, a lesion mask under ``masks/yes/``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    for label, folder in ((1, "yes"), (0, "no")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a, b = rng.uniform(0.6, 0.9, 2)
            brain = (xx / a) ** 2 + (yy / b) ** 2 <= 1
            img = (0.3 + 0.3 * rng.random((size, size))) * brain
            lesion = np.zeros_like(brain)
            if label:
                cx, cy = rng.uniform(-0.3, 0.3, 2)
                r = rng.uniform(0.12, 0.3)
                lesion = ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r) & brain
                img[lesion] = rng.uniform(0.5, 0.95)
                if masks:
                    (root / "masks" / folder).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(lesion.astype(np.uint8) * 255).save(root / "masks" / folder / f"{folder}{i:02d}.png")
            Image.fromarray((img * 255).astype(np.uint8)).save(root / folder / f"{folder}{i:02d}.png")
    return root


def _brain_mean(images: ImageSet) -> np.ndarray:
    x, brain = images.images[:, 0], images.brain[:, 0].float()
    return ((x * brain).sum(dim=(1, 2)) / brain.sum(dim=(1, 2)).clamp_min(1)).numpy()


class MeanIntensity(Method):
    """Score = brain-masked mean intensity minus the train mean; map = in-brain intensity."""

    capabilities = frozenset({"scores", "maps"})
    description = "toy: mean intensity"

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        self.offset = float(_brain_mean(train).mean())
        self.checkpoint_path = ctx.output_dir / "toy.pt"
        torch.save({"offset": self.offset}, self.checkpoint_path)
        self.curves = {"epoch": [1, 2], "loss": [1.0, 0.5]}

    def score(self, images: ImageSet) -> ScoreOutput:
        maps = (images.images[:, 0] * images.brain[:, 0]).numpy()
        return ScoreOutput(scores=_brain_mean(images) - self.offset, maps=maps)

    def training_curves(self) -> dict[str, list[float]]:
        return self.curves

    def checkpoint(self) -> Path | None:
        return self.checkpoint_path


class RandomProjection(MeanIntensity):
    """Mean intensity plus a random projection of the image drawn in fit (from the seeded global
    RNG): a cheap method whose AUROC moves with the train seed, as a network's does."""

    description = "toy: mean intensity plus a random projection"

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        super().fit(train, val, ctx)
        self.direction = torch.randn(train.images[0, 0].numel())

    def score(self, images: ImageSet) -> ScoreOutput:
        out = super().score(images)
        projection = (images.images[:, 0].flatten(1) @ self.direction).numpy() / self.direction.numel() ** 0.5
        return ScoreOutput(scores=out.scores + 0.05 * projection, maps=out.maps)


class Tunable(MeanIntensity):
    """Mean intensity as its main row and, as the variant ``tuned``, the brightest brain pixel
    from the same fit; counts its fits, and can fail its variant once (``fail_variant_once``)."""

    description = "toy: a method with a variant"
    variants = {"tuned": "none+val_masks"}
    variant_descriptions = {"tuned": "toy: brightest brain pixel"}
    fits = 0
    fail_variant_once = False

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        super().fit(train, val, ctx)
        type(self).fits += 1

    def score_variant(self, images: ImageSet, variant: str) -> ScoreOutput:
        if type(self).fail_variant_once:
            type(self).fail_variant_once = False
            raise RuntimeError("boom: the variant fails once")
        inside = images.images[:, 0] * images.brain[:, 0]
        return ScoreOutput(scores=inside.flatten(1).max(dim=1).values.numpy(), maps=inside.numpy())

    def variant_selection(self, variant: str) -> dict:
        return {"aggregate": "max", "variant": variant}


class Failing(MeanIntensity):
    description = "toy: always fails in fit"

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        raise RuntimeError("boom: this toy method always fails")


class Interruptible(Method):
    """Two 'epochs' drawing from the seeded global RNG; checkpoints after each. With
    ``interrupt_once`` set, the first fit is interrupted after epoch 1 (like Ctrl-C)."""

    description = "toy: resumable"
    interrupt_once = False
    # as torch.save does when Ctrl-C lands inside it: the KeyboardInterrupt comes back wrapped
    wrapped_by_library = False

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        ckpt = Checkpointer(ctx.output_dir / "checkpoints")
        state = {"draws": []}
        start = 1
        loaded = ckpt.load_last() if ctx.resume else None
        if loaded is not None:
            epoch, state = loaded
            start = epoch + 1
        for epoch in range(start, 3):
            state["draws"].append(float(torch.rand(1)))
            ckpt.save(epoch, state)
            if type(self).interrupt_once:
                type(self).interrupt_once = False
                if not type(self).wrapped_by_library:
                    raise KeyboardInterrupt
                try:
                    raise KeyboardInterrupt
                except KeyboardInterrupt:
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None
        self.weight = sum(state["draws"])

    def score(self, images: ImageSet) -> ScoreOutput:
        return ScoreOutput(scores=_brain_mean(images) * self.weight)


class Inverter(Method):
    """Translates by inverting intensities inside the brain; score as MeanIntensity."""

    capabilities = frozenset({"scores", "maps", "translates"})
    description = "toy: translator"

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        self.fitted = True

    def score(self, images: ImageSet) -> ScoreOutput:
        return ScoreOutput(scores=_brain_mean(images), maps=images.images[:, 0].numpy())

    def translate(self, images: torch.Tensor, to_domain: str) -> torch.Tensor:
        assert to_domain in (TUMOR, NO_TUMOR)
        return (1.0 - images).clamp(0, 1)


class Sleeper(Method):
    """Blocks in its first fit (after writing ``started``) so a test can kill the process;
    a resumed fit finds the marker and finishes."""

    description = "toy: waits to be killed"

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        marker = ctx.output_dir / "started"
        if not (ctx.resume and marker.exists()):
            marker.write_text("1")
            time.sleep(600)

    def score(self, images: ImageSet) -> ScoreOutput:
        return ScoreOutput(scores=_brain_mean(images))


TOYS = {"toy-mean": MeanIntensity, "toy-noisy": RandomProjection, "toy-fail": Failing, "toy-resume": Interruptible,
        "toy-translate": Inverter, "toy-sleep": Sleeper, "toy-variant": Tunable}
