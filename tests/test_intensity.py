"""The intensity baseline: finds bright, dark or both kinds of blobs, picks its sign on validation
(per MRI sequence when the images carry several), masks maps."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from baseline_data import make_context, make_slices
from baselines.intensity import IntensityBaseline, brain_percentiles, robust_zscore, smooth_in_brain
from harness.api import ImageSet
from harness.registry import METHODS


@pytest.mark.parametrize("bright", [True, False])
def test_finds_blobs_and_selects_sign(bright, tmp_path):
    train = make_slices(16, seed=1, contrast=0.3, bright=bright)
    val = make_slices(24, seed=2, contrast=0.3, bright=bright)
    test = make_slices(40, size=48, seed=3, contrast=0.3, bright=bright)
    method = IntensityBaseline()
    method.fit(train, val, make_context(tmp_path))
    assert method.selected["sign"] == ("bright" if bright else "dark")
    assert len(method.selected["candidates"]) == 12  # 3 signs x 4 percentiles; no sequences, no by-sequence
    out = method.score(test)
    assert out.scores.shape == (40,)
    assert roc_auc_score(test.labels.numpy(), out.scores) > 0.9
    assert out.maps.shape == (40, 48, 48)
    assert np.all(out.maps[~test.brain[:, 0].numpy()] == 0)
    assert np.all(out.maps >= 0)
    # the map is highest inside the lesion for tumor images
    tumor = test.labels.numpy() == 1
    lesion = test.masks[:, 0].numpy()
    in_lesion = np.array([out.maps[i][lesion[i]].mean() for i in np.flatnonzero(tumor)])
    outside = np.array([out.maps[i][~lesion[i] & test.brain[i, 0].numpy()].mean() for i in np.flatnonzero(tumor)])
    assert np.all(in_lesion > outside)


def test_registered_with_maps():
    cls = METHODS.get("intensity")
    assert cls is IntensityBaseline and cls.capabilities == frozenset({"scores", "maps"})


def test_unfitted_default_and_single_class_val(tmp_path, caplog):
    test = make_slices(10, seed=4)
    method = IntensityBaseline()
    before = method.score(test).scores
    with caplog.at_level(logging.WARNING):
        method.fit(test, test.of_label(0), make_context(tmp_path))
    assert "lacks one class" in caplog.text
    np.testing.assert_array_equal(method.score(test).scores, before)


def test_empty_brain_scores_zero_and_is_reported(caplog):
    images = make_slices(4, seed=5)
    images.brain[1] = False
    with caplog.at_level(logging.WARNING):
        out = IntensityBaseline().score(images)
    assert out.scores[1] == 0 and np.all(out.maps[1] == 0)
    assert out.extras["empty_brain"].tolist() == [False, True, False, False]
    assert "img001" in caplog.text


def test_robust_zscore_and_masked_smoothing():
    x = torch.full((1, 1, 8, 8), 0.5)
    x[0, 0, 2, 2] = 0.9
    x[0, 0, ::2, 1] = 0.4  # some spread so the MAD is not zero
    brain = torch.zeros_like(x, dtype=torch.bool)
    brain[..., 1:7, 1:7] = True
    z = robust_zscore(x, brain)
    assert torch.all(z[~brain] == 0) and z[0, 0, 2, 2] == z.max()
    flat = smooth_in_brain(torch.ones_like(x), brain, sigma=1.0)
    torch.testing.assert_close(flat[brain], torch.ones(int(brain.sum())))  # no darkening at the edge
    assert torch.all(flat[~brain] == 0)


def test_brain_percentiles_match_numpy():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(70, 1, 9, 9, generator=g)  # more than one chunk
    brain = torch.rand(70, 1, 9, 9, generator=g) > 0.3
    brain[3] = False
    got = brain_percentiles(values, brain, 99.0)
    want = [np.percentile(values[i][brain[i]].numpy(), 99.0) if brain[i].any() else 0.0 for i in range(70)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _joined(parts: list[ImageSet], strata: list[str] | None = None) -> ImageSet:
    """One ImageSet of ``parts``, each part's images in stratum ``strata[k]`` (None: no strata)."""
    return ImageSet(images=torch.cat([p.images for p in parts]), labels=torch.cat([p.labels for p in parts]),
                    ids=[f"{k}-{i}" for k, p in enumerate(parts) for i in p.ids],
                    brain=torch.cat([p.brain for p in parts]), masks=torch.cat([p.masks for p in parts]),
                    strata=None if strata is None else [s for k, p in enumerate(parts) for s in [strata[k]] * len(p)])


def test_two_sided_wins_when_lesions_are_bright_and_dark(tmp_path):
    """Half the lesions brighter than the brain, half darker, no sequence known: one sign misses
    half of them, |z| finds both."""
    val = _joined([make_slices(24, seed=2, contrast=0.3), make_slices(24, seed=6, contrast=0.3, bright=False)])
    test = _joined([make_slices(20, seed=3, contrast=0.3), make_slices(20, seed=7, contrast=0.3, bright=False)])
    method = IntensityBaseline()
    method.fit(val, val, make_context(tmp_path))
    assert method.selected["sign"] == "two-sided" and method.selected["by_sequence"] is None
    c = method.selected["candidates"]
    agg = method.selected["aggregate"]
    assert c[f"two-sided/{agg}"] > max(c[f"bright/{agg}"], c[f"dark/{agg}"]) + 0.1
    out = method.score(test)
    assert roc_auc_score(test.labels.numpy(), out.scores) > 0.9
    lesion, dark = test.masks[:, 0].numpy(), np.arange(40) >= 20
    tumor_dark = np.flatnonzero((test.labels.numpy() == 1) & dark)
    assert all(out.maps[i][lesion[i]].mean() > out.maps[i][~lesion[i] & test.brain[i, 0].numpy()].mean()
               for i in tumor_dark)  # the map marks dark lesions too


def _opposite_decoys(n: int, seed: int, lesions_bright: bool) -> ImageSet:
    """Tumor images with lesions of one sign and healthy images with a blob of the other sign (a
    bright vessel on T1, a dark CSF pocket on FLAIR): only the sequence's own sign separates them."""
    tumor = make_slices(n, seed=seed, contrast=0.4, bright=lesions_bright).of_label(1)
    decoy = make_slices(n, seed=seed + 50, contrast=0.4, bright=not lesions_bright).of_label(1)
    healthy = ImageSet(images=decoy.images, labels=torch.zeros(len(decoy), dtype=torch.long), ids=decoy.ids,
                       brain=decoy.brain, masks=torch.zeros_like(decoy.masks))
    return _joined([tumor, healthy])


def test_signs_are_chosen_per_sequence_when_the_images_carry_several(tmp_path):
    val = _joined([_opposite_decoys(24, 10, True), _opposite_decoys(24, 20, False)], ["FLAIR", "T1"])
    test = _joined([_opposite_decoys(20, 30, True), _opposite_decoys(20, 40, False)], ["FLAIR", "T1"])
    method = IntensityBaseline()
    method.fit(val, val, make_context(tmp_path))
    assert method.selected["sign"] == "by-sequence"
    assert method.selected["by_sequence"] == {"flair": "bright", "t1": "dark"}
    assert len(method.selected["candidates"]) == 16
    assert roc_auc_score(test.labels.numpy(), method.score(test).scores) > 0.9
    unknown = ImageSet(images=test.images, labels=test.labels, ids=test.ids, brain=test.brain)
    assert np.isfinite(method.score(unknown).scores).all()  # no sequence: the fallback sign
