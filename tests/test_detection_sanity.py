"""Detection tests that can fail: on a cohort whose lesions are large and strong, every method of
the harness that claims ``scores`` must reach test image AUROC >= 0.75 and every one that claims
``maps`` pixel AUROC >= 0.75; a method whose output is replaced by seeded noise must fail the same
check. The plumbing tests (shapes, resume, healthy-only training) pass for a silently broken
scorer; these do not.

The cases are the registry's own methods (those of ``baselines`` and ``generative``; a third-party
plugin answers for itself), so a method added to the harness is checked without an edit here.
Each trains at its smoke settings plus :data:`BUDGETS` (tiny networks need more epochs than
plumbing does to learn anything) and :data:`SIZE`; the cohort is made once per module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.api import FitContext, ImageSet, Method, ScoreOutput
from harness.config import SplitSettings, method_settings
from harness.data.embedded import CohortSettings, load_embedded_cohort
from harness.data.loading import load_imageset
from harness.data.splits import make_split
from harness.registry import METHODS, VARIANT_SEPARATOR, method_variants
from harness.training import seed_everything
from harness.variants import VariantView

THRESHOLD = 0.75  # image and pixel AUROC that an obvious lesion must give
SEED = 100  # a development seed (docs/protocol.md): never a reporting one
SIZE = 64  # load size: the largest smoke size (patchcore, resnet18); the others resize down inside
# Large, strong lesions (radius 16-26 mm, twice the default contrast) on 16 subjects: 72 train,
# 16 val and 40 test slices, in a few seconds
COHORT = CohortSettings(n_subjects=16, slice_size=64, slices_per_subject=8, lesion_contrast=2.0,
                        lesion_radius_mm=(16.0, 26.0))
HARNESS_PACKAGES = ("baselines", "generative")
# Per-method settings on top of the smoke profile: the smallest budget that learns the lesions,
# each case within ~30 s on a 2-core CPU.
BUDGETS: dict[str, dict[str, object]] = {
    "autoencoder": {"epochs": 50}, "dae": {"epochs": 50},
    "gaussian-ddpm": {"epochs": 30}, "anoddpm": {"epochs": 30}, "pddpm": {"epochs": 20},
    "cyclegan": {"epochs": 8}, "resnet18": {"epochs": 10},
}
# the method whose output the noise test replaces: one that passes both checks, in seconds
NOISE_CONTROL = "patchcore"
# Cases that miss the threshold at every budget tried, with the figures measured (seed 100, this
# cohort): each is a finding to fix in the method or its scorer, never a reason to lower THRESHOLD.
# strict: the day a case passes, its entry must go.
KNOWN_SHORTFALLS: dict[str, str] = {
    # measured 2026-12-03 at the BUDGETS above (more epochs did not help: autoencoder 20 -> 50
    # epochs gave image AUROC 0.000 -> 0.015, dae 0.000 -> 0.003)
    "intensity": "pixel AUROC 0.608: one sign (bright) for all sequences, and T1 lesions are dark",
    "autoencoder": "image AUROC 0.015 (inverted), pixel AUROC 0.656 with the plain Baur map, mean aggregate",
    "autoencoder+tuned": "image AUROC 0.278, pixel AUROC 0.720",
    "dae": "image AUROC 0.003 (inverted), pixel AUROC 0.427 with the plain Baur map, mean aggregate",
    "dae+tuned": "pixel AUROC 0.720",
    "gaussian-ddpm": "image AUROC 0.381, pixel AUROC 0.668 (30 epochs)",
    "anoddpm": "image AUROC 0.533, pixel AUROC 0.704 (30 epochs)",
    "anoddpm+tuned": "pixel AUROC 0.682",
    "pddpm": "image AUROC 0.364, pixel AUROC 0.641 (20 epochs)",
    "cyclegan": "pixel AUROC 0.659 (8 epochs; structural map, 1 - local SSIM)",
    "cyclegan+residual": "pixel AUROC 0.665 (8 epochs; Fixed-Point GAN's |x_h - x|)",
    "cyclegan+tuned": "image AUROC 0.735",
}


def harness_cases() -> list:
    """The registered methods the harness ships (not third-party plugins), each followed by its
    named variants (``dae+tuned``): a variant is another scorer of the same fitted model."""
    names = [n for n in METHODS.names() if METHODS.get(n).__module__.split(".")[0] in HARNESS_PACKAGES]
    cases = [case for n in names for case in (n, *method_variants(n))]
    return [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_SHORTFALLS[c]))
            if c in KNOWN_SHORTFALLS else c for c in cases]


def detection_failures(capabilities: frozenset[str], test: ImageSet, out: ScoreOutput) -> list[str]:
    """What the output misses on ``test``: image AUROC (``scores``) and pixel AUROC over the
    in-brain pixels of every test image (``maps``) below :data:`THRESHOLD`."""
    failures = []
    auroc = float(roc_auc_score(test.labels.numpy(), np.asarray(out.scores, dtype=float)))
    if not auroc >= THRESHOLD:
        failures.append(f"image AUROC {auroc:.3f} < {THRESHOLD}")
    if "maps" in capabilities:
        brain = test.brain[:, 0].numpy()
        maps = np.asarray(out.maps, dtype=float).reshape(brain.shape)
        pixel = float(roc_auc_score(test.masks[:, 0].numpy()[brain], maps[brain]))
        if not pixel >= THRESHOLD:
            failures.append(f"pixel AUROC {pixel:.3f} < {THRESHOLD}")
    return failures


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict[str, ImageSet]:
    source = load_embedded_cohort(COHORT, SEED, cache_dir=tmp_path_factory.mktemp("cohort"), progress=False)
    split = make_split(source, SEED, SplitSettings())
    return {which: load_imageset(source, split, which, SIZE, False) for which in ("train", "val", "test")}


@pytest.fixture(scope="module")
def fitted(cohort, tmp_path_factory) -> Callable[[str], Method]:
    """Method name -> the method fitted on the cohort, once per module (its variants reuse it)."""
    done: dict[str, Method] = {}

    def get(name: str) -> Method:
        if name not in done:
            method = METHODS.get(name)(method_settings(name, "smoke", BUDGETS.get(name)))
            seed_everything(SEED)
            ctx = FitContext(device=torch.device("cpu"), seed=SEED, profile="smoke",
                             output_dir=tmp_path_factory.mktemp(name), logger=logging.getLogger(f"sanity-{name}"),
                             progress=False)
            method.fit(cohort["train"], cohort["val"], ctx)
            done[name] = method
        return done[name]

    return get


@pytest.mark.parametrize("case", harness_cases())
def test_method_detects_obvious_lesions(case, cohort, fitted):
    start = time.perf_counter()
    base, _, variant = case.partition(VARIANT_SEPARATOR)
    method = fitted(base)
    scorer = VariantView(method, variant) if variant else method
    failures = detection_failures(frozenset(scorer.capabilities), cohort["test"], scorer.score(cohort["test"]))
    assert not failures, f"{case} ({time.perf_counter() - start:.0f} s): {'; '.join(failures)}"


class NoiseOutput(Method):
    """A method whose scores and/or maps are replaced by seeded noise: what a silently broken
    scorer looks like from outside."""

    capabilities = frozenset({"scores", "maps"})

    def __init__(self, inner: Method, scores: bool, maps: bool) -> None:
        super().__init__(inner.settings)
        self.inner, self.noisy_scores, self.noisy_maps = inner, scores, maps

    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        self.inner.fit(train, val, ctx)

    def score(self, images: ImageSet) -> ScoreOutput:
        real = self.inner.score(images)
        rng = np.random.default_rng(SEED)
        scores = rng.random(len(images)) if self.noisy_scores else real.scores
        maps = rng.random(np.shape(real.maps)) * images.brain[:, 0].numpy() if self.noisy_maps else real.maps
        return ScoreOutput(scores=scores, maps=maps)


@pytest.mark.parametrize("scores, maps", [(True, True), (True, False), (False, True)])
def test_noise_in_place_of_a_method_output_fails_the_check(cohort, fitted, scores, maps):
    """The check rejects noise in either output alone, and passes the method it wraps."""
    inner = fitted(NOISE_CONTROL)
    noisy = NoiseOutput(inner, scores, maps)  # fit would delegate; the wrapped method is fitted already
    assert not detection_failures(noisy.capabilities, cohort["test"], inner.score(cohort["test"]))
    failures = detection_failures(noisy.capabilities, cohort["test"], noisy.score(cohort["test"]))
    assert [f.split()[0] for f in failures] == [k for k, on in (("image", scores), ("pixel", maps)) if on]
