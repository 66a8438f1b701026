"""The ResNet18 classifier's network and input normalisation (the baseline trains it; as the
MRI-domain feature extractor it is loaded through ``ResNet18Baseline.feature_extractor``)."""

from __future__ import annotations

import torch
import torchvision


def build_resnet18_classifier(num_classes: int = 2, in_channels: int = 1) -> torch.nn.Module:
    """torchvision ResNet18 with a single-channel stem and a ``num_classes`` head.

    Its penultimate (512-d, after global pooling) features are what the MRI-domain feature
    space uses.
    """
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.conv1 = torch.nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def adapt_imagenet_state_dict(state: dict[str, torch.Tensor], in_channels: int = 1) -> dict[str, torch.Tensor]:
    """Make ImageNet RGB weights fit a 1-channel stem (sum over RGB) and drop the 1000-way head."""
    state = dict(state)
    if in_channels == 1 and state["conv1.weight"].shape[1] == 3:
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    state.pop("fc.weight", None)
    state.pop("fc.bias", None)
    return state


def standardize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image z-score of (N, C, H, W): the ResNet18 classifier's input normalisation.

    MRI intensities are relative, so each image sets its own scale. Whoever feeds the trained
    classifier (the baseline itself, the MRI-domain feature space) must apply this first; its
    ``best.pt`` says so with ``"normalization": "per-image-zscore"``.
    """
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (std + eps)
