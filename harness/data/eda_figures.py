"""The EDA's figures: small, deterministic PNGs drawn from the EDA dict and a decoded sample.

Figures are drawn on ``matplotlib.figure.Figure`` objects (the Agg canvas) rather than through
pyplot, so nothing global changes backend or leaks figures between calls, and each file is
written atomically.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from harness.atomic import atomic_write_bytes
from harness.data.eda_sample import ImageSample
from harness.data.file_audit import feature_value
from harness.data.types import Record

DPI = 100
TILE = 128  # letterboxed tile size of the sample grids
GRID_COLUMNS = 4
SPLIT_ORDER = ("train", "val", "test")


def write_figures(report: dict[str, Any], records: Sequence[Record], sample: ImageSample,
                  out_dir: Path) -> list[str]:
    """Draw every EDA figure into ``out_dir``; return the file names in a stable order."""
    labels: list[str] = report["labels"]
    colors = {lab: f"C{i}" for i, lab in enumerate(labels)}
    figures = {
        "class_balance.png": _class_balance(report["counts"], colors),
        "resolution.png": _resolution(records, labels, colors),
        "aspect.png": _metadata_hist(records, labels, colors, "aspect", "width / height",
                                     "Aspect ratio per label"),
        "brightness.png": _metadata_hist(records, labels, colors, "mean_brightness",
                                         "per-image mean brightness (0-1)", "Brightness per label"),
        "intensity_hist.png": _intensity(report["intensity"], colors),
    }
    for label in labels:
        images = sample.grid.get(label, [])
        if images:
            n_total = report["counts"]["per_label"][label]
            figures[f"samples_{_safe(label)}.png"] = _sample_grid(label, images, n_total)
    figures["shortcut_audit.png"] = _shortcut_audit(report["shortcut_audit"])
    for name, fig in figures.items():
        _save(fig, Path(out_dir) / name)
    return list(figures)


def _class_balance(counts: dict[str, Any], colors: dict[str, str]) -> Figure:
    per_split = counts.get("per_split")
    fig = Figure(figsize=(9 if per_split else 5, 3.6), dpi=DPI)
    axes = fig.subplots(1, 2 if per_split else 1, squeeze=False)[0]
    per_label = counts["per_label"]
    ax = axes[0]
    ax.bar(list(per_label), list(per_label.values()), color=[colors[k] for k in per_label])
    for i, n in enumerate(per_label.values()):
        ax.annotate(str(n), (i, n), ha="center", va="bottom", fontsize=8)
    _finish(ax, "Images per label", "label", "images", empty=not per_label)
    if per_split:
        ax = axes[1]
        splits = sorted(per_split, key=_split_rank)
        width = 0.8 / max(1, len(colors))
        for j, label in enumerate(colors):
            xs = np.arange(len(splits)) + (j - (len(colors) - 1) / 2) * width
            ax.bar(xs, [per_split[s].get(label, 0) for s in splits], width, label=label, color=colors[label])
        ax.set_xticks(np.arange(len(splits)), splits)
        ax.legend(fontsize=8)
        _finish(ax, "Images per split and label", "split", "images")
    fig.tight_layout()
    return fig


def _resolution(records: Sequence[Record], labels: list[str], colors: dict[str, str]) -> Figure:
    fig = Figure(figsize=(5, 4), dpi=DPI)
    ax = fig.subplots()
    any_point = False
    for label in labels:
        dims = ((feature_value(r, "width"), feature_value(r, "height")) for r in records if r.label == label)
        sizes = Counter((w, h) for w, h in dims if w is not None and h is not None)
        if not sizes:
            continue
        any_point = True
        keys = sorted(sizes)
        ws, hs, ns = [k[0] for k in keys], [k[1] for k in keys], np.array([sizes[k] for k in keys])
        ax.scatter(ws, hs, s=12 + 8 * np.sqrt(ns), alpha=0.5, color=colors[label],
                   label=f"{label} ({len(sizes)} distinct)", edgecolors="none")
    if any_point:
        ax.legend(fontsize=8)
    _finish(ax, "Resolution per label (marker area ~ count)", "width (px)", "height (px)",
            empty=not any_point)
    fig.tight_layout()
    return fig


def _metadata_hist(records: Sequence[Record], labels: list[str], colors: dict[str, str], feature: str,
                   xlabel: str, title: str) -> Figure:
    fig = Figure(figsize=(5, 3.6), dpi=DPI)
    ax = fig.subplots()
    values = {lab: [v for r in records if r.label == lab
                    for v in [feature_value(r, feature)] if v is not None] for lab in labels}
    pooled = [v for vs in values.values() for v in vs]
    if pooled:
        lo, hi = min(pooled), max(pooled)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 41)
        for label, vs in values.items():
            if vs:
                ax.hist(vs, bins=bins, alpha=0.5, color=colors[label], label=f"{label} (n={len(vs)})")
        ax.legend(fontsize=8)
    _finish(ax, title, xlabel, "images", empty=not pooled)
    fig.tight_layout()
    return fig


def _intensity(intensity: dict[str, Any], colors: dict[str, str]) -> Figure:
    fig = Figure(figsize=(5, 3.6), dpi=DPI)
    ax = fig.subplots()
    edges = np.asarray(intensity["bin_edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    drawn = False
    for label, row in intensity["per_label"].items():
        if row["hist"] is None:
            continue
        hist = np.maximum(np.asarray(row["hist"]), 1e-6)  # log scale: empty bins drawn at the floor
        ax.plot(centers, hist, drawstyle="steps-mid", color=colors[label],
                label=f"{label} ({row['n_images']} images)")
        drawn = True
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    _finish(ax, "Pixel intensity (seeded sample)", "intensity", "mean fraction of pixels", empty=not drawn)
    fig.tight_layout()
    return fig


def _sample_grid(label: str, images: list[np.ndarray], n_total: int) -> Figure:
    tiles = torch.stack([_letterbox(img, TILE) for img in images])
    grid = make_grid(tiles, nrow=GRID_COLUMNS, padding=2, pad_value=1.0)[0].numpy()
    height, width = grid.shape
    title_px = 30
    fig = Figure(figsize=(width / DPI, (height + title_px) / DPI), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + title_px)))  # one image pixel per PNG pixel
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(f"{label}: {len(images)} of {n_total} images (seeded sample)", fontsize=9,
                 y=1 - 4 / (height + title_px), va="top")
    return fig


def _letterbox(image: np.ndarray, size: int) -> torch.Tensor:
    """Fit the image inside a size x size tile keeping its aspect ratio; pad with black."""
    h, w = image.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None, None], size=(nh, nw),
                            mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
    tile = torch.zeros(1, size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    tile[:, top:top + nh, left:left + nw] = resized
    return tile


def _shortcut_audit(audit: dict[str, Any]) -> Figure:
    rows = [f for f in audit["features"] if f["strength"] is not None]
    fig = Figure(figsize=(6, 1.2 + 0.3 * max(1, len(rows))), dpi=DPI)
    ax = fig.subplots()
    if rows:
        ys = np.arange(len(rows))[::-1]
        ax.barh(ys, [f["strength"] for f in rows], color=["C3" if f["flagged"] else "C0" for f in rows])
        for y, f in zip(ys, rows):
            ax.annotate(f"AUROC {f['auroc']:.2f}", (0.505, y), va="center", fontsize=7)
        ax.set_yticks(ys, [f["feature"] for f in rows], fontsize=8)
        ax.axvline(audit["threshold"], color="k", linestyle="--", linewidth=1,
                   label=f"flag threshold {audit['threshold']:.2f}")
        ax.set_xlim(0.5, 1.0)
        ax.legend(fontsize=8, loc="lower right")
    n_flagged = len(audit["flagged"])
    verdict = "clean" if audit["verdict"] == "clean" else f"{n_flagged} flagged" if rows else audit["verdict"]
    _finish(ax, f"Shortcut audit (positive: {audit['positive_label']}): {verdict}",
            "strength = max(AUROC, 1 - AUROC)", "", empty=not rows)
    fig.tight_layout()
    return fig


def _split_rank(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, empty: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.4")


def _save(fig: Figure, path: Path) -> None:
    """Render to memory, then write atomically (no half PNG on a kill)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
