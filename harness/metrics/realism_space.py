"""The ``realism-ssl`` feature space: the self-supervised realism encoder
(:mod:`harness.metrics.realism_encoder`) wrapped for torch-fidelity, so FID and KID per domain
are computed in it by the same code as in the other spaces (:mod:`harness.metrics.generative`).

It reports FID, KID and the reference/relative FID only: the encoder has no classes, hence no IS
and no target rate. Whether the space may be read as realism is decided by the degradation
ladder (:mod:`harness.metrics.degradation_ladder`); its verdict travels in every row's note.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch_fidelity
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import get_featuresdict_from_dataset

from harness.metrics.feature_spaces import REALISM_SPACE, FeatureSpace, GrayModuleExtractor, module_sha256
from harness.metrics.realism_encoder import RealismEncoder

REALISM_EXTRACTOR = "harness-realism-module"  # the wrapper below, in torch-fidelity's registry
REALISM_FEATURES = "features"
REALISM_METRICS = ("fid", "kid", "fid_reference", "fid_relative")


class RealismModuleExtractor(GrayModuleExtractor):
    """torch-fidelity wrapper of a :class:`RealismEncoder` (``realism_module=`` keyword): uint8
    Bx3xHxW batches -> the gray channel in [0,1] -> the encoder's features at the images' size."""

    def __init__(self, name: str, features_list: list[str], realism_module: RealismEncoder | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if realism_module is None:
            raise ValueError(f"{name} needs realism_module= (a RealismEncoder)")
        self.module = realism_module

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (REALISM_FEATURES,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        # one layer serves every metric; the space's metrics never include IS, which would need classes
        return REALISM_FEATURES

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            feats = self.module(self.gray(x)).float()
        return (feats,)


def ensure_registered() -> None:
    """Register the realism wrapper with torch-fidelity once per process."""
    if REALISM_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(REALISM_EXTRACTOR, RealismModuleExtractor)


def realism_space(encoder: RealismEncoder, key: str, verdict: str) -> FeatureSpace:
    """The space of ``encoder`` (cache ``key`` from :func:`realism_encoder.encoder_key`);
    ``verdict`` (the ladder's, one line) goes into every row's note."""
    ensure_registered()
    weights = module_sha256(encoder)

    def build(layers: list[str], device: torch.device) -> FeatureExtractorBase:
        extractor = RealismModuleExtractor(REALISM_EXTRACTOR, list(layers), realism_module=encoder.to(device))
        extractor.requires_grad_(False)
        return extractor.eval()

    description = (f"extractor {REALISM_SPACE} (self-supervised on this split's train images, no blur/noise/"
                   f"resolution augmentation) sha256 {weights[:12]}; {verdict}")
    return FeatureSpace(REALISM_SPACE, description,
                        f"{REALISM_SPACE}|{REALISM_EXTRACTOR}|{key}|{weights}|torch-fidelity "
                        f"{torch_fidelity.__version__}|float32",
                        REALISM_EXTRACTOR, REALISM_METRICS, build)


class _Gray3(torch.utils.data.Dataset):
    """uint8 (N,1,H,W) served as torch-fidelity's 3xHxW items (gray repeated)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].expand(3, -1, -1)


def embedder(space: FeatureSpace, device: torch.device,
             batch_size: int = 32) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 (N,1,H,W) -> the space's features through torch-fidelity's own extraction loop
    (what the generative rows use), for the degradation ladder."""
    extractor = space.build([REALISM_FEATURES], device)
    cuda = device.type == "cuda"

    def embed(images: torch.Tensor) -> torch.Tensor:
        feats = get_featuresdict_from_dataset(_Gray3(images), extractor, batch_size, cuda, True, False)
        return feats[REALISM_FEATURES]

    return embed
