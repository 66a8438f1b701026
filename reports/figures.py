"""Report figures: the forest plot, ROC and PR curves, training curves, example image grids.

Only numpy and matplotlib: the site builds without torch or scikit-learn. Nothing is computed
here: ROC and PR curves are drawn from the points the run stored (``curves/detection.json``,
:mod:`harness.metrics.curves`). Figures are drawn with matplotlib's object API on an Agg canvas
(no pyplot global state, no display needed) and saved atomically without timestamps, so a
re-render gives the same bytes.
Text from users (image ids) is drawn with ``parse_math=False`` so a ``$`` in a file name is
shown, not parsed as mathtext. The forest plot and the ROC and PR curves, a paper's figures, are
also written as vector PDF and SVG beside their PNG (same name); the rest stay PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.atomic import atomic_write_bytes

__all__ = ["Interval", "detection_curves", "training_curves", "example_grid", "forest_plot", "GRID_COLUMNS"]

DPI = 110
# npz key suffix -> column title, in the order the grid shows them
GRID_COLUMNS = (("real", "real"), ("translated", "translated"), ("map", "residual map"),
                ("mask", "ground-truth mask"))


# format -> savefig metadata that would differ between renders (dates, versions): left out
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
             "svg": {"Date": None, "Creator": None}}


def _save(fig: Figure, path: Path, vector: bool = False) -> Path:
    """Write ``path`` (PNG) and, with ``vector``, the PDF and SVG beside it; returns the PNG."""
    FigureCanvasAgg(fig)
    for fmt in ("png", "pdf", "svg") if vector else ("png",):
        buffer = io.BytesIO()
        with rc_context({"svg.hashsalt": "harness", "pdf.fonttype": 42}):  # stable SVG ids; TrueType, not Type 3
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt], bbox_inches="tight")
        atomic_write_bytes(path.with_suffix(f".{fmt}"), buffer.getvalue())
    return path


def _points(entry: Mapping[str, Any], key: str, x: str, y: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The (x, y) arrays of one stored curve, or None when they are missing or malformed."""
    curve = entry.get(key)
    if not isinstance(curve, Mapping):
        return None
    try:
        xs, ys = np.asarray(curve[x], dtype=float), np.asarray(curve[y], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    return (xs, ys) if xs.ndim == 1 and xs.shape == ys.shape and xs.size >= 2 else None


def _label(method: str, metric: str, value: Any) -> str:
    return f"{method} ({metric} {value:.3f})" if isinstance(value, (int, float)) and math.isfinite(value) else method


def detection_curves(methods: Mapping[str, Any], roc_path: Path, pr_path: Path) -> list[str]:
    """ROC and PR curves of every method on one axis each, from the run's stored points (the
    ``methods`` of curves/detection.json); returns notes on methods left out or partly left out.

    The legends show the stored AUROC and AP (the step-wise AP, as metrics.json holds it); the PR
    plot shows AP's chance level, the tumor share of the test images.
    """
    notes: list[str] = []
    usable: dict[str, tuple[Mapping[str, Any], tuple, tuple]] = {}
    for method, entry in methods.items():
        entry = entry if isinstance(entry, Mapping) else {}
        roc = _points(entry, "roc", "fpr", "tpr")
        pr = _points(entry, "pr", "recall", "precision")
        if entry.get("note"):
            notes.append(f"{method}: {entry['note']}")
        if roc is None or pr is None:
            if not entry.get("note"):
                notes.append(f"{method}: no stored curve points")
            continue
        usable[method] = (entry, roc, pr)
    if not usable:
        return notes
    roc_fig = Figure(figsize=(5.2, 4.6))
    pr_fig = Figure(figsize=(5.2, 4.6))
    ax_roc, ax_pr = roc_fig.add_subplot(), pr_fig.add_subplot()
    ax_roc.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    first = next(iter(usable.values()))[0]
    n, positives = first.get("n"), first.get("positives")
    if isinstance(n, int) and isinstance(positives, int) and n > 0:
        prevalence = positives / n
        ax_pr.axhline(prevalence, color="0.6", linestyle=":", label=f"chance (AP = {prevalence:.3f})")
    for method, (entry, (fpr, tpr), (recall, precision)) in usable.items():
        ax_roc.plot(fpr, tpr, label=_label(method, "AUROC", entry.get("auroc")))
        ax_pr.step(recall, precision, where="post", label=_label(method, "AP", entry.get("ap")))
    for ax, xlabel, ylabel, title in ((ax_roc, "false positive rate", "true positive rate", "ROC (test)"),
                                      (ax_pr, "recall", "precision", "Precision-recall (test)")):
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        for text in ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8).get_texts():
            text.set_parse_math(False)
    _save(roc_fig, roc_path, vector=True)
    _save(pr_fig, pr_path, vector=True)
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


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: a point estimate and its 95% CI (either bound may be missing)."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None


def _forest_panel(ax, rows: Sequence[Interval], reference: float, reference_label: str, xlabel: str) -> None:
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows):
        if row.low is not None and row.high is not None:
            ax.plot([row.low, row.high], [yi, yi], color="C0", linewidth=2, solid_capstyle="butt")
        ax.plot([row.value], [yi], "o", color="C0", markersize=6)
    ax.axvline(reference, color="0.5", linestyle=":", linewidth=1)
    ax.text(reference, 1.01, reference_label, transform=ax.get_xaxis_transform(), fontsize=7, color="0.4",
            ha="center", va="bottom")
    ax.set_yticks(y, [r.label for r in rows], fontsize=8)
    for label in ax.get_yticklabels():
        label.set_parse_math(False)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    ends = [v for r in rows for v in (r.low, r.high, r.value) if v is not None] + [reference]
    pad = max(0.02, 0.08 * (max(ends) - min(ends)))
    ax.set_xlim(min(ends) - pad, max(ends) + pad)


def forest_plot(methods: Sequence[Interval], deltas: Sequence[Interval], path: Path) -> Path | None:
    """Every method's test AUROC with its 95% CI against chance (0.5) and, when the run paired
    its methods, the paired AUROC differences against zero: the comparison at a glance."""
    if not methods and not deltas:
        return None
    panels = [p for p in ((methods, 0.5, "chance", "test AUROC, 95% CI"),
                          (deltas, 0.0, "no difference", "paired AUROC difference, 95% CI")) if p[0]]
    height = 0.9 + 0.32 * max(len(p[0]) for p in panels)
    fig = Figure(figsize=(4.4 * len(panels), height))
    for i, (rows, reference, ref_label, xlabel) in enumerate(panels):
        _forest_panel(fig.add_subplot(1, len(panels), i + 1), rows, reference, ref_label, xlabel)
    fig.tight_layout()
    return _save(fig, path, vector=True)


def _column_image(kind: str, image: np.ndarray, top: float) -> tuple[np.ndarray, dict]:
    """The array imshow draws for one tile, and its colour settings."""
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    if kind == "map":
        return image / top if top > 0 else image, {"cmap": colormaps["magma"], "vmin": 0.0, "vmax": 1.0}
    return np.clip(image, 0.0, 1.0), {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}


def example_grid(npz: Mapping[str, np.ndarray], domain: str, path: Path, title: str,
                 rows: Sequence[int] | None = None) -> Path | None:
    """Grid of one source domain: columns real | translated | residual map | mask (those present),
    one row per case in ``rows`` (default: every saved case), labelled with kind, id and score."""
    real = npz.get(f"{domain}_real")
    if real is None or np.asarray(real).ndim != 3 or len(real) == 0:
        return None
    k = len(real)
    picked = [i for i in (range(k) if rows is None else rows) if 0 <= i < k]
    if not picked:
        return None
    columns = [(kind, heading, np.asarray(npz[f"{domain}_{kind}"])) for kind, heading in GRID_COLUMNS
               if f"{domain}_{kind}" in npz and np.asarray(npz[f"{domain}_{kind}"]).shape[:1] == (k,)]
    maps = [np.nan_to_num(np.asarray(a[picked], dtype=np.float32)) for kind, _, a in columns if kind == "map"]
    top = float(max(m.max() for m in maps)) if maps else 0.0
    ids = [str(v) for v in npz.get(f"{domain}_ids", [])]
    scores = [float(v) for v in npz.get(f"{domain}_scores", [])]
    kinds = [str(v) for v in npz.get(f"{domain}_kind", [])]
    fig = Figure(figsize=(1.5 * len(columns) + 1.5, 1.5 * len(picked) + 0.5))
    axes = fig.subplots(len(picked), len(columns), squeeze=False)
    for r, case in enumerate(picked):
        for c, (kind, heading, array) in enumerate(columns):
            ax = axes[r][c]
            image, style = _column_image(kind, array[case], top)
            ax.imshow(image, interpolation="nearest", **style)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heading, fontsize=8)
        parts = [kinds[case] if case < len(kinds) else "", ids[case] if case < len(ids) else "",
                 f"score {scores[case]:.3g}" if case < len(scores) else ""]
        axes[r][0].set_ylabel("\n".join(p for p in parts if p), fontsize=7, rotation=0, ha="right", va="center",
                              parse_math=False)
    fig.suptitle(title, fontsize=10, parse_math=False)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return _save(fig, path)
