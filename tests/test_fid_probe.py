"""The MRI-space FID probe behind translating methods' learning curves (FitContext.mri_fid)."""

from __future__ import annotations

import torch

from harness.metrics.feature_spaces import MRIExtractor
from harness.metrics.fid_probe import MRIFidProbe


class TinyFeatures(torch.nn.Module):
    """A fixed random conv net: (N, 1, H, W) in [0, 1] -> (features (N, 8), logits (N, 2))."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 5, stride=2)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.conv(x)).mean(dim=(-2, -1))
        return f, self.head(f)


def _images(n: int, seed: int, brightness: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (brightness * torch.rand(n, 1, 32, 32, generator=g)).clamp(0, 1)


def _probe(calls: list[int], available: bool = True) -> MRIFidProbe:
    def resolve() -> MRIExtractor | None:
        calls.append(1)
        if not available:
            return None
        return MRIExtractor(TinyFeatures().eval(), "mri-tiny", "0" * 64, _images(4, 9), torch.tensor([0, 1, 0, 1]))

    return MRIFidProbe(resolve, torch.device("cpu"), working_size=None)


def test_fid_is_small_for_like_sets_and_grows_with_the_gap():
    calls: list[int] = []
    probe = _probe(calls)
    real = _images(40, 1)
    same = probe(real, _images(40, 2))
    far = probe(real, _images(40, 3, brightness=1.0))
    assert same is not None and far is not None
    assert 0 <= same < far
    assert probe(real, real) < 1e-3
    assert calls == [1]  # the network is resolved once, at the first call
    assert len(probe._real) == 1  # the real set's features are extracted once


def test_no_network_or_too_few_images_give_none():
    calls: list[int] = []
    assert _probe(calls, available=False)(_images(10, 1), _images(10, 2)) is None
    assert _probe([])(_images(1, 1), _images(10, 2)) is None
