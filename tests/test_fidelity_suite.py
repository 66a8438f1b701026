"""The fidelity suite: SSIM/PSNR of input and reconstruction on healthy tissue, with subject CIs.

Identity scores SSIM 1 and the documented PSNR cap; blur scores lower; outside the dilated lesion
mask, changes inside the lesion do not count; the suite's rows come from a method's translate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import SSIMMetric

from harness.api import ImageSet
from harness.config import MetricSettings
from harness.imaging import blur, gaussian_kernel
from harness.metrics.fidelity_suite import (LESION_MARGIN_PX, PSNR_CAP_DB, FidelitySuite, dilate, fidelity_rows,
                                            masked_psnr, masked_ssim)
from harness.metrics.generative import Translations

SETTINGS = MetricSettings(bootstrap=200)


def slices(n: int, seed: int = 0, size: int = 48) -> torch.Tensor:
    """Textured blobs in [0,1]: enough structure for SSIM to notice blur."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = ((xx**2 + yy**2) < 0.7).float() * 0.6
    texture = blur(torch.rand(n, 1, size, size, generator=g), gaussian_kernel(1.0))
    return (blob + 0.4 * texture).clamp(0, 1)


def lesion_masks(n: int, size: int = 48) -> torch.Tensor:
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[:, :, 18:26, 18:26] = True
    return masks


def rows_of(inputs, outputs, lesions=None, groups=None, working_size=None):
    groups = groups or [f"s{i // 2}" for i in range(len(inputs))]
    domain = "no_tumor" if lesions is None else "tumor"
    rows = fidelity_rows("m", inputs, outputs, groups, lesions, domain, working_size=working_size,
                         n_boot=SETTINGS.bootstrap, ci=SETTINGS.ci, seed=0)
    return {r["metric"]: r for r in rows}


def test_identity_is_ssim_one_and_psnr_at_the_cap():
    x = slices(8)
    rows = rows_of(x, x.clone())
    assert rows["ssim"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert rows["psnr"]["value"] == PSNR_CAP_DB and f"capped at {PSNR_CAP_DB:g} dB" in rows["psnr"]["note"]
    assert rows["ssim"]["n"] == 8 and "4 subjects" in rows["ssim"]["note"]


def test_blurred_reconstruction_scores_lower_with_a_subject_interval():
    x = slices(8)
    soft, softer = blur(x, gaussian_kernel(1.0)), blur(x, gaussian_kernel(2.0))
    a, b = rows_of(x, soft), rows_of(x, softer)
    for metric in ("ssim", "psnr"):
        assert b[metric]["value"] < a[metric]["value"] < rows_of(x, x)[metric]["value"]
        assert a[metric]["ci_low"] <= a[metric]["value"] <= a[metric]["ci_high"]
        assert a[metric]["ci_low"] < a[metric]["ci_high"]


def test_unmasked_ssim_is_monai_ssim_metric():
    x, y = slices(4, 1), blur(slices(4, 1), gaussian_kernel(1.5))
    empty = torch.zeros_like(x, dtype=torch.bool)
    reference = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(y, x).reshape(-1)
    assert torch.allclose(masked_ssim(y, x, empty), reference, atol=1e-6)
    assert torch.allclose(masked_ssim(y, x, None), reference, atol=1e-6)


def test_masked_version_ignores_lesion_pixels():
    x, masks = slices(6), lesion_masks(6)
    changed = x.clone()
    changed[masks] = 1 - changed[masks]  # the method rewrites the lesion only
    rows = rows_of(x, changed, lesions=masks)
    assert rows["ssim"]["value"] == pytest.approx(1.0, abs=1e-6)
    assert rows["psnr"]["value"] == PSNR_CAP_DB
    assert f"dilated by {LESION_MARGIN_PX} px" in rows["ssim"]["note"]
    whole = rows_of(x, changed)
    assert whole["ssim"]["value"] < 0.99 and whole["psnr"]["value"] < 40
    ring = x.clone()  # a change just outside the dilated lesion counts
    outside = dilate(masks, LESION_MARGIN_PX + 2) & ~dilate(masks, LESION_MARGIN_PX)
    ring[outside] = 1 - ring[outside]
    assert rows_of(x, ring, lesions=masks)["psnr"]["value"] < 40


def test_an_image_that_is_all_lesion_is_left_out_with_a_note():
    x = slices(4)
    masks = lesion_masks(4)
    masks[0] = True
    values = masked_psnr(x, blur(x, gaussian_kernel(1.0)), dilate(masks, LESION_MARGIN_PX))
    assert torch.isnan(values[0]) and torch.isfinite(values[1:]).all()
    rows = rows_of(x, blur(x, gaussian_kernel(1.0)), lesions=masks)
    assert rows["psnr"]["n"] == 3 and "1 image(s) with nothing outside" in rows["psnr"]["note"]


def test_inputs_take_the_methods_resolution_path():
    x = slices(4, size=32)
    small = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    down_up = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", antialias=True,
                                              align_corners=False).clamp(0, 1)
    matched = rows_of(x, down_up, working_size=16)
    assert matched["ssim"]["value"] == pytest.approx(1.0, abs=1e-5) and "taken down to 16 px" in matched["ssim"]["note"]
    assert rows_of(x, down_up)["ssim"]["value"] < 0.99


class _Evaluation:
    """The parts of MethodEvaluation the suite reads."""

    def __init__(self, translate, masks: torch.Tensor | None) -> None:
        images = torch.cat([slices(4, 0), slices(4, 1)])
        labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        self.test = ImageSet(images=images, labels=labels, ids=[str(i) for i in range(8)],
                             brain=torch.ones_like(images, dtype=torch.bool),
                             masks=None if masks is None else torch.cat([torch.zeros_like(masks), masks]))
        self.method, self.settings, self.seed, self.working_size, self.translate = "m", SETTINGS, 0, None, translate
        groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
        real = {"no_tumor": images[:4], "tumor": images[4:]}
        self._data = Translations(real, {"no_tumor": translate(images[4:], "no_tumor")},
                                  {"no_tumor": groups[:4], "tumor": groups[4:]}, {"no_tumor": groups[4:]})

    def translations(self) -> Translations:
        return self._data


def test_suite_rows_per_domain_from_the_methods_translate():
    def halve_lesion_contrast(images: torch.Tensor, domain: str) -> torch.Tensor:
        assert domain == "no_tumor"
        out = images.clone()
        out[:, :, 18:26, 18:26] *= 0.5
        return out

    rows = FidelitySuite().rows(_Evaluation(halve_lesion_contrast, lesion_masks(4)))
    by = {(r["metric"], r["domain"]): r for r in rows}
    assert set(by) == {(m, d) for m in ("ssim", "psnr") for d in ("no_tumor", "tumor")}
    assert by[("ssim", "tumor")]["value"] == pytest.approx(1.0, abs=1e-6)  # only lesion pixels changed
    assert by[("ssim", "no_tumor")]["value"] < 1  # on healthy slices the same change is damage
    assert np.isfinite(by[("psnr", "no_tumor")]["value"]) and by[("psnr", "no_tumor")]["value"] < PSNR_CAP_DB
    no_masks = FidelitySuite().rows(_Evaluation(halve_lesion_contrast, None))
    assert all(r["value"] is None and "no lesion masks" in r["note"] for r in no_masks if r["domain"] == "tumor")
