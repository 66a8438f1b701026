"""Train the ResNet18 baseline on tiny slices and save its final weights: one process, or one
rank of a torchrun job (``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train.py OUT``).

The DDP equivalence tests compare the two; both read the same data and settings from here. With
``groupnorm`` the network's BatchNorm layers become GroupNorm: no statistic then couples the
images of a batch, so a DDP run must equal the one-process run to float precision, which checks
sharding, augmentation, loss scaling and gradient averaging apart from BatchNorm (whose
per-rank statistics on CPU make the real network only close; see README "Scaling out").
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script by torchrun

from baseline_data import make_context, make_slices, resnet18  # noqa: E402

import baselines.resnet18  # noqa: E402
from harness import distributed  # noqa: E402

# 48 training images: three global batches of 16 per epoch (8 per rank on 2 ranks), no drop
SETTINGS = dict(image_size=32, epochs=2, batch_size=16, patience=0, cpu_bf16=False)


def groupnorm_resnet18() -> torch.nn.Module:
    """The baseline's network with GroupNorm (8 groups) in place of every BatchNorm."""
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=2,
                                        norm_layer=lambda c: torch.nn.GroupNorm(8, c))
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def train(out: Path, groupnorm: bool = False) -> Path:
    """Fit, then (rank 0) write the last epoch's weights to ``out/weights.pt`` and the world size
    it trained in to ``out/world.txt``; returns the weights' path."""
    torch.set_num_threads(1)
    builder = baselines.resnet18.build_resnet18_classifier
    if groupnorm:
        baselines.resnet18.build_resnet18_classifier = groupnorm_resnet18
    try:
        device = distributed.setup(torch.device("cpu"))
        train_set, val = make_slices(48, seed=1, contrast=0.35), make_slices(16, seed=2, contrast=0.35)
        ctx = replace(make_context(out / "fit"), device=device, distributed=distributed.active())
        resnet18(**SETTINGS).fit(train_set, val, ctx)
        weights = out / "weights.pt"
        if distributed.is_main():
            last = torch.load(out / "fit" / "checkpoints" / "last.pt", weights_only=True)
            torch.save(last["state"]["model"], weights)
            (out / "world.txt").write_text(str(distributed.world_size() if ctx.distributed else 1))
        distributed.teardown()
    finally:
        baselines.resnet18.build_resnet18_classifier = builder
    return weights


if __name__ == "__main__":
    train(Path(sys.argv[1]), groupnorm="groupnorm" in sys.argv[2:])
