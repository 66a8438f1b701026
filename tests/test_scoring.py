"""The shared scorer: the paper's plain maps (Baur et al.'s post-processing, Fixed-Point GAN's
difference), and the tuned variant's maps, gain/offset matching, aggregates and selection."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch
from sklearn.metrics import roc_auc_score

from harness.api import ImageSet
from harness.imaging import erode, median_filter
from harness.scoring import (AGGREGATES, MAP_KINDS, aggregate, anomaly_map, baur_maps, baur_scoring, deploy,
                             deployed_maps, fixed_point_scoring, gain_offset, local_ssim, residual_modes,
                             select_from_maps, select_scoring, structural_scoring)


def test_ssim_is_one_for_identical_images_and_lower_for_changed():
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(local_ssim(x, x), torch.ones_like(x), atol=1e-4)
    y = x.clone()
    y[..., 8:16, 8:16] = 1.0
    s = local_ssim(x, y)
    assert s[..., 12, 12] < 0.5 and s[..., 28, 28] > 0.99


def test_maps_and_aggregates():
    x = torch.zeros(2, 1, 20, 20)
    x_h = x.clone()
    x_h[1, 0, 5:10, 5:10] = 0.8
    brain = torch.zeros_like(x, dtype=torch.bool)
    brain[..., 2:18, 2:18] = True
    for kind in MAP_KINDS:
        maps = anomaly_map(x, x_h, brain, kind)
        assert maps.shape == (2, 20, 20) and maps[~brain.squeeze(1)].abs().max() == 0
        assert maps.min() >= 0
    maps = anomaly_map(x, x_h, brain, "residual", smooth_sigma=0)
    assert aggregate(maps, brain, "max").tolist() == pytest.approx([0.0, 0.8])
    assert aggregate(maps, brain, "mean")[1] == pytest.approx(0.8 * 25 / 256)
    assert aggregate(maps, brain, "top5")[1] == pytest.approx(0.8)  # 13 of 256 pixels, all changed
    assert aggregate(maps, torch.zeros_like(brain), "top1").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate(maps, brain, "median")
    with pytest.raises(ValueError, match="unknown anomaly map"):
        anomaly_map(x, x_h, brain, "gradient")


def test_selection_needs_both_labels():
    g = torch.Generator().manual_seed(0)
    maps = {"residual": torch.rand(4, 8, 8, generator=g), "ssim": torch.rand(4, 8, 8, generator=g)}
    maps["residual"][:2] += 1.0  # inverted: never a perfect AUROC that would win the tie
    brain = torch.ones(4, 1, 8, 8, dtype=torch.bool)
    one_class = select_from_maps(maps, brain, torch.zeros(4))
    assert one_class["val_auroc"] is None and one_class["map"] == "residual"
    maps["ssim"][2:] += 1.0
    picked = select_from_maps(maps, brain, torch.tensor([0, 0, 1, 1]))
    assert picked["map"] == "ssim" and picked["val_auroc"] == 1.0
    assert picked["criterion"] == "image AUROC" and picked["val_pixel_auroc"] is None


def test_gain_offset_removal_is_exact_and_guarded():
    g = torch.Generator().manual_seed(0)
    x_h = torch.rand(3, 1, 16, 16, generator=g)
    brain = torch.zeros_like(x_h, dtype=torch.bool)
    brain[..., 3:13, 2:14] = True
    x = 1.7 * x_h - 0.2
    a, c = gain_offset(x, x_h, brain)
    assert a.flatten().tolist() == pytest.approx([1.7] * 3, abs=1e-4)
    assert c.flatten().tolist() == pytest.approx([-0.2] * 3, abs=1e-4)
    for kind in ("matched", "brighter", "darker"):
        assert anomaly_map(x, x_h, brain, kind).abs().max() < 1e-4
    flat, empty = x_h.clone(), brain.clone()
    flat[0] = 0.5  # constant healthy brain: no gain to estimate
    empty[1] = False  # no brain at all
    a, c = gain_offset(x, flat, empty)
    assert a.flatten().tolist()[:2] == [1.0, 1.0] and c.flatten().tolist()[:2] == [0.0, 0.0]
    assert torch.isfinite(anomaly_map(x, flat, empty, "matched")).all()


def test_brighter_map_ignores_global_shift_and_finds_the_blob():
    """Per-image normalisation: the healthy version of a lesioned image is a gain/offset of
    it; only the matched maps see through that to the lesion."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    brain = (((yy - 32) / 26) ** 2 + ((xx - 32) / 22) ** 2 < 1)[None, None]
    tex = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g), 5, 1, 2)
    base = (0.15 + 0.2 * tex) * brain  # x_h = 0.8 * base + 0.1 is globally brighter
    blob = (((yy - 24) ** 2 + (xx - 38) ** 2) < 25)[None, None]
    x = torch.where(blob, torch.full_like(base, 1.0), base)
    x_h = (0.8 * base + 0.1) * brain
    brighter = anomaly_map(x, x_h, brain, "brighter")[0]
    residual = anomaly_map(x, x_h, brain, "residual")[0]
    peak = int(brighter.argmax())
    assert blob.flatten()[peak]
    far = brain[0, 0] & ((yy - 24) ** 2 + (xx - 38) ** 2 > 15**2)
    assert brighter[far].max() < 0.1 * brighter.max()
    assert residual[far].median() > 0.02 and residual[far].median() > 5 * brighter[far].median()


def test_selection_picks_the_map_by_pixel_auroc_when_masks_exist():
    """'residual' separates images by a global shift; 'brighter' points at the lesions."""
    n, size = 8, 8
    labels = torch.tensor([0] * 4 + [1] * 4)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[4:, :, 2:4, 2:4] = True
    brain = torch.ones_like(masks)
    noise = torch.rand(n, size, size, generator=torch.Generator().manual_seed(0))
    shifted = noise + labels[:, None, None].float()  # every pixel of a tumor image is higher
    local = 0.5 * noise + masks.squeeze(1).float()
    maps = {"residual": shifted, "brighter": local}
    picked = select_from_maps(maps, brain, labels, masks)
    assert picked["map"] == "brighter" and picked["criterion"].startswith("pixel AUROC")
    assert picked["val_pixel_auroc"] > picked["table"]["residual/pixel"]
    assert picked["val_auroc"] == max(picked["table"][f"brighter/{a}"] for a in AGGREGATES)
    assert select_from_maps(maps, brain, labels)["map"] == "residual"  # image AUROC: a tie, earlier wins
    assert select_from_maps(maps, brain, labels, torch.zeros_like(masks))["criterion"] == "image AUROC"
    assert select_from_maps(maps, brain, labels, masks) == picked  # deterministic


def _lesioned(n: int, size: int, seed: int) -> tuple[ImageSet, torch.Tensor]:
    """Images at ``size`` whose second half carries a bright blob, and a 'healthy version' at
    half the size (the blob removed, plus a little noise): a model that works at half size."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    brain = (xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1
    images, masks = [], []
    for i in range(n):
        tex = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 5, 1, 2)[0, 0]
        base = (0.3 + 0.3 * tex) * brain
        c = (torch.rand(2, generator=g) - 0.5) * 0.8
        mask = (((xx - c[0]) ** 2 + (yy - c[1]) ** 2) < 0.04) & brain & (i >= n // 2)
        images.append(torch.stack([torch.where(mask, torch.full_like(base, 0.9), base), base]))
        masks.append(mask)
    stacked = torch.stack(images)
    half = torch.nn.functional.interpolate(stacked[:, 1:], size=(size // 2, size // 2), mode="bilinear",
                                           antialias=True, align_corners=False)
    healthy = (half + 0.02 * torch.rand(half.shape, generator=g)).clamp(0, 1)
    labels = (torch.arange(n) >= n // 2).long()
    return ImageSet(images=stacked[:, :1], labels=labels, ids=[str(i) for i in range(n)],
                    brain=brain.expand(n, 1, size, size).clone(), masks=torch.stack(masks)[:, None]), healthy


def test_selection_is_scored_exactly_as_deployed():
    """The recorded validation AUROC (and pixel AUROC) are those of the deployed scorer: maps
    made at the model's size, upsampled to the images' size, over the images' own brain mask."""
    val, healthy = _lesioned(12, 32, seed=0)
    picked = select_scoring(val, healthy)
    scores, maps = deploy(val, healthy, picked)
    assert maps.shape == (12, 32, 32) and maps[~val.brain.squeeze(1)].abs().max() == 0
    assert picked["val_auroc"] == roc_auc_score(val.labels.numpy(), scores)
    assert picked["val_pixel_auroc"] == picked["table"][f"{picked['map']}/pixel"]
    every = deployed_maps(val, healthy)
    assert set(every) == set(MAP_KINDS)
    assert torch.equal(every[picked["map"]], maps)
    assert picked["val_auroc"] > 0.9  # the blob is found


def test_deployed_maps_refuse_mismatched_healthy_images():
    val, healthy = _lesioned(4, 16, seed=1)
    with pytest.raises(ValueError, match="healthy images"):
        deployed_maps(val, healthy[:3])
    with pytest.raises(ValueError, match="healthy images"):
        deployed_maps(val, healthy[:, 0])
    assert np.isfinite(deploy(val, healthy, {"map": "ssim", "aggregate": "mean"})[0]).all()


# ---------------------------------------------------------------- the paper's plain maps

def test_median_filter_and_erosion_match_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 20, 17, generator=g)
    want = np.stack([ndimage.median_filter(x[i, 0].numpy(), 5, mode="mirror") for i in range(3)])
    np.testing.assert_array_equal(median_filter(x, 5)[:, 0].numpy(), want)
    mask = torch.rand(3, 1, 20, 17, generator=g) > 0.2
    cross = ndimage.generate_binary_structure(2, 1)
    want = np.stack([ndimage.binary_erosion(mask[i, 0].numpy(), cross, iterations=2) for i in range(3)])
    np.testing.assert_array_equal(erode(mask, 2)[:, 0].numpy(), want)
    with pytest.raises(ValueError, match="odd"):
        median_filter(x, 4)


def _two_blobs(strata: list[str], size: int = 50) -> tuple[ImageSet, torch.Tensor]:
    """Identical images with a bright blob (upper left) and a dark blob (lower right) that their
    healthy version lacks; one image per stratum."""
    n = len(strata)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    brain = (((yy - 25) / 22.0) ** 2 + ((xx - 25) / 22.0) ** 2 < 1)[None, None].expand(n, 1, size, size).clone()
    healthy = 0.5 * brain.float()
    bright = ((yy - 17) ** 2 + (xx - 17) ** 2 < 16)[None, None]
    dark = ((yy - 33) ** 2 + (xx - 33) ** 2 < 16)[None, None]
    x = healthy + 0.4 * bright.float() - 0.3 * dark.float()
    return ImageSet(images=x, labels=torch.ones(n, dtype=torch.long), ids=[str(i) for i in range(n)], brain=brain,
                    strata=strata), healthy


def test_baur_maps_keep_positive_residuals_where_the_sequence_shows_lesions_bright():
    images, healthy = _two_blobs(["FLAIR", "src/t2", "T1", ""])
    assert residual_modes(images) == ["positive", "positive", "absolute", "absolute"]
    maps = baur_maps(images, healthy)
    for i in range(4):
        assert maps[i, 17, 17] == pytest.approx(0.4)
        assert maps[i, 33, 33] == pytest.approx(0.0 if i < 2 else 0.3)
    assert ImageSet(images=images.images, labels=images.labels, ids=images.ids,
                    brain=images.brain).sequences() == ["", "", "", ""]  # no strata: |x - x_h|


def test_baur_maps_median_filter_spikes_and_erode_the_rim():
    """A one-pixel residual is noise to the 5 x 5 median filter; a residual on the whole brain
    survives, except on the rim (50 px: eroded twice) that skull stripping and registration leave."""
    images, healthy = _two_blobs([""], size=50)
    spike = healthy.clone()
    spike[0, 0, 25, 25] += 0.5
    flat = ImageSet(images=spike, labels=images.labels, ids=images.ids, brain=images.brain)
    assert baur_maps(flat, healthy).abs().max() == 0
    everywhere = ImageSet(images=healthy + 0.2 * images.brain, labels=images.labels, ids=images.ids,
                          brain=images.brain)
    maps = baur_maps(everywhere, healthy)[0]
    inner = erode(images.brain, 2)[0, 0]
    assert torch.allclose(maps[inner], torch.tensor(0.2)) and maps[~inner].abs().max() == 0
    scores, _ = baur_scoring(everywhere, healthy)
    assert scores[0] == pytest.approx(0.2 * inner.sum().item() / images.brain.sum().item(), rel=1e-5)


def test_baur_maps_are_made_at_the_models_size_and_deployed_at_the_images():
    val, healthy = _lesioned(12, 32, seed=0)  # healthy at 16 px
    scores, maps = baur_scoring(val, healthy)
    assert maps.shape == (12, 32, 32) and maps[~val.brain.squeeze(1)].abs().max() == 0
    assert roc_auc_score(val.labels.numpy(), scores) > 0.9  # the blob is found without any selection
    with pytest.raises(ValueError, match="healthy images"):
        baur_scoring(val, healthy[:3])


def test_structural_scoring_is_one_minus_the_mean_ssim_over_the_brain():
    images, healthy = _two_blobs(["FLAIR"])
    scores, maps = structural_scoring(images, healthy)
    expected = (1.0 - local_ssim(images.images, healthy)).clamp(min=0.0)[0, 0]  # no further smoothing
    inside = images.brain[0, 0]
    assert scores[0] == pytest.approx(float(expected[inside].mean()), rel=1e-5)
    assert maps[0, 17, 17] > 0.1 and maps[0, 33, 33] > 0.1 and maps[0, 25, 40] < 0.01  # both blobs, not between
    assert maps[~images.brain.squeeze(1)].abs().max() == 0
    same, _ = structural_scoring(images, images.images.clone())
    assert same[0] == pytest.approx(0.0, abs=1e-6)  # an image identical to its healthy version scores 0
    val, small = _lesioned(12, 32, seed=0)  # made at the model's size (16 px), deployed at 32 px
    scores, maps = structural_scoring(val, small)
    assert maps.shape == (12, 32, 32) and roc_auc_score(val.labels.numpy(), scores) > 0.9


def test_fixed_point_scoring_is_the_maximum_of_the_raw_difference():
    images, healthy = _two_blobs(["FLAIR", "T1"])
    scores, maps = fixed_point_scoring(images, healthy)
    np.testing.assert_allclose(scores, [0.4, 0.4], rtol=1e-6)  # no smoothing, both signs, max
    assert maps[0, 33, 33] == pytest.approx(0.3)
    assert maps[~images.brain.squeeze(1)].abs().max() == 0
