"""Fréchet Radiomics Distance rows (harness.metrics.frd): the properties users rely on, caching by
content, and the note when the optional extra is not installed.

Radiomics extraction costs ~0.1 s per small image, so the sets here are a dozen 48-px images.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from harness.config import MetricSettings
from harness.metrics.feature_cache import FeatureCache
from harness.metrics.frd import (
    FRD_METRICS, FRD_SPACE, MAX_IMAGES, RadiomicsExtractor, RadiomicsFeatures, frechet_radiomics_distances,
    radiomics_extractor,
)
from harness.metrics.generative import Translations, evaluate_generative, to_uint8

LOG = logging.getLogger("test-frd")
SIZE = 48


def textured(n: int, seed: int) -> torch.Tensor:
    """Brain-like discs with fine texture (what blur removes) and a coarse shading, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, SIZE), torch.linspace(-1, 1, SIZE), indexing="ij")
    radius = 0.6 + 0.25 * torch.rand(n, 1, 1, 1, generator=g)
    disc = ((xx**2 + yy**2) < radius**2).float()
    fine = gaussian_blur(torch.randn(n, 1, SIZE, SIZE, generator=g), 3, 0.7)
    coarse = F.interpolate(torch.randn(n, 1, 4, 4, generator=g), size=(SIZE, SIZE), mode="bilinear",
                           align_corners=False)
    return (disc * (0.45 + 0.1 * coarse + 0.25 * fine)).clamp(0, 1)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(images, 2 * math.ceil(3 * sigma) + 1, sigma)


@pytest.fixture(scope="module")
def extractor() -> RadiomicsExtractor:
    pytest.importorskip("frd_score")
    pytest.importorskip("radiomics")
    return radiomics_extractor()


def _features(extractor: RadiomicsExtractor, images: torch.Tensor, tmp_path) -> np.ndarray:
    store = RadiomicsFeatures(extractor, FeatureCache(tmp_path, LOG), LOG)
    return np.stack(list(store.get(to_uint8(images), np.arange(len(images)), "test", cached=False).values()))


def test_frd_of_identical_sets_is_its_minimum_and_rises_with_blur(extractor, tmp_path):
    real = textured(12, 0)
    base = _features(extractor, real, tmp_path)
    other = _features(extractor, textured(12, 1), tmp_path)
    ladder = [_features(extractor, blur(real, s), tmp_path) for s in (0.5, 1.0, 2.0)]
    (same, resampled, *blurred), kept = frechet_radiomics_distances(base, [base, other, *ladder])
    assert kept > 50  # the FRD v1 configuration gives hundreds of features; constant ones dropped
    assert abs(same) < 1e-4 * resampled
    assert same < resampled and same < min(blurred)
    assert blurred[0] < blurred[1] < blurred[2], blurred
    assert blurred[1] > resampled  # blur 1 px is further than another sample of the same distribution


def test_a_set_without_finite_features_is_an_error_not_a_number():
    pytest.importorskip("frd_score")
    good = np.random.default_rng(0).normal(size=(6, 5))
    with pytest.raises(ValueError, match="fewer than 2 images"):
        frechet_radiomics_distances(good, [np.full((6, 5), np.nan)])


def _data(seed: int = 0) -> Translations:
    """8 subjects of 2 real no_tumor slices; 16 translations (blurred real-like images) from
    8 source subjects, half of them also real subjects (as tumor subjects' healthy slices are)."""
    real = textured(16, 10 + seed)
    translated = blur(textured(16, 20 + seed), 1.0)
    real_groups = [f"s{i // 2}" for i in range(16)]
    source_groups = [f"s{4 + i // 2}" for i in range(16)]
    return Translations({"no_tumor": real}, {"no_tumor": translated}, {"no_tumor": real_groups},
                        {"no_tumor": source_groups})


def _evaluate(data: Translations, tmp_path) -> list[dict]:
    return evaluate_generative("m", data, settings=MetricSettings(bootstrap=10), device=torch.device("cpu"), seed=0,
                               working_size=None, inception_weights=None, mri=None, cache_dir=tmp_path / "cache",
                               logger=LOG, partitions=3)


def _radiomics_extractions(caplog) -> dict[str, int]:
    """Images extracted (not from the cache) per kind ('real', 'translated', ...), from the log."""
    found = (re.match(r"extracting radiomics features of (\d+) (\w+)", r.getMessage())
             for r in caplog.records)
    return {m[2]: int(m[1]) for m in found if m}


def test_frd_rows_use_the_subject_disjoint_halves_and_cache_real_features(extractor, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=LOG.name)
    first = _evaluate(_data(), tmp_path)
    rows = {r["metric"]: r for r in first if r["feature_space"] == FRD_SPACE}
    assert set(rows) == set(FRD_METRICS)
    for row in rows.values():
        assert row["domain"] == "no_tumor" and row["value"] is not None and row["n"] <= MAX_IMAGES
        assert "come only from source subjects outside half A" in row["note"] and "FRD v1 radiomics" in row["note"]
    assert rows["frd_relative"]["value"] == pytest.approx(rows["frd"]["value"] / rows["frd_reference"]["value"])
    assert rows["frd_relative"]["value"] > 1.5  # blurred translations are far from real images
    assert "ln d²" in rows["frd"]["note"]
    extracted = _radiomics_extractions(caplog)
    assert extracted["real"] > 0 and extracted["translated"] > 0
    caplog.clear()
    again = _evaluate(_data(), tmp_path)
    # the real images come from the cache, by content; translations are never cached
    assert _radiomics_extractions(caplog) == {"translated": extracted["translated"]}
    assert [r["value"] for r in again] == [r["value"] for r in first]


def test_the_process_pool_gives_the_in_process_features_and_failures(extractor, tmp_path, monkeypatch, caplog):
    """The pool (forked workers, each with its own extractor) changes nothing a user sees: the same
    features image by image, in the same order, the same failed image (a constant one) as None and
    counted, and the real images cached by the parent."""
    images = to_uint8(textured(5, 3))
    images[2] = 77  # constant: no texture bins, so pyradiomics fails on it
    pids = tmp_path / "pids"
    pids.mkdir()
    original = RadiomicsExtractor.one
    monkeypatch.setattr(RadiomicsExtractor, "one", lambda self, image, folder: (pids / str(os.getpid())).touch()
                        or original(self, image, folder))
    caplog.set_level(logging.INFO, logger=LOG.name)
    idx = np.array([4, 0, 2, 1, 3])

    def extract(workers: int, cache: str) -> dict[int, np.ndarray | None]:
        for pid in pids.iterdir():
            pid.unlink()
        return RadiomicsFeatures(extractor, FeatureCache(tmp_path / cache, LOG), LOG, workers).get(
            images, idx, "test", cached=True)

    serial = extract(1, "serial")
    assert {p.name for p in pids.iterdir()} == {str(os.getpid())}
    pooled = extract(2, "pooled")
    workers = {p.name for p in pids.iterdir()}
    assert workers and str(os.getpid()) not in workers  # extracted in the workers, not in this process
    assert list(pooled) == list(serial) == idx.tolist()
    assert serial[2] is None and pooled[2] is None
    for i in (0, 1, 3, 4):
        assert np.array_equal(pooled[i], serial[i], equal_nan=True)
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 2 and failures[0] == failures[1]
    assert failures[0].startswith("radiomics features failed on 1 of 5 test images (first: ValueError")
    caplog.clear()
    cached = extract(2, "pooled")  # the parent saved the pool's features: only the failed image is redone
    assert _radiomics_extractions(caplog) == {"test": 1}
    assert all(np.array_equal(cached[i], pooled[i]) for i in (0, 1, 3, 4))


def test_constant_translations_are_left_out_and_counted(extractor, tmp_path):
    """A collapsed translator (constant images) has no radiomics texture: its FRD is not
    computed, the note says which images were left out, the real-vs-real reference stands."""
    data = _data()
    data.translated["no_tumor"] = torch.full_like(data.translated["no_tumor"], 0.3)
    rows = {r["metric"]: r for r in _evaluate(data, tmp_path) if r["feature_space"] == FRD_SPACE}
    for metric in ("frd", "frd_relative"):
        note = rows[metric]["note"]
        assert rows[metric]["value"] is None and "fewer than 2 images with finite radiomics features" in note
        assert "translated no_tumor images" in note and re.search(r"0 of \d+ real and (\d+) of \1 translated", note)
    assert rows["frd_reference"]["value"] > 0


def test_without_frd_score_the_rows_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "frd_score", None)
    monkeypatch.setitem(sys.modules, "frd_score.frd", None)
    rows = [r for r in _evaluate(_data(), tmp_path) if r["feature_space"] == FRD_SPACE]
    assert {r["metric"] for r in rows} == set(FRD_METRICS)
    for row in rows:
        assert row["value"] is None and "pip install -e '.[frd]'" in row["note"]
