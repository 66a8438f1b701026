"""PatchCore's patch features: a torchvision backbone (ImageNet weights from a checked local file,
or random init), its layer2 + layer3 features with 3x3 local averaging, on layer2's grid.

Why apart from the method: the weights-file check runs while settings are validated (before
any data is loaded), and the feature extractor is the one piece that depends on torchvision.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import models

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "PatchFeatures",
    "build_backbone",
    "check_weights_file",
    "file_sha256",
    "name_hash_prefix",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DOWNLOADS = "https://download.pytorch.org/models/"


@dataclass(frozen=True)
class Architecture:
    """A torchvision network PatchCore can use, and the file name of its ImageNet weights."""

    name: str
    weights_file: str
    dim: int  # channels of layer2 + layer3, the patch feature's length before any projection

    @property
    def url(self) -> str:
        return _DOWNLOADS + self.weights_file


# wide_resnet50_2 IMAGENET1K_V1 is the paper's backbone; resnet18 is the cheap alternative
ARCHITECTURES: dict[str, Architecture] = {
    "wide_resnet50_2": Architecture("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", 512 + 1024),
    "resnet18": Architecture("resnet18", "resnet18-f37072fd.pth", 128 + 256),
}

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Full SHA-256 of a file, memoised by (path, size, mtime): settings are validated several
    times per run and a wide_resnet50_2 file is 263 MB."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def name_hash_prefix(path: str | Path) -> str | None:
    """The SHA-256 prefix torchvision puts in its file names (``name-<hex>.pth``), if any."""
    found = _HASH_IN_NAME.search(Path(path).name.lower())
    return found.group(1) if found else None


def check_weights_file(path: str, expected_sha256: str | None) -> str:
    """The file's full SHA-256 after checking it against ``expected_sha256`` (a prefix is
    enough) or, without one, against the hash prefix in its name. Raises ValueError with a
    sentence a user can act on: a missing file, a file nothing can be checked against, a mismatch."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"weights file {str(file)!r} does not exist (the harness never downloads "
                         f"weights: see `python -m harness weights`)")
    expected = expected_sha256.lower() if expected_sha256 else name_hash_prefix(file)
    if expected is None:
        raise ValueError(f"cannot check {str(file)!r}: its name carries no hash prefix (torchvision names "
                         f"files like {ARCHITECTURES['wide_resnet50_2'].weights_file}); give its sha256 "
                         f"with weights_sha256=HEX")
    actual = file_sha256(file)
    if not actual.startswith(expected):
        source = "weights_sha256" if expected_sha256 else "the hash prefix in its file name"
        raise ValueError(f"weights file {str(file)!r} has sha256 {actual[:16]}..., which does not match "
                         f"{expected} ({source}); the file is corrupt or not the one named")
    return actual


def build_backbone(architecture: str, weights: str | None, seed: int) -> torch.nn.Module:
    """The torchvision network ``architecture``: its weights loaded (strictly, so a file of another
    network is refused) from ``weights``, or seeded random init without a file."""
    arch = ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    model = getattr(models, arch.name)(weights=None)
    if weights is not None:
        try:
            state = torch.load(Path(weights).expanduser(), map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: say which file and why
            raise ValueError(f"cannot read weights {weights!r}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(state, dict):
            raise ValueError(f"{weights!r} is not a torchvision state dict")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(f"{weights!r} does not hold {arch.name} weights: {first}") from None
    return model.eval()


class PatchFeatures(torch.nn.Module):
    """(N, 1, H, W) images in [0, 1] -> (N, D, H/8, W/8) patch features: grey repeated to RGB,
    ImageNet normalisation, layer2 and layer3 each averaged over 3x3 neighbourhoods (the paper's
    locally aware features), layer3 upsampled to layer2's grid, concatenated."""

    def __init__(self, backbone: torch.nn.Module, patch_size: int = 3) -> None:
        super().__init__()
        self.backbone = backbone
        self.patch_size = patch_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _local(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        return F.avg_pool2d(x, p, stride=1, padding=p // 2, count_include_pad=False) if p > 1 else x

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = (images.float().expand(-1, 3, -1, -1) - self.mean) / self.std
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        mid = b.layer2(b.layer1(x))
        deep = b.layer3(mid)
        deep = F.interpolate(self._local(deep), size=mid.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([self._local(mid), deep], dim=1)
