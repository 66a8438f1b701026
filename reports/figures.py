"""Report figures: ROC and PR curves of all methods, training curves, example image grids.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no
display needed) and saved without timestamps, so a re-render gives the same bytes.
Text from users (image ids) is drawn with ``parse_math=False`` so a ``$`` in a file name is
shown, not parsed as mathtext.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from torchvision.utils import make_grid

__all__ = ["detection_curves", "training_curves", "example_grid", "GRID_COLUMNS"]

DPI = 110
# npz key suffix -> column title, in the order the grid shows them
GRID_COLUMNS = (("real", "real"), ("translated", "translated"), ("map", "residual map"),
                ("mask", "ground-truth mask"))


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    return path


def detection_curves(per_method: Mapping[str, tuple[np.ndarray, np.ndarray]], roc_path: Path,
                     pr_path: Path) -> list[str]:
    """ROC and PR curves of every method on one axis each; returns notes on skipped methods.

    ``per_method`` maps a method to (labels 0/1, scores) of the test split. AP is sklearn's
    ``average_precision_score`` and the PR plot shows its chance level (the tumor share).
    """
    notes: list[str] = []
    usable: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method, (labels, scores) in per_method.items():
        finite = np.isfinite(scores)
        labels, scores = labels[finite], scores[finite]
        if len(np.unique(labels)) < 2:
            notes.append(f"{method}: test scores hold one class only; no curve")
            continue
        if (~finite).any():
            notes.append(f"{method}: {int((~finite).sum())} non-finite scores left out of the curves")
        usable[method] = (labels, scores)
    if not usable:
        return notes
    roc = Figure(figsize=(5.2, 4.6))
    pr = Figure(figsize=(5.2, 4.6))
    ax_roc, ax_pr = roc.add_subplot(), pr.add_subplot()
    ax_roc.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    prevalence = float(np.mean(next(iter(usable.values()))[0]))
    ax_pr.axhline(prevalence, color="0.6", linestyle=":", label=f"chance (AP = {prevalence:.3f})")
    for method, (labels, scores) in usable.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax_roc.plot(fpr, tpr, label=f"{method} (AUROC {roc_auc_score(labels, scores):.3f})")
        precision, recall, _ = precision_recall_curve(labels, scores)
        ax_pr.step(recall, precision, where="post",
                   label=f"{method} (AP {average_precision_score(labels, scores):.3f})")
    for ax, xlabel, ylabel, title in ((ax_roc, "false positive rate", "true positive rate", "ROC (test)"),
                                      (ax_pr, "recall", "precision", "Precision-recall (test)")):
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        for text in ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8).get_texts():
            text.set_parse_math(False)
    _save(roc, roc_path)
    _save(pr, pr_path)
    return notes


def _series(values: object, n: int) -> np.ndarray | None:
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != n:
        return None
    out = np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
                    for v in values], dtype=float)
    return out if np.isfinite(out).any() else None


def training_curves(curves: Mapping[str, object], path: Path, title: str) -> Path | None:
    """One small panel per series (losses and validation scores differ in scale) against epoch."""
    lengths = [len(v) for k, v in curves.items() if k != "epoch" and isinstance(v, Sequence)]
    if not lengths:
        return None
    n = max(lengths)
    epochs = _series(curves.get("epoch"), n)
    x = epochs if epochs is not None else np.arange(1, n + 1, dtype=float)
    series = {k: s for k, v in sorted(curves.items()) if k != "epoch" and (s := _series(v, n)) is not None}
    if not series:
        return None
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(3.4 * cols, 2.5 * rows))
    for i, (name, values) in enumerate(series.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(x, values, marker="o" if n <= 30 else None, markersize=3)
        ax.set_title(name, fontsize=9, parse_math=False)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, parse_math=False)
    fig.tight_layout()
    return _save(fig, path)


def _tiles(arrays: list[tuple[str, np.ndarray]], size: tuple[int, int]) -> torch.Tensor:
    """(rows * cols, 3, H, W) in [0, 1]: gray images, a colour-mapped map, a white mask."""
    from matplotlib import colormaps

    columns = []
    for kind, arr in arrays:
        t = torch.as_tensor(np.asarray(arr, dtype=np.float32)).unsqueeze(1)  # (k, 1, h, w)
        if tuple(t.shape[-2:]) != size:
            t = torch.nn.functional.interpolate(t, size=size, mode="nearest" if kind == "mask" else "bilinear")
        t = torch.nan_to_num(t)
        if kind == "map":
            top = float(t.max())
            t = t / top if top > 0 else t
            rgb = colormaps["magma"](t.squeeze(1).clamp(0, 1).numpy())[..., :3]
            t = torch.as_tensor(rgb, dtype=torch.float32).permute(0, 3, 1, 2)
        else:
            t = t.clamp(0, 1).repeat(1, 3, 1, 1)
        columns.append(t)
    return torch.stack(columns, dim=1).flatten(0, 1)  # row-major: case by case


def example_grid(npz: Mapping[str, np.ndarray], domain: str, path: Path, title: str) -> Path | None:
    """Grid of one source domain: columns real | translated | residual map | mask (those present),
    rows the best- and worst-scored cases, each labelled with kind, id and score."""
    real = npz.get(f"{domain}_real")
    if real is None or np.asarray(real).ndim != 3 or len(real) == 0:
        return None
    k = len(real)
    arrays = [(kind, npz[f"{domain}_{kind}"]) for kind, _ in GRID_COLUMNS
              if f"{domain}_{kind}" in npz and np.asarray(npz[f"{domain}_{kind}"]).shape[:1] == (k,)]
    titles = [t for kind, t in GRID_COLUMNS if any(kind == a for a, _ in arrays)]
    h, w = np.asarray(real).shape[1:]
    pad = max(2, h // 32)
    grid = make_grid(_tiles(arrays, (h, w)), nrow=len(arrays), padding=pad, pad_value=1.0)
    ids = [str(v) for v in npz.get(f"{domain}_ids", [])]
    scores = [float(v) for v in npz.get(f"{domain}_scores", [])]
    kinds = [str(v) for v in npz.get(f"{domain}_kind", [])]
    fig = Figure(figsize=(1.9 * len(arrays) + 1.6, 1.9 * k + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([pad + c * (w + pad) + w / 2 for c in range(len(arrays))], titles, fontsize=8)
    ax.xaxis.tick_top()
    labels = []
    for i in range(k):
        parts = [kinds[i] if i < len(kinds) else "", ids[i] if i < len(ids) else "",
                 f"score {scores[i]:.3g}" if i < len(scores) else ""]
        labels.append("\n".join(p for p in parts if p))
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(k)], labels, fontsize=7)
    for label in ax.get_yticklabels():
        label.set_parse_math(False)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10, parse_math=False)
    return _save(fig, path)
