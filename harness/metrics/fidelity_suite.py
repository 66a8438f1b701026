"""The ``fidelity`` suite: does a method that reconstructs keep healthy anatomy?

A distribution distance (FID, KID, FRD) says whether translations look like the target domain;
it does not say whether the input's own healthy tissue survived. For methods that translate into
``no_tumor`` this suite compares each input with its translation, by MONAI's ``SSIMMetric``
(gaussian window of 11 px, sigma 1.5, data range 1) and ``PSNRMetric`` (max value 1):

* ``domain: no_tumor``: healthy test slices and their reconstructions, the whole slice;
* ``domain: tumor``: tumor test slices and their healthy translations, outside the lesion mask
  dilated by :data:`LESION_MARGIN_PX`. SSIM is MONAI's SSIM map (``compute_ssim_and_cs``, the
  function ``SSIMMetric`` averages) averaged over the windows that hold no dilated-lesion pixel,
  PSNR is MONAI's on the pixels outside the dilated mask, so lesion pixels never count.

Inputs take the method's resolution path first (as real images do for FID), so a method that
works at half size is not charged for the resize alone. Per-image PSNR is capped at
:data:`PSNR_CAP_DB` (an exact copy has infinite PSNR; the cap keeps means and intervals finite).
Values are means over images with a subject-bootstrap interval (whole subjects resampled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import PSNRMetric, SSIMMetric
from monai.metrics.regression import compute_ssim_and_cs

from harness.api import NO_TUMOR, TUMOR
from harness.metrics.bootstrap import stratified_counts
from harness.metrics.generative import resolution_path
from harness.metrics.suite import (MethodEvaluation, MetricInfo, MetricSuite, metric_row, percentile_interval,
                                   register_metric_suite)

__all__ = ["FIDELITY_INFOS", "FidelitySuite", "fidelity_rows", "masked_psnr", "masked_ssim"]

WINDOW, SIGMA = 11, 1.5
LESION_MARGIN_PX = 5
PSNR_CAP_DB = 100.0
BATCH = 64

FIDELITY_INFOS = (
    MetricInfo("ssim", "SSIM of input and reconstruction (healthy tissue)", "fidelity", higher_is_better=True),
    MetricInfo("psnr", "PSNR of input and reconstruction (healthy tissue, dB)", "fidelity", digits=2,
               higher_is_better=True),
)


def _ssim_metric() -> SSIMMetric:
    return SSIMMetric(spatial_dims=2, data_range=1.0, win_size=WINDOW, kernel_sigma=SIGMA, reduction="none")


def dilate(masks: torch.Tensor, margin: int) -> torch.Tensor:
    """(N,1,H,W) bool masks grown by ``margin`` px (square neighbourhood)."""
    if margin <= 0:
        return masks.bool()
    return F.max_pool2d(masks.float(), 2 * margin + 1, stride=1, padding=margin) > 0


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, excluded: torch.Tensor | None) -> torch.Tensor:
    """Per-image SSIM (N,): MONAI's SSIM map averaged over the windows that hold no ``excluded``
    pixel (all windows when None: then it equals ``SSIMMetric``). NaN for an image without any."""
    if excluded is None:
        return _ssim_metric()(pred, target).reshape(-1)
    ssim_map, _ = compute_ssim_and_cs(pred, target, 2, [WINDOW, WINDOW], [SIGMA, SIGMA], data_range=1.0)
    clean = F.max_pool2d(excluded.float(), WINDOW, stride=1) == 0  # the valid windows, as the map
    counts = clean.flatten(1).sum(dim=1)
    sums = (ssim_map * clean).flatten(1).sum(dim=1)
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, excluded: torch.Tensor | None) -> torch.Tensor:
    """Per-image PSNR (N,) by MONAI's ``PSNRMetric`` on the pixels outside ``excluded`` (all when
    None), capped at :data:`PSNR_CAP_DB`; NaN for an image without any such pixel."""
    metric = PSNRMetric(max_val=1.0, reduction="none")
    if excluded is None:
        values = metric(pred, target).reshape(-1)
    else:
        values = torch.stack([metric(p[~e][None, None], t[~e][None, None]).reshape(())
                              if bool((~e).any()) else torch.tensor(float("nan"))
                              for p, t, e in zip(pred, target, excluded.bool())])
    return values.clamp(max=PSNR_CAP_DB)


def _estimate(values: np.ndarray, groups: Sequence[str], n_boot: int, ci: float, seed: int
              ) -> tuple[float, float | None, float | None, int]:
    """Mean over images, subject-bootstrap interval, subject count."""
    _, member_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_subjects = int(member_of.max()) + 1
    low = high = None
    if n_boot > 0 and n_subjects > 1:
        counts = stratified_counts(np.zeros(n_subjects, dtype=int), n_boot, np.random.default_rng(seed))[:, member_of]
        low, high = percentile_interval((counts @ values) / counts.sum(axis=1), ci)
    return float(values.mean()), low, high, n_subjects


def _batched(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor | None) -> torch.Tensor:
    n = tensors[0].shape[0]
    return torch.cat([fn(*(None if t is None else t[i:i + BATCH] for t in tensors)) for i in range(0, n, BATCH)])


def fidelity_rows(method: str, inputs: torch.Tensor, outputs: torch.Tensor, groups: Sequence[str],
                  lesions: torch.Tensor | None, domain: str, *, working_size: int | None, n_boot: int, ci: float,
                  seed: int) -> list[dict]:
    """The ``ssim`` and ``psnr`` rows of one domain: ``inputs`` and their translations ``outputs``
    ((N,1,H,W) in [0,1]) of the subjects ``groups``; ``lesions``: masks whose dilation is left
    out (None: whole slices)."""
    ref, path_note = resolution_path(inputs.float().cpu(), working_size)
    outputs = outputs.float().cpu().clamp(0, 1)
    excluded = None if lesions is None else dilate(lesions.cpu(), LESION_MARGIN_PX)
    where = ("whole healthy slices" if lesions is None else
             f"tumor slices outside the lesion mask dilated by {LESION_MARGIN_PX} px (SSIM over the {WINDOW} px "
             f"windows holding no dilated-lesion pixel, PSNR over the pixels outside it)")
    rows = []
    ssim_what = f"MONAI SSIM (gaussian {WINDOW} px window, sigma {SIGMA:g}, data range 1)"
    psnr_what = f"MONAI PSNR (max 1), per image capped at {PSNR_CAP_DB:g} dB"
    for metric, fn, what in (("ssim", masked_ssim, ssim_what), ("psnr", masked_psnr, psnr_what)):
        values = _batched(fn, outputs, ref, excluded).double().numpy()
        keep = np.isfinite(values)
        dropped = int((~keep).sum())
        if not keep.any():
            rows.append(metric_row(method, metric, None, domain=domain, n=0,
                                   note=f"not computed: no pixel left in {where}"))
            continue
        kept_groups = [g for g, k in zip(groups, keep) if k]
        value, low, high, subjects = _estimate(values[keep], kept_groups, n_boot, ci, seed)
        left_out = f"; {dropped} image(s) with nothing outside the dilated lesion left out" if dropped else ""
        rows.append(metric_row(
            method, metric, value, domain=domain, ci_low=low, ci_high=high, n=int(keep.sum()),
            note=f"{what} between each input and its translation into {NO_TUMOR}, on {where}; mean over "
                 f"{int(keep.sum())} images of {subjects} subjects, CI resamples subjects{left_out}; {path_note}"))
    return rows


def _translate(translate: Callable[[torch.Tensor, str], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([translate(images[i:i + BATCH], NO_TUMOR).detach().float().cpu()
                          for i in range(0, images.shape[0], BATCH)])


@register_metric_suite("fidelity")
class FidelitySuite(MetricSuite):
    needs = frozenset({"translations"})
    infos = FIDELITY_INFOS

    def rows(self, ev: MethodEvaluation) -> list[dict]:
        data = ev.translations()
        metrics = [i.id for i in self.infos]
        if NO_TUMOR not in data.translated:
            return [metric_row(ev.method, m, None, domain=d, note=f"not computed: the method does not translate "
                                                                  f"into {NO_TUMOR}")
                    for d in (NO_TUMOR, TUMOR) for m in metrics]
        s, args = ev.settings, {"working_size": ev.working_size, "seed": ev.seed}
        rows = []
        healthy = data.real.get(NO_TUMOR)
        if ev.translate is None or healthy is None or healthy.shape[0] == 0:
            why = "no healthy test slices" if ev.translate is not None else "no translate function was given"
            rows += [metric_row(ev.method, m, None, domain=NO_TUMOR, note=f"not computed: {why}") for m in metrics]
        else:
            rows += fidelity_rows(ev.method, healthy, _translate(ev.translate, healthy), data.real_groups[NO_TUMOR],
                                  None, NO_TUMOR, n_boot=s.bootstrap, ci=s.ci, **args)
        tumor = data.real.get(TUMOR)
        if ev.test.masks is None or tumor is None or tumor.shape[0] == 0:
            why = "the test set has no lesion masks" if ev.test.masks is None else "no tumor test slices"
            rows += [metric_row(ev.method, m, None, domain=TUMOR, note=f"not computed: {why}") for m in metrics]
        else:
            masks = ev.test.masks[ev.test.labels == 1]  # translate_test keeps the test set's order per domain
            rows += fidelity_rows(ev.method, tumor, data.translated[NO_TUMOR], data.source_groups[NO_TUMOR], masks,
                                  TUMOR, n_boot=s.bootstrap, ci=s.ci, **args)
        return rows
