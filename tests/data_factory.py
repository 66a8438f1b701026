"""Tiny, seeded brain-like images and Kaggle-style folder layouts for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def brain_slice(seed: int, height: int = 64, width: int = 64, tumor: bool = False) -> np.ndarray:
    """A uint8 'slice': a textured ellipse on black, plus a bright blob when ``tumor``.
    Different seeds give images far apart in perceptual hash."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    cy, cx = height / 2 + rng.uniform(-4, 4), width / 2 + rng.uniform(-4, 4)
    ry, rx = height * rng.uniform(0.3, 0.45), width * rng.uniform(0.3, 0.45)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    coarse = rng.uniform(0, 1, (6, 6))
    texture = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
                         dtype=np.float32)
    img = inside * (60 + 0.6 * texture)
    if tumor:
        ty, tx = cy + rng.uniform(-ry / 2, ry / 2), cx + rng.uniform(-rx / 2, rx / 2)
        r = min(height, width) * rng.uniform(0.08, 0.15)
        img = img + 90 * (((yy - ty) ** 2 + (xx - tx) ** 2) < r * r)
    return np.clip(img, 0, 255).astype(np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if mode is not None and im.mode != mode:
        im = im.convert(mode)
    im.save(path, format=fmt)
    return path


def make_yes_no(root: Path, n: int = 8, seed: int = 0, yes: str = "yes", no: str = "no") -> Path:
    """Chakrabarty/Br35H layout: ``yes/`` and ``no/`` of PNG slices."""
    for i in range(n):
        save(root / yes / f"Y{i}.png", brain_slice(seed * 1000 + i, tumor=True))
        save(root / no / f"N{i}.png", brain_slice(seed * 1000 + 500 + i))
    return root


def make_training_testing(root: Path, n_train: int = 4, n_test: int = 2, seed: int = 0) -> Path:
    """Nickparvar layout: ``Training/`` and ``Testing/``, each with four class folders."""
    k = seed * 1000
    for part, n in (("Training", n_train), ("Testing", n_test)):
        for cls in ("glioma", "meningioma", "pituitary", "notumor"):
            for i in range(n):
                k += 1
                save(root / part / cls / f"{cls[:2]}_{i}.jpg", brain_slice(k, tumor=cls != "notumor"))
    return root
