"""The realism-ssl feature space: its encoder is seeded and cached, and it passes the degradation
ladder on real held-out subjects (blur raises relative FID monotonically, blur 1 px >= 2), while
a blur-blind space fails the ladder. Smoke-sized embedded cohort (64 px, 20 subjects)."""

from __future__ import annotations

import logging
import os
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import MetricSettings, dataset_settings
from harness.data.embedded import load_embedded_cohort
from harness.metrics import realism_encoder
from harness.metrics.degradation_ladder import BLUR_SIGMAS, LEVELS, degrade, run_ladder
from harness.metrics.generative import Translations, evaluate_generative
from harness.metrics.realism_encoder import RealismSettings, encoder_key, load_or_train, train_encoder
from harness.metrics.realism_space import REALISM_SPACE, embedder, realism_space

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
LOG = logging.getLogger("test-realism")
CPU = torch.device("cpu")
BUDGET = RealismSettings(steps=40, batch_size=32, crop=48)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """20 virtual subjects of 8 slices at 64 px; even-numbered subjects train, odd ones are held out."""
    settings = dataset_settings("mni152-lesions", "smoke").model_copy(update={"n_subjects": 20,
                                                                              "slices_per_subject": 8})
    with mock.patch.dict(os.environ, {"HARNESS_CACHE": str(tmp_path_factory.mktemp("cohort"))}):
        c = load_embedded_cohort(settings, seed=7, progress=False)
    images = torch.from_numpy(np.stack([c.load_image(r) for r in c.records]))[:, None].float()
    subjects = np.array([r.subject for r in c.records])
    labels = np.array([r.label == "tumor" for r in c.records])
    held_out = np.array([int(s.rsplit("-", 1)[-1]) % 2 == 1 for s in subjects])
    torch.set_num_threads(min(2, torch.get_num_threads()))
    encoder = train_encoder(images[torch.from_numpy(~held_out)], BUDGET, seed=3)
    domains = {d: (_u8(images[torch.from_numpy(held_out & (labels == lab))]),
                   list(subjects[held_out & (labels == lab)])) for d, lab in (("tumor", True), ("no_tumor", False))}
    return {"images": images, "held_out": held_out, "encoder": encoder, "domains": domains}


def test_encoder_passes_the_degradation_ladder(cohort):
    space = realism_space(cohort["encoder"], "k", "")
    ladder = run_ladder(embedder(space, CPU), cohort["domains"], seed=0, partitions=3)
    assert set(ladder.relative) == {"tumor", "no_tumor"}, ladder.skipped
    for domain, rel in ladder.relative.items():
        blur = [rel[f"blur {s:g} px"] for s in BLUR_SIGMAS]
        assert ladder.spearman[domain] >= 0.9 and blur == sorted(blur), (domain, rel)
        assert rel["blur 1 px"] >= 2, (domain, rel)
        assert min(rel.values()) > 1, (domain, rel)  # noise, JPEG and down/up move images away too
    assert ladder.passed
    summary = ladder.summary()
    assert summary.startswith("degradation ladder passed") and "blur 1 px" in summary and "JPEG q30" in summary


def test_a_blur_blind_space_fails_the_ladder(cohort):
    """Features of a 4x4 average-pooled image cannot see fine blur: the ladder must say so."""
    def coarse(images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.float() / 255, 4).flatten(1)

    ladder = run_ladder(coarse, cohort["domains"], seed=0, partitions=3)
    assert not ladder.passed
    assert "FAILED" in ladder.summary() and "NOT evidence of realism" in ladder.summary()


def test_ladder_without_subjects_enough_is_not_accepted():
    images = _u8(torch.rand(6, 1, 16, 16))
    ladder = run_ladder(lambda x: x.float().flatten(1)[:, :8], {"tumor": (images, ["a", "a", "b", "b", "c", "c"])},
                        seed=0)
    assert not ladder.passed and "not run" in ladder.summary() and "only 3 subject(s)" in ladder.summary()


def test_degradations_change_pixels_as_named():
    x = _u8(torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    for level in LEVELS:
        y = degrade(x, level, seed=1)
        assert y.dtype == torch.uint8 and y.shape == x.shape and not torch.equal(x, y), level
    sharp = [degrade(x, f"blur {s:g} px").float().diff(dim=-1).abs().mean() for s in BLUR_SIGMAS]
    assert sharp == sorted(sharp, reverse=True)  # more blur, smaller gradients
    with pytest.raises(ValueError, match="unknown ladder level"):
        degrade(x, "sharpen")


def test_encoder_is_seeded_and_cached(cohort, tmp_path):
    images = cohort["images"][:24]
    tiny = RealismSettings(widths=(4, 8), steps=3, batch_size=8, crop=32)
    a, b = train_encoder(images, tiny, seed=5), train_encoder(images, tiny, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = train_encoder(images, tiny, seed=6)
    assert not torch.equal(a.stages[0][0].weight, c.stages[0][0].weight)
    first, key = load_or_train(images, "split-1", tiny, 5, tmp_path, LOG)
    assert (tmp_path / "realism-encoder" / f"{key}.pt").is_file()
    with mock.patch.object(realism_encoder, "train_encoder", side_effect=AssertionError("retrained")):
        again, same = load_or_train(images, "split-1", tiny, 5, tmp_path, LOG)
    assert same == key and torch.equal(again(images[:2]), first(images[:2]))
    assert len({key, encoder_key("split-2", (64, 64), tiny, 5), encoder_key("split-1", (64, 64), tiny, 6),
                encoder_key("split-1", (64, 64), RealismSettings(steps=4), 5)}) == 4
    (tmp_path / "realism-encoder" / f"{key}.pt").write_bytes(b"truncated")
    retrained, _ = load_or_train(images, "split-1", tiny, 5, tmp_path, LOG)  # a bad file is a cache miss
    assert torch.equal(retrained(images[:2]), first(images[:2]))


def test_generative_rows_in_the_realism_space(cohort, tmp_path):
    """FID/KID/relative FID rows named realism-ssl, with the ladder's verdict in the note; a blurred
    translation of held-out real images lies further from the real ones than a sharp one."""
    images, held = cohort["images"], torch.from_numpy(cohort["held_out"])
    real, sharp = images[held][::2], images[held][1::2]
    subjects = [f"s{i}" for i in range(len(images))]
    groups = [g for g, h in zip(subjects, held.tolist()) if h]
    space = realism_space(cohort["encoder"], "k", "degradation ladder passed (test)")
    blurred = degrade(_u8(sharp), "blur 1 px").float() / 255

    def rows(translated):
        data = Translations({"no_tumor": real}, {"no_tumor": translated}, {"no_tumor": groups[::2]},
                            {"no_tumor": groups[1::2]})
        return evaluate_generative("m", data, settings=MetricSettings(kid_subset_size=10, bootstrap=10), device=CPU,
                                   seed=0, working_size=None, inception_weights=None, mri=None,
                                   cache_dir=tmp_path, logger=LOG, partitions=2, frd=False,
                                   realism=(space, ""))

    def fid(found):
        (row,) = [r for r in found if r["feature_space"] == REALISM_SPACE and r["metric"] == "fid"]
        return row

    sharp_rows = rows(sharp)
    assert {r["metric"] for r in sharp_rows if r["feature_space"] == REALISM_SPACE} == \
        {"fid", "kid", "fid_reference", "fid_relative"}
    assert "degradation ladder passed (test)" in fid(sharp_rows)["note"]
    assert fid(rows(blurred))["value"] > 2 * fid(sharp_rows)["value"]
    missing = evaluate_generative(
        "m", Translations({"no_tumor": real}, {"no_tumor": sharp}, {"no_tumor": groups[::2]},
                          {"no_tumor": groups[1::2]}), settings=MetricSettings(), device=CPU, seed=0,
        working_size=None, inception_weights=None, mri=None, cache_dir=tmp_path, logger=LOG, frd=False,
        realism=(None, "realism-ssl feature space unavailable: boom"))
    assert all(r["value"] is None and "boom" in r["note"] for r in missing if r["feature_space"] == REALISM_SPACE)
