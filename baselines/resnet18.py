"""The supervised baseline: a ResNet18 classifier, tumor vs no_tumor; score = P(tumor).

It is the reference point every unsupervised method is compared with, and its trained weights
(``best.pt``) are the MRI-domain feature extractor of the generative metrics.

Training: cross-entropy, AdamW, cosine learning-rate decay, augmentations that suit axial MRI
(:mod:`baselines.augment`), per-image z-scoring, early stopping on validation AUROC (ties broken
by the lower validation loss) with the best weights kept. Every random draw of an epoch comes
from a generator seeded by ``(seed, epoch)``, and each epoch's checkpoint holds model, optimizer,
scheduler and early-stopping state, so ``resume`` continues to exactly the weights an
uninterrupted run reaches (bit-identical on CPU).

Under torchrun (``ctx.distributed``) every rank trains with DistributedDataParallel on its shard
of each global batch (``batch_size`` stays the global batch) with the loss scaled so that the
averaged gradient is the one-process gradient of that batch; validation is sharded and gathered,
so every rank takes the same early-stopping decision; rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from baselines.augment import AugmentSettings, augment_batch
from pydantic import Field

from harness.api import FitContext, ImageSet, KnownWeights, Method, MethodSettings, ScoreOutput, register_method
from baselines.resnet18_net import adapt_imagenet_state_dict, build_resnet18_classifier, standardize
from harness.training import Checkpointer, atomic_torch_save, autocast, distributed, progress, seed_everything

IMAGENET_WEIGHTS_FILE = "resnet18-f37072fd.pth"
IMAGENET_WEIGHTS_URL = f"https://download.pytorch.org/models/{IMAGENET_WEIGHTS_FILE}"
NORMALIZATION = "per-image-zscore"
_EVAL_BATCH = 128
_NO_ACQUISITION = AugmentSettings(max_bias_field=0.0, max_blur_sigma=0.0, ghosting_p=0.0)


class ResNetSettings(MethodSettings):
    """The quick profile's values; ``ResNet18Baseline.profile_defaults`` has smoke and paper."""

    image_size: int = Field(128, ge=32, description="training and scoring size (px)")
    # kept on development seeds 100/101 (docs/protocol.md): validation AUROC plateaus by epoch
    # 12-13 and the best epoch is 16 on both; about 16 s per quick epoch on a 2-core CPU
    epochs: int = Field(18, ge=1, description="maximum epochs")
    batch_size: int = Field(32, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    # development seeds 100/101: no stall of 3+ epochs before the cap, so 3, 6 and off agree
    patience: int = Field(6, ge=0, description="early stopping: epochs without val AUROC gain (0: never)")
    # kept on development seeds 100-102: off lost 0.03-0.12 development-test AUROC on each
    acquisition_augment: bool = Field(True, description="simulated bias field, resolution loss, ghosting")
    cpu_bf16: bool = Field(True, description="bf16 autocast when training on CPU (1.7x images/s)")
    pretrained: str | None = Field(None, description=f"path to torchvision's {IMAGENET_WEIGHTS_FILE} "
                                                     "(ImageNet init; never downloaded)")


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one epoch's data order and augmentations."""
    state = np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def load_pretrained(model: torch.nn.Module, path: str | Path) -> None:
    """Load torchvision's ImageNet ResNet18 weights (RGB stem summed to one channel, head left new)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained ResNet18 weights not found at {str(path)!r}. The harness never downloads "
            f"them: fetch torchvision's {IMAGENET_WEIGHTS_FILE} ({IMAGENET_WEIGHTS_URL}) on a machine "
            f"with network access, or copy it from ~/.cache/torch/hub/checkpoints/, and pass its path "
            f"with --set resnet18.pretrained=PATH."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which file and why
        raise ValueError(f"cannot read pretrained weights {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise ValueError(f"{str(path)!r} is not a torchvision ResNet18 state_dict (no 'conv1.weight')")
    adapted = adapt_imagenet_state_dict(state, in_channels=1)
    result = model.load_state_dict(adapted, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{str(path)!r} does not fit ResNet18: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, int]:
    """The trained classifier from ``best.pt`` in eval mode, and the image size it expects."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = build_resnet18_classifier()
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), int(payload["image_size"])


def preprocess(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, 1, H, W) in [0, 1] -> the classifier's input: resized (antialiased) and z-scored per image."""
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear",
                               align_corners=False, antialias=True).clamp(0, 1)
    return standardize(images.float())


def _check_split(name: str, images: ImageSet) -> None:
    if len(images) == 0:
        raise ValueError(f"resnet18: the {name} split is empty")
    labels = set(images.labels.tolist())
    if not labels <= {0, 1}:
        raise ValueError(f"resnet18: {name} labels must be 0 (no_tumor) or 1 (tumor), got {sorted(labels)}")
    if name == "train" and labels != {0, 1}:
        raise ValueError(f"resnet18: the train split needs both tumor and no_tumor images, got only {labels}")


class _EarlyStopping:
    """Best (val AUROC, -val loss) so far and the number of epochs without improvement."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_key: tuple[float, float] | None = None
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped = False

    def update(self, epoch: int, auroc: float, loss: float) -> bool:
        key = (-1.0 if np.isnan(auroc) else auroc, -loss)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch, self.bad_epochs = key, epoch, 0
            return True
        self.bad_epochs += 1
        self.stopped = self.patience > 0 and self.bad_epochs >= self.patience
        return False

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        vars(self).update(state)


class ResNet18Features(torch.nn.Module):
    """The trained classifier as the MRI-domain feature extractor: (N, 1, H, W) in [0, 1] at any
    size -> (512-d penultimate features, 2 logits), through the same resize and z-scoring the
    baseline trains on."""

    def __init__(self, model: torch.nn.Module, image_size: int) -> None:
        super().__init__()
        self.model, self.image_size = model, image_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        x = preprocess(images, self.image_size)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        features = torch.flatten(m.avgpool(x), 1)
        return features, m.fc(features)


@register_method("resnet18")
class ResNet18Baseline(Method):
    capabilities = frozenset({"scores", "features", "distributed"})
    supervision = "supervised"
    description = ("Supervised ResNet18 (1-channel stem), cross-entropy, early stopping on val AUROC; "
                   "score = P(tumor).")
    Settings = ResNetSettings
    weights = (KnownWeights("resnet18-imagenet", IMAGENET_WEIGHTS_FILE, IMAGENET_WEIGHTS_URL,
                            "resnet18 baseline initialised from ImageNet (torchvision weights)",
                            "--set resnet18.pretrained=PATH"),)
    profile_defaults = {
        "smoke": {"image_size": 64, "epochs": 2, "batch_size": 16, "patience": 2},
        "paper": {"image_size": 224, "epochs": 30, "batch_size": 32, "lr": 1e-4, "patience": 6},
    }

    def __init__(self, settings: ResNetSettings | None = None) -> None:
        super().__init__(settings)
        self.model: torch.nn.Module | None = None
        self.image_size: int | None = None
        self.device = torch.device("cpu")
        self.checkpoint_path: Path | None = None
        self.selected: dict[str, Any] = {}
        self._cpu_bf16 = False
        self._curves: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": [], "val_auroc": []}

    # ------------------------------------------------------------------ training
    def fit(self, train: ImageSet, val: ImageSet, ctx: FitContext) -> None:
        s: ResNetSettings = self.settings
        _check_split("train", train)
        _check_split("val", val)
        log = ctx.logger
        self.device, self.image_size = ctx.device, s.image_size
        self._cpu_bf16 = s.cpu_bf16
        train_x, train_y = train.resized(s.image_size).images.float(), train.labels.long()
        val_x, val_y = val.resized(s.image_size).images.float(), val.labels.long()
        if len(set(val_y.tolist())) < 2:
            log.warning("resnet18: validation split has one class only; AUROC is undefined, "
                        "selecting the epoch by validation loss")

        seed_everything(ctx.seed)
        model = build_resnet18_classifier()
        if s.pretrained:
            load_pretrained(model, s.pretrained)
            log.info("resnet18: initialised from ImageNet weights %s", s.pretrained)
        model.to(self.device)
        if ctx.distributed:
            model = distributed.wrap(model, self.device)
            log.info("resnet18: DDP on %d processes, global batch %d", distributed.world_size(), s.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, s.epochs))
        use_fp16 = (ctx.amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported())
        scaler = torch.amp.GradScaler("cuda", enabled=use_fp16)
        stopper = _EarlyStopping(s.patience)
        curves = {k: [] for k in self._curves}
        distributed.main_only(ctx.output_dir.mkdir, parents=True, exist_ok=True)
        best_path = ctx.output_dir / "best.pt"
        ckpt = Checkpointer(ctx.output_dir / "checkpoints", keep_last=1)

        start = 0
        if ctx.resume:
            loaded = ckpt.load_last(map_location=self.device)
            if loaded is None:
                log.info("resnet18: no checkpoint to resume from; training from scratch")
            else:
                start, state = loaded
                distributed.unwrap(model).load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
                stopper.load_state_dict(state["early_stopping"])
                curves = {k: list(v) for k, v in state["curves"].items()}
                log.info("resnet18: resumed after epoch %d of %d", start, s.epochs)

        for epoch in range(start + 1, s.epochs + 1):
            if stopper.stopped:
                break
            t0 = time.perf_counter()
            train_loss = self._train_epoch(model, optimizer, scaler, train_x, train_y, s, ctx, epoch)
            val_loss, val_auroc = self._evaluate(model, val_x, val_y, ctx)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            for key, value in zip(curves, (epoch, train_loss, val_loss, val_auroc)):
                curves[key].append(value)
            weights = distributed.unwrap(model).state_dict()
            if stopper.update(epoch, val_auroc, val_loss):
                distributed.main_only(atomic_torch_save, {
                    "model": {k: v.detach().cpu() for k, v in weights.items()}, "image_size": s.image_size,
                    "epoch": epoch, "val_auroc": val_auroc, "normalization": NORMALIZATION}, best_path)
            log.info("resnet18 epoch %d/%d: train_loss=%.4f val_loss=%.4f val_auroc=%.4f lr=%.2e "
                     "best_epoch=%d (%.1fs)", epoch, s.epochs, train_loss, val_loss, val_auroc, lr,
                     stopper.best_epoch, time.perf_counter() - t0)
            distributed.main_only(ckpt.save, epoch, {
                "model": weights, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "early_stopping": stopper.state_dict(), "curves": curves})
            if stopper.stopped:
                log.info("resnet18: early stopping after epoch %d (no val AUROC gain for %d epochs)",
                         epoch, s.patience)

        if not distributed.is_main():
            return  # every rank holds the same weights; rank 0 keeps the best ones and scores
        if not best_path.is_file():
            raise FileNotFoundError(f"resnet18: best checkpoint {best_path} is missing; cannot resume "
                                    f"without it (delete {ckpt.folder} to retrain)")
        best = torch.load(best_path, map_location="cpu", weights_only=True)
        model = build_resnet18_classifier().to(self.device)  # plain BatchNorm, no DDP wrapper
        model.load_state_dict(best["model"])
        self.model = model.eval()
        self.checkpoint_path = best_path
        self._curves = curves
        self.selected = {"best_epoch": int(best["epoch"]), "val_auroc": float(best["val_auroc"]),
                         "epochs_run": len(curves["epoch"]), "pretrained": bool(s.pretrained),
                         "image_size": s.image_size}
        log.info("resnet18: kept epoch %d (val AUROC %.4f) -> %s", best["epoch"], best["val_auroc"], best_path)

    def _autocast(self, amp: bool) -> contextlib.AbstractContextManager:
        if self.device.type == "cpu" and self._cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return autocast(self.device, amp)

    def _train_epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, x: torch.Tensor, y: torch.Tensor,
                     s: ResNetSettings, ctx: FitContext, epoch: int) -> float:
        g = torch.Generator().manual_seed(epoch_seed(ctx.seed, epoch))
        order = torch.randperm(len(x), generator=g)
        if len(order) % s.batch_size == 1 and len(order) > 1:
            order = order[:-1]  # BatchNorm cannot train on a batch of one
        batches = list(torch.split(order, s.batch_size))
        world = distributed.world_size() if ctx.distributed else 1
        if world > 1 and len(batches[-1]) < 2 * world:
            batches = batches[:-1]  # every rank needs a shard of two or more for BatchNorm
        augment = AugmentSettings() if s.acquisition_augment else _NO_ACQUISITION
        model.train()
        total, seen = 0.0, 0
        bar = progress(batches, total=len(batches), desc=f"resnet18 epoch {epoch}/{s.epochs}",
                       enabled=ctx.progress, unit="batch")
        for idx in bar:
            # the whole global batch is augmented on every rank, so each image gets the same
            # draws from ``g`` as in a one-process run; a rank then keeps its shard
            xb = augment_batch(x[idx].to(self.device), g, augment)
            yb = y[idx].to(self.device)
            if ctx.distributed:
                mine = distributed.shard(torch.arange(len(idx)))
                xb, yb = xb[mine], yb[mine]
            with self._autocast(ctx.amp):
                logits = model(standardize(xb))
            if ctx.distributed:
                # DDP averages gradients over the ranks: sum / global count x world makes that
                # average the gradient of the global batch's mean loss, even for unequal shards
                loss_sum = F.cross_entropy(logits.float(), yb, reduction="sum")
                loss = loss_sum * (world / len(idx))
                total += float(loss_sum.detach())
            else:
                loss = F.cross_entropy(logits.float(), yb)
                total += float(loss.detach()) * len(idx)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(yb)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        if ctx.distributed:
            total, seen = distributed.all_sum(total), int(distributed.all_sum(seen))
        return total / max(seen, 1)

    @torch.no_grad()
    def _logits(self, model: torch.nn.Module, x: torch.Tensor, amp: bool) -> torch.Tensor:
        """Logits averaged over the slice and its left-right mirror: training flips left-right,
        so both views are in-distribution and averaging them removes orientation noise."""
        model.eval()
        out = []
        for start in range(0, len(x), _EVAL_BATCH):
            xb = standardize(x[start:start + _EVAL_BATCH].to(self.device))
            with self._autocast(amp):
                both = model(torch.cat([xb, xb.flip(-1)])).float()
            out.append(((both[: len(xb)] + both[len(xb):]) / 2).cpu())
        return torch.cat(out)

    def _evaluate(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  ctx: FitContext) -> tuple[float, float]:
        """Validation loss and AUROC; under DDP each rank scores a shard and all get every logit,
        so all ranks take the same early-stopping decision."""
        if ctx.distributed:
            mine = distributed.shard(torch.arange(len(x)))
            logits = distributed.gather(self._logits(distributed.unwrap(model), x[mine], ctx.amp))
        else:
            logits = self._logits(model, x, ctx.amp)
        loss = float(F.cross_entropy(logits, y))
        if len(set(y.tolist())) < 2:
            return loss, float("nan")
        return loss, float(roc_auc_score(y.numpy(), torch.softmax(logits, 1)[:, 1].numpy()))

    # ------------------------------------------------------------------ inference
    def score(self, images: ImageSet) -> ScoreOutput:
        if self.model is None or self.image_size is None:
            raise RuntimeError("resnet18: call fit() before score()")
        x = images.resized(self.image_size).images.float()
        if len(x) == 0:
            return ScoreOutput(scores=np.zeros(0, dtype=np.float64))
        logits = self._logits(self.model, x, amp=False)
        return ScoreOutput(scores=torch.softmax(logits, 1)[:, 1].double().numpy())

    def training_curves(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self._curves.items()}

    def checkpoint(self) -> Path | None:
        return self.checkpoint_path

    def selection(self) -> dict[str, Any]:
        return dict(self.selected)

    @classmethod
    def feature_extractor(cls, checkpoint: Path, device: torch.device) -> torch.nn.Module:
        model, size = load_classifier(checkpoint, device)
        return ResNet18Features(model, size).to(device).eval()

