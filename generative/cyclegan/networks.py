"""CycleGAN networks: the ResNet generator and the PatchGAN discriminator.

Both follow the reference implementation (Zhu et al. 2017): instance norm without affine
parameters, reflection padding, N(0, 0.02) initialisation. The discriminator's depth follows the
image size (:func:`discriminator_layers`): the reference 70x70 PatchGAN judges 70 px patches of a
256 px image, but at 64 px the same network sees the whole image and stops being a patch critic. Images enter and leave in [-1, 1]
(the generator ends in tanh); :func:`to_model_range` / :func:`from_model_range` convert from
and to the [0, 1] range that ImageSets use.
"""

from __future__ import annotations

import torch
from torch import nn

MIN_IMAGE_SIZE = 16  # the shallowest discriminator's patch grid is still 6x6 there
REFERENCE_LAYERS = 3  # the reference 70x70 PatchGAN; deeper only adds receptive field
MAX_RF_FRACTION = 0.55  # receptive field at most this share of the image side (34 of 64 px)


def check_image_size(size: int) -> None:
    """Two stride-2 stages of the generator need a multiple of 4."""
    if size < MIN_IMAGE_SIZE or size % 4 != 0:
        raise ValueError(
            f"cyclegan.image_size must be a multiple of 4 and at least {MIN_IMAGE_SIZE}, got {size}"
        )


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    return x * 2.0 - 1.0


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with reflection padding and an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample(in_ch: int, out_ch: int, mode: str) -> list[nn.Module]:
    """Transpose convolution (reference) or resize-convolution, which avoids checkerboards."""
    if mode == "transpose":
        conv: list[nn.Module] = [
            nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1)
        ]
    elif mode == "resize":
        conv = [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                nn.Conv2d(in_ch, out_ch, 3)]
    else:
        raise ValueError(f"cyclegan.upsample must be 'transpose' or 'resize', got {mode!r}")
    return [*conv, _norm(out_ch), nn.ReLU(True)]


class ResnetGenerator(nn.Module):
    """7x7 stem, two stride-2 downsamplings, ``n_blocks`` residual blocks, two upsamplings,
    7x7 output convolution and tanh. Spatial size in = size out (a multiple of 4)."""

    def __init__(self, channels: int = 1, ngf: int = 64, n_blocks: int = 9,
                 upsample: str = "transpose") -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), _norm(ngf), nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       _norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += _upsample(ngf * mult, ngf * mult // 2, upsample)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(n_layers: int) -> int:
    """Receptive field (px) of a PatchGAN with ``n_layers``: 16, 34, 70, 142 for 1-4 layers.

    Walked back from one output logit: every layer is a 4x4 convolution; the first ``n_layers``
    have stride 2, the last two stride 1."""
    strides = [2] * n_layers + [1, 1]
    field = 1
    for stride in reversed(strides):
        field = (field - 1) * stride + 4
    return field


def discriminator_layers(size: int) -> int:
    """The deepest PatchGAN, up to the reference depth, whose receptive field covers at most
    ``MAX_RF_FRACTION`` of a ``size`` px image: 70x70 at 128-256 px (the reference at 256 px),
    34x34 at 64 px, 16x16 at 32 px; one layer at least."""
    fitting = [n for n in range(1, REFERENCE_LAYERS + 1) if receptive_field(n) <= MAX_RF_FRACTION * size]
    return max(fitting, default=1)


def patch_grid(size: int, n_layers: int) -> int:
    """Side of the discriminator's output grid for a ``size`` px input."""
    side = size
    for _ in range(n_layers):
        side //= 2  # 4x4, stride 2, padding 1 halves an even side
    return side - 2  # two 4x4 stride-1 convolutions with padding 1 remove one pixel each


class PatchDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake logits, one per overlapping patch of
    ``receptive_field(n_layers)`` px (70x70 with ``n_layers=3``, the reference)."""

    def __init__(self, channels: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1),
                       _norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@torch.no_grad()
def init_weights(module: nn.Module, generator: torch.Generator, gain: float = 0.02) -> None:
    """N(0, ``gain``) for every convolution weight, zero biases; drawn from ``generator`` so
    initialisation depends on the seed alone, not on global RNG history."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * gain)
            if m.bias is not None:
                m.bias.zero_()
