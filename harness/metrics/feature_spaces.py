"""The two feature spaces FID/IS/KID are computed in, as torch-fidelity feature extractors.

* ``inception-v3``: torch-fidelity's own TF-compatible Inception-v3, always given a local
  weights file (never downloaded at run time).
* ``mri-resnet18``: the harness's ResNet18 classifier trained on the split, registered with
  torch-fidelity. ImageNet features know nothing of MRI; a domain classifier's penultimate
  features do, so both are reported. Its numbers are comparable only between runs that used
  the same checkpoint, so the checkpoint's SHA-256 travels with every row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch_fidelity import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from harness.metrics.weights import find_inception_weights, inception_missing_reason
from harness.models import build_resnet18_classifier, file_sha256, standardize

INCEPTION_SPACE = "inception-v3"
MRI_SPACE = "mri-resnet18"
INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's registered name
MRI_EXTRACTOR = "harness-mri-resnet18"
INCEPTION_INPUT_SIZE = tf_inception.FeatureExtractorInceptionV3.INPUT_IMAGE_SIZE
MRI_NORMALIZATION = "per-image-zscore"  # harness.models.standardize, what the classifier trains on


class FeatureSpaceUnavailable(Exception):
    """A feature space that cannot be used in this run; the message goes into the row note."""


def load_mri_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], int]:
    """Read ``{"model": state_dict, "image_size": int[, "normalization": "per-image-zscore"]}``
    (the resnet18 baseline's ``best.pt``); a clear ValueError on anything else."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"MRI extractor checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"MRI extractor checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(payload, dict) or "model" not in payload or "image_size" not in payload:
        raise ValueError(f"MRI extractor checkpoint {path} must hold 'model' (ResNet18 state_dict) "
                         f"and 'image_size'")
    size = payload["image_size"]
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"MRI extractor checkpoint {path}: bad image_size {size!r}")
    norm = payload.get("normalization", MRI_NORMALIZATION)
    if norm != MRI_NORMALIZATION:
        raise ValueError(f"MRI extractor checkpoint {path}: unsupported normalization {norm!r} "
                         f"(expected {MRI_NORMALIZATION!r})")
    return payload["model"], size


class MRIResNet18Extractor(FeatureExtractorBase):
    """ResNet18 classifier features for torch-fidelity: ``"512"`` (global-pooled penultimate
    layer, for FID/KID) and ``"logits"`` (2-class, with bias, so IS uses the classifier's own
    tumor/no-tumor posterior).

    Takes torch-fidelity's uint8 Bx3xHxW batches, averages the channels back to one, scales to
    [0, 1], resizes to the checkpoint's image size and z-scores each image, exactly as the
    resnet18 baseline prepares its input (``baselines.resnet18.preprocess``).
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{name} needs feature_extractor_weights_path (a ResNet18 classifier checkpoint)")
        state, self.image_size = load_mri_checkpoint(feature_extractor_weights_path)
        self.net = build_resnet18_classifier()
        try:
            self.net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {feature_extractor_weights_path} is not a harness ResNet18 "
                             f"classifier: {exc}") from exc
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "512", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "512", "kid": "512", "prc": "512"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return True

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 Bx3xHxW images, got {x.dtype} {tuple(x.shape)}")
        x = x.float().mean(dim=1, keepdim=True) / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True).clamp(0, 1)
        x = standardize(x)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        pooled = torch.flatten(n.avgpool(x), 1)
        out = {"512": pooled, "logits": n.fc(pooled)}
        return tuple(out[k] for k in self.features_list)


def ensure_registered() -> None:
    """Register the MRI extractor with torch-fidelity once per process."""
    if MRI_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(MRI_EXTRACTOR, MRIResNet18Extractor)


@dataclass(frozen=True)
class FeatureSpace:
    """A resolved, usable feature space: which extractor, which weights, what input size."""

    id: str  # "inception-v3" | "mri-resnet18" (the rows' feature_space)
    extractor: str  # torch-fidelity registry name
    weights_path: Path
    weights_sha256: str  # full hex digest
    input_size: int  # images are resized to this before uint8 quantisation

    @property
    def description(self) -> str:
        """Goes into every row's note: numbers compare only within one extractor + weights."""
        return f"extractor {self.id} sha256 {self.weights_sha256[:12]}"

    @property
    def fingerprint(self) -> str:
        """Everything extracted features depend on (the feature cache key's first part)."""
        return (f"{self.id}|{self.extractor}|{self.weights_sha256}|{self.input_size}|"
                f"torch-fidelity {torch_fidelity.__version__}|float32")

    def layer(self, metric: str) -> str:
        return FEATURE_EXTRACTORS_REGISTRY[self.extractor].get_default_feature_layer_for_metric(metric)

    def create_extractor(self, layers: list[str], device: torch.device) -> FeatureExtractorBase:
        """Build the extractor the way torch-fidelity does, from the local weights file only."""
        with _no_download():
            return create_feature_extractor(
                self.extractor, list(layers), cuda=device.type == "cuda",
                feature_extractor_weights_path=str(self.weights_path), verbose=False,
            )


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


def resolve_inception(explicit: str | None) -> FeatureSpace:
    """The Inception space from a local file, or FeatureSpaceUnavailable saying how to get one."""
    path, _ = find_inception_weights(explicit)
    if path is None:
        raise FeatureSpaceUnavailable(inception_missing_reason(explicit))
    return FeatureSpace(INCEPTION_SPACE, INCEPTION_EXTRACTOR, path, _sha256(path), INCEPTION_INPUT_SIZE)


def resolve_mri(checkpoint: str | None) -> FeatureSpace:
    """The MRI space from the ResNet18 checkpoint, or FeatureSpaceUnavailable with the reason."""
    if checkpoint is None:
        raise FeatureSpaceUnavailable("no MRI-domain extractor: no ResNet18 classifier checkpoint "
                                      "was given (the resnet18 method must run first)")
    try:
        _, size = load_mri_checkpoint(checkpoint)
    except ValueError as exc:
        raise FeatureSpaceUnavailable(str(exc)) from exc
    ensure_registered()
    path = Path(checkpoint)
    return FeatureSpace(MRI_SPACE, MRI_EXTRACTOR, path, _sha256(path), size)
