"""Loading splits into ImageSets, brain masks, the dataset factory and profile resolution."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from data_factory import brain_slice, make_yes_no, save
from harness.config import SplitSettings, get_profile
from harness.data.brain import brain_mask, otsu_threshold
from harness.data.commands import resolve_profile
from harness.data.folders import FolderDataset
from harness.data.loading import letterbox, load_imageset, normalise
from harness.data.sources import data_specs, open_dataset
from harness.registry import DATASETS
from harness.data.splits import make_split

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = make_yes_no(tmp_path / "d", n=8)
    save(root / "yes" / "wide.png", brain_slice(50, 40, 80, tumor=True))
    save(root / "no" / "tall_rgb.jpg", np.stack([brain_slice(51, 90, 30)] * 3, -1))
    return root


def test_load_imageset_shapes_order_and_labels(folder: Path) -> None:
    source = FolderDataset(folder, progress=False)
    split = make_split(source, 0, SplitSettings())
    total = 0
    for which in ("train", "val", "test"):
        s = load_imageset(source, split, which, 32, progress=False)
        total += len(s)
        assert s.ids == split.ids(which)
        assert s.images.shape == (len(s), 1, 32, 32) and s.images.dtype == torch.float32
        assert 0 <= float(s.images.min()) and float(s.images.max()) <= 1
        assert s.brain.dtype == torch.bool and s.brain.shape == s.images.shape
        assert s.masks is None
        expected = [1 if i.startswith("yes/") else 0 for i in s.ids]
        assert s.labels.tolist() == expected and s.labels.dtype == torch.long
    assert total == 18
    again = load_imageset(source, split, "train", 32, progress=False)
    first = load_imageset(source, split, "train", 32, progress=False)
    assert torch.equal(again.images, first.images)
    with pytest.raises(ValueError, match="unknown split"):
        load_imageset(source, split, "holdout", 32, progress=False)


def test_letterbox_keeps_aspect_and_pads_with_zeros(folder: Path) -> None:
    source = FolderDataset(folder, progress=False)
    split = make_split(source, 0, SplitSettings())
    which = next(w for w in ("train", "val", "test") if "yes/wide.png" in split.ids(w))
    s = load_imageset(source, split, which, 40, progress=False)
    img = s.images[s.ids.index("yes/wide.png"), 0]
    assert float(img[:8].abs().max()) == 0 and float(img[-8:].abs().max()) == 0  # 40x80 -> rows 10..29
    assert float(img[12:28].max()) > 0.5
    box = letterbox(np.ones((2, 6), dtype=np.float32))
    assert box.shape == (6, 6) and box[2:4].all() and not box[:2].any() and not box[4:].any()


def test_normalisation_removes_brightness() -> None:
    img = brain_slice(3).astype(np.float32) / 255
    np.testing.assert_allclose(normalise(img), normalise(0.3 * img + 0.1), atol=1e-5)
    out = normalise(img)
    assert out.min() == 0 and out.max() == 1
    assert not normalise(np.full((8, 8), 0.7, dtype=np.float32)).any()


def test_masks_loaded_and_resized_nearest(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "m", n=6)
    for i in range(6):
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[16:32, 16:48] = 255
        save(root / "masks" / "yes" / f"Y{i}.png", mask)
    source = FolderDataset(root, progress=False)
    split = make_split(source, 0, SplitSettings())
    s = load_imageset(source, split, "train", 32, progress=False)
    assert s.masks is not None and s.masks.dtype == torch.bool
    for k, rid in enumerate(s.ids):
        area = int(s.masks[k].sum())
        assert area == (8 * 16 if rid.startswith("yes/") else 0)


def test_brain_mask_dark_bright_and_blank() -> None:
    base = brain_slice(4, 64, 64).astype(np.float32) / 255
    inside = base > 0
    batch = torch.from_numpy(np.stack([base, base * 0.05, np.clip(base * 3, 0, 1), np.zeros_like(base)]))[:, None]
    masks = brain_mask(batch)
    assert masks.shape == batch.shape and masks.dtype == torch.bool
    for k in range(3):
        m = masks[k, 0].numpy()
        assert (m == inside).mean() > 0.97
    assert masks[3].all()  # blank image: score the whole frame
    holey = base.copy()
    holey[28:36, 28:36] = 0  # a dark ventricle inside: filled
    assert brain_mask(torch.from_numpy(holey)[None, None])[0, 0, 30, 30]
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        brain_mask(torch.zeros(3, 8, 8))


def test_otsu_separates_two_levels() -> None:
    img = np.concatenate([np.full(100, 0.2), np.full(100, 0.8)]).astype(np.float32)
    assert 0.2 <= otsu_threshold(img) < 0.8


def test_open_dataset_and_listing(folder: Path) -> None:
    assert {"mni152-lesions", "folder"} <= set(DATASETS.names()) and not DATASETS.load_errors
    specs = data_specs(str(folder), None, get_profile("smoke"))
    assert specs[0].dataset == "folder" and specs[0].settings["image_size"] == 64
    source = open_dataset(specs, 0, progress=False)
    assert isinstance(source, FolderDataset) and len(source.records) == 18


def test_resolve_profile_applies_config_then_set(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[split]\nval = 0.2\ntest = 0.3\n")
    args = argparse.Namespace(profile="smoke", config=str(toml), overrides=["split.val=0.25"])
    profile = resolve_profile(args)
    assert profile.name == "smoke" and profile.split.val == 0.25 and profile.split.test == 0.3
    with pytest.raises(FileNotFoundError):
        resolve_profile(argparse.Namespace(profile="smoke", config=str(tmp_path / "no.toml"), overrides=[]))
