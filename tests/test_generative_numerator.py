"""The subject-disjoint numerator of ``fid_relative``: translations of subjects in reference half A
never enter FID(A, translated).

Clustered toy data: every subject has an offset pattern shared by all its slices (slices of one
subject are near copies, as in real MRI); most subjects have both lesion-free slices (real
no_tumor images) and lesion slices (what a reconstruction method translates into no_tumor). A
translator that returns a neighbouring lesion-free slice of the same subject is perfect, yet with
the half-A subjects in the numerator it would look better than real (relative FID well below 1).
The feature space is a fixed 4x4 average pooling, so FID sees the subject offsets directly.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import MetricSettings
from harness.metrics.feature_spaces import MRIExtractor
from harness.metrics.generative import Translations, evaluate_generative
from harness.metrics import generative_plan
from harness.metrics.generative_plan import DomainGroups, make_plan

LOG = logging.getLogger("test-numerator")
SIZE = 16
SPACE = "mri-pool"


class Pool4(torch.nn.Module):
    """(N,1,H,W) -> (16-d 4x4 average pooling, constant logits): FID sees the pixels' layout."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = F.adaptive_avg_pool2d(x, 4).flatten(1) * self.scale
        return feats, torch.zeros(x.shape[0], 2)


def slices(offset: torch.Tensor, n: int, g: torch.Generator, lesion: bool = False) -> torch.Tensor:
    """n slices of one subject: its offset pattern plus slice noise (and a bright lesion)."""
    x = 0.5 + offset + 0.03 * torch.randn(n, 1, SIZE, SIZE, generator=g)
    if lesion:
        x[:, :, 4:9, 4:9] += 0.3
    return x.clamp(0, 1)


def offsets(n: int, g: torch.Generator) -> torch.Tensor:
    """Smooth per-subject patterns: the clusters."""
    coarse = 0.12 * torch.randn(n, 1, 4, 4, generator=g)
    return F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def cohort() -> dict:
    """24 test subjects with 6 lesion-free and 6 lesion slices each, 4 healthy-only test
    subjects with 6 slices, and 24 subjects outside the test set (a pool of real no_tumor images)."""
    g = torch.Generator().manual_seed(0)
    tumor_offsets, healthy_offsets, pool_offsets = offsets(24, g), offsets(4, g), offsets(24, g)
    real, real_groups, lesions, lesion_groups = [], [], [], []
    for s, off in enumerate(tumor_offsets):
        real.append(slices(off, 6, g))
        lesions.append(slices(off, 6, g, lesion=True))
        real_groups += [f"t{s}"] * 6
        lesion_groups += [f"t{s}"] * 6
    for s, off in enumerate(healthy_offsets):
        real.append(slices(off, 6, g))
        real_groups += [f"h{s}"] * 6
    return {"real": torch.cat(real), "real_groups": real_groups, "lesions": torch.cat(lesions),
            "lesion_groups": lesion_groups, "tumor_offsets": tumor_offsets,
            "pool": torch.cat([slices(off, 6, g) for off in pool_offsets]), "g": g}


def neighbouring_slice(c: dict) -> torch.Tensor:
    """Each lesion slice becomes another lesion-free slice of the same subject."""
    return torch.cat([slices(c["tumor_offsets"][int(s[1:])], 1, c["g"]) for s in c["lesion_groups"]])


def outside_subject(c: dict) -> torch.Tensor:
    """Each lesion slice becomes a real lesion-free slice of a subject outside the test set."""
    rng = np.random.default_rng(1)
    return c["pool"][rng.integers(0, len(c["pool"]), len(c["lesion_groups"]))]


def _relative(c: dict, translated: torch.Tensor, tmp_path, evaluate=evaluate_generative) -> dict:
    data = Translations({"no_tumor": c["real"]}, {"no_tumor": translated}, {"no_tumor": c["real_groups"]},
                        {"no_tumor": c["lesion_groups"]})
    val = torch.cat([c["real"][:8], c["lesions"][:8]])
    mri = MRIExtractor(Pool4().eval(), SPACE, "ef" * 32, val, torch.tensor([0] * 8 + [1] * 8))
    rows = evaluate("m", data, settings=MetricSettings(bootstrap=10), device=torch.device("cpu"), seed=3,
                    working_size=None, inception_weights=None, mri=mri, cache_dir=tmp_path / "cache", logger=LOG,
                    frd=False)
    (row,) = [r for r in rows if r["metric"] == "fid_relative" and r["feature_space"] == SPACE]
    return row


@pytest.mark.parametrize("translator", [neighbouring_slice, outside_subject])
def test_perfect_translators_score_near_one(cohort, tmp_path, translator):
    row = _relative(cohort, translator(cohort), tmp_path)
    assert 0.7 <= row["value"] <= 1.4, row
    assert "come only from source subjects outside half A" in row["note"]
    assert "subjects," in row["note"] and "images per partition" in row["note"]


def test_with_half_a_subjects_in_the_numerator_the_same_oracle_looks_better_than_real(cohort, tmp_path,
                                                                                      monkeypatch):
    """What the rule removes (and what the test above would catch): translated images of every
    source subject, as before, put the neighbouring-slice oracle far below 1 (0.38 here)."""
    monkeypatch.setattr(generative_plan, "_outside", lambda sources, real, half: np.arange(sources.size))
    assert _relative(cohort, neighbouring_slice(cohort), tmp_path)["value"] < 0.6


def test_the_numerator_never_holds_a_subject_of_half_a(cohort):
    real_groups = np.asarray(cohort["real_groups"])
    sources = np.asarray(cohort["lesion_groups"])
    plan = make_plan({"no_tumor": DomainGroups(real_groups, sources)}, 0, seed=3, partitions=5)
    assert len(plan.draws["no_tumor"]) == len(plan.halves["no_tumor"]) == 5 and plan.skipped["no_tumor"] == 0
    for half, draw in zip(plan.halves["no_tumor"], plan.draws["no_tumor"]):
        in_a = set(real_groups[half.a])
        assert not in_a & set(sources[draw.translated])
        assert len(draw.a) == len(draw.b) == len(draw.translated) == plan.h
        assert draw.pool == int((~np.isin(sources, list(in_a))).sum())  # every image of the others is eligible
        assert draw.pool_subjects == len(set(sources) - in_a)
    again = make_plan({"no_tumor": DomainGroups(real_groups, sources)}, 0, seed=3, partitions=5)
    assert all(np.array_equal(x.translated, y.translated)
               for x, y in zip(plan.draws["no_tumor"], again.draws["no_tumor"]))


def _one_source_subject(seed: int, tmp_path) -> tuple[bool, dict]:
    """Translations of subject s0 only, one partition: (is s0 in half A, the fid_relative row)."""
    g = torch.Generator().manual_seed(0)
    offs = offsets(4, g)
    real = torch.cat([slices(o, 4, g) for o in offs])
    groups = [f"s{i // 4}" for i in range(16)]
    plan = make_plan({"no_tumor": DomainGroups(np.asarray(groups), np.asarray(["s0"] * 6))}, 0, seed, partitions=1)
    in_a = "s0" in set(np.asarray(groups)[plan.halves["no_tumor"][0].a])
    data = Translations({"no_tumor": real}, {"no_tumor": slices(offs[0], 6, g)}, {"no_tumor": groups},
                        {"no_tumor": ["s0"] * 6})
    mri = MRIExtractor(Pool4().eval(), SPACE, "ef" * 32, real, torch.tensor([0, 1] * 8))
    rows = evaluate_generative("m", data, settings=MetricSettings(bootstrap=10), device=torch.device("cpu"),
                               seed=seed, working_size=None, inception_weights=None, mri=mri,
                               cache_dir=tmp_path / "cache", logger=LOG, partitions=1, frd=False)
    (row,) = [r for r in rows if r["metric"] == "fid_relative" and r["feature_space"] == SPACE]
    return in_a, row


def test_a_half_a_holding_every_source_subject_leaves_no_numerator(tmp_path):
    outcomes = {}
    for seed in range(12):
        in_a, row = _one_source_subject(seed, tmp_path)
        outcomes.setdefault(in_a, row)
    assert set(outcomes) == {True, False}  # both sides occur among the seeds
    assert outcomes[True]["value"] is None and "no numerator from other subjects" in outcomes[True]["note"]
    assert outcomes[False]["value"] is not None and "(1 subjects, 6 images per partition)" in outcomes[False]["note"]
