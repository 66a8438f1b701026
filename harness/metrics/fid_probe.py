"""MRI-domain FID during training, for learning curves (``FitContext.mri_fid``).

A translating method calls ``ctx.mri_fid(real, generated)`` after an epoch to put "how far are my
translations from real images of the target domain" on its learning curve. The number is made
the way the run's final MRI-space FID rows are (:mod:`harness.metrics.generative`): the run's
MRI feature network wrapped for torch-fidelity, torch-fidelity's feature loop and FID, and the
real images taken through the method's resolution path. It is not those rows: there is no
equal-n subsampling and no reference, and validation images are few, so read it as a trend.

The network is resolved at the first call (a run whose methods never ask trains nothing for it),
and features of the real images are kept by content, so each epoch extracts only the new
translations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_featuresdict_to_statistics, fid_statistics_to_metric
from torch_fidelity.utils import get_featuresdict_from_dataset

from harness.metrics.feature_spaces import MRIExtractor, mri_space
from harness.metrics.generative import BATCH_SIZE, MIN_IMAGES, UInt8Images, resolution_path, to_uint8

FeatureDict = dict[str, torch.Tensor]


class MRIFidProbe:
    """``probe(real, generated)``: FID between (N, 1, H, W) image sets in [0, 1] in the run's MRI
    feature space; None when the run has no MRI network or a set has fewer than two images."""

    def __init__(self, resolve: Callable[[], MRIExtractor | None], device: torch.device,
                 working_size: int | None) -> None:
        self._resolve = resolve
        self.device = device
        self.working_size = working_size
        self._extractor = None
        self._layer = ""
        self._resolved = False
        self._real: dict[str, FeatureDict] = {}

    def __call__(self, real: torch.Tensor, generated: torch.Tensor) -> float | None:
        if min(len(real), len(generated)) < MIN_IMAGES or not self._ready():
            return None
        real_u8 = to_uint8(resolution_path(real, self.working_size)[0])
        key = hashlib.sha256(real_u8.numpy().tobytes()).hexdigest() + str(tuple(real_u8.shape))
        if key not in self._real:
            self._real[key] = self._features(real_u8)
        stats = [fid_featuresdict_to_statistics(f, self._layer)
                 for f in (self._real[key], self._features(to_uint8(generated)))]
        return float(fid_statistics_to_metric(stats[0], stats[1], False)[KEY_METRIC_FID])

    def _ready(self) -> bool:
        if not self._resolved:
            self._resolved = True
            mri = self._resolve()
            if mri is not None:
                space = mri_space(mri)
                self._layer = space.layer("fid")
                self._extractor = space.build([self._layer], self.device)
        return self._extractor is not None

    def _features(self, images: torch.Tensor) -> FeatureDict:
        return get_featuresdict_from_dataset(UInt8Images(images), self._extractor, BATCH_SIZE,
                                             self.device.type == "cuda", True, False)
