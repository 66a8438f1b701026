"""The feature spaces FID/IS/KID and target rates are computed in, as torch-fidelity extractors.

* ``inception-v3``: torch-fidelity's own TF-compatible Inception-v3, always given a local
  weights file (never downloaded at run time). It receives uint8 images at their own size and
  resizes them to 299 px itself (TF1-compatible bilinear), exactly as ``calculate_metrics`` does.
* ``mri-<method>``: the network of a method with the ``features`` capability (e.g. the run's
  ResNet18 classifier), handed over as an ``nn.Module`` mapping (N,1,H,W) images in [0,1] to
  ``(features, logits)``; it is wrapped and registered with torch-fidelity. ImageNet features
  know nothing of MRI; a domain classifier's do. Its numbers compare only between runs with the
  same checkpoint, so the checkpoint's SHA-256 travels with every row and every cache key.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from harness.metrics.weights import find_inception_weights, inception_missing_reason
from harness.hashing import file_sha256

INCEPTION_SPACE = "inception-v3"
INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's registered name
MRI_EXTRACTOR = "harness-mri-module"  # the wrapper below, in torch-fidelity's registry
MRI_FEATURES, MRI_LOGITS = "features", "logits"
REALISM_SPACE = "realism-ssl"  # the self-supervised space of harness.metrics.realism_space


class FeatureSpaceUnavailable(Exception):
    """A feature space that cannot be used in this run; the message goes into the row note."""


@dataclass(frozen=True)
class MRIExtractor:
    """The run's MRI-domain network and what identifies it.

    ``module`` maps (N,1,H,W) floats in [0,1] at any size to ``(features (N,D), logits (N,2))``
    (logit 1 = tumor), in eval mode (``Method.feature_extractor``). ``space`` is the rows'
    ``feature_space`` (``f"mri-{method}"``); ``fingerprint`` the checkpoint's SHA-256, which keys
    the feature cache and goes into every note. ``val_images``/``val_labels`` (1 = tumor) are the
    real validation images on which the classifier's threshold for ``target_rate`` is fixed.
    """

    module: torch.nn.Module
    space: str
    fingerprint: str
    val_images: torch.Tensor
    val_labels: torch.Tensor


class GrayModuleExtractor(FeatureExtractorBase):
    """What every torch-fidelity wrapper of one of the harness's own gray-image networks shares:
    torch-fidelity's uint8 Bx3xHxW batches averaged back to one channel in [0,1] on the module's
    device (so any CUDA device works); the module does its own resizing and normalisation."""

    module: torch.nn.Module

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def gray(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 Bx3xHxW images, got {x.dtype} {tuple(x.shape)}")
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else x.device
        return x.to(device).float().mean(dim=1, keepdim=True) / 255.0


class MRIModuleExtractor(GrayModuleExtractor):
    """torch-fidelity wrapper of an :class:`MRIExtractor` module (``mri_module=`` keyword)."""

    def __init__(self, name: str, features_list: list[str], mri_module: torch.nn.Module | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if mri_module is None:
            raise ValueError(f"{name} needs mri_module= (a Method.feature_extractor network)")
        self.module = mri_module

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return MRI_FEATURES, MRI_LOGITS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": MRI_LOGITS, "fid": MRI_FEATURES, "kid": MRI_FEATURES, "prc": MRI_FEATURES}[metric]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = self.gray(x)
        out = self.module(images)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"the MRI feature module must return (features, logits), got {type(out).__name__}")
        feats, logits = (t.float() for t in out)
        n = images.shape[0]
        if feats.dim() != 2 or feats.shape[0] != n or logits.shape != (n, 2):
            raise ValueError(f"the MRI feature module returned features {tuple(feats.shape)} and logits "
                             f"{tuple(logits.shape)} for {n} images; expected (N, D) and (N, 2)")
        named = {MRI_FEATURES: feats, MRI_LOGITS: logits}
        return tuple(named[k] for k in self.features_list)


def ensure_registered() -> None:
    """Register the MRI wrapper with torch-fidelity once per process."""
    if MRI_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(MRI_EXTRACTOR, MRIModuleExtractor)


@dataclass(frozen=True)
class FeatureSpace:
    """A usable feature space: its row id, note text, cache identity and how to build it."""

    id: str  # the rows' feature_space
    description: str  # goes into every row's note: numbers compare only within one extractor
    fingerprint: str  # everything extracted features depend on besides the pixels (cache key)
    extractor: str  # torch-fidelity registry name (for its default layers)
    metrics: tuple[str, ...]  # the metric rows this space reports
    build: Callable[[list[str], torch.device], FeatureExtractorBase] = field(compare=False, repr=False)

    def layer(self, metric: str) -> str:
        return FEATURE_EXTRACTORS_REGISTRY[self.extractor].get_default_feature_layer_for_metric(metric)


@contextlib.contextmanager
def _no_download() -> Iterator[None]:
    """Belt and braces: even if a weights path went missing, torch-fidelity may not fetch."""
    def refuse(url: str, *args, **kwargs):
        raise RuntimeError(f"harness refuses to download {url} at run time")

    with mock.patch.object(tf_inception, "load_state_dict_from_url", refuse):
        yield


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """Full SHA-256 of a weights file, memoised by (path, size, mtime): Inception is ~95 MB."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_sha256(path, length=64)
    return _SHA_CACHE[key]


def _fidelity_tag() -> str:
    return f"torch-fidelity {torch_fidelity.__version__}|float32"


def resolve_inception(explicit: str | None) -> FeatureSpace:
    """The Inception space from a local file, or FeatureSpaceUnavailable saying how to get one."""
    path, _ = find_inception_weights(explicit)
    if path is None:
        raise FeatureSpaceUnavailable(inception_missing_reason(explicit))
    sha = _sha256(path)

    def build(layers: list[str], device: torch.device) -> FeatureExtractorBase:
        try:
            with _no_download():
                return create_feature_extractor(INCEPTION_EXTRACTOR, list(layers), cuda=device.type == "cuda",
                                                feature_extractor_weights_path=str(path), verbose=False)
        except Exception as exc:  # a corrupt or foreign weights file is a missing feature space
            raise FeatureSpaceUnavailable(f"could not load {INCEPTION_SPACE} weights {path}: "
                                          f"{type(exc).__name__}: {exc}") from exc

    return FeatureSpace(INCEPTION_SPACE, f"extractor {INCEPTION_SPACE} sha256 {sha[:12]}",
                        f"{INCEPTION_SPACE}|{INCEPTION_EXTRACTOR}|{sha}|{_fidelity_tag()}", INCEPTION_EXTRACTOR,
                        ("fid", "is", "kid", "fid_reference", "fid_relative"), build)


def module_sha256(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes, values): the feature
    cache must never serve features of other weights under a fingerprint the caller reused."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-d buffers (BatchNorm counts)
    return h.hexdigest()


def mri_space(mri: MRIExtractor) -> FeatureSpace:
    """The MRI-domain space of ``mri``'s module, wrapped for torch-fidelity."""
    ensure_registered()
    weights = module_sha256(mri.module)

    def build(layers: list[str], device: torch.device) -> FeatureExtractorBase:
        extractor = MRIModuleExtractor(MRI_EXTRACTOR, list(layers), mri_module=mri.module)
        extractor.requires_grad_(False)
        return extractor.eval()

    return FeatureSpace(mri.space, f"extractor {mri.space} sha256 {mri.fingerprint[:12]}; a tumor classifier "
                                   f"trained to ignore blur and noise: read as 'looks like its domain to the "
                                   f"classifier', not as realism (see {REALISM_SPACE})",
                        f"{mri.space}|{MRI_EXTRACTOR}|{mri.fingerprint}|{weights}|{_fidelity_tag()}", MRI_EXTRACTOR,
                        ("fid", "kid", "fid_reference", "fid_relative", "target_rate", "target_rate_reference"),
                        build)
