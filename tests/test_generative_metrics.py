"""Generative metrics: the invariants users rely on, torch-fidelity equivalence, caching, no network.

The MRI-space tests use a seeded tiny network (a random convolutional trunk for the features, a
small branch trained for a few seconds for the logits) so they do not depend on the ResNet18.
The reference-FID invariants use the embedded cohort at the quick profile's size: the smoke
cohort's 12 subjects leave two subjects per half, where one partition swings by half its value.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import threadpoolctl
import torch
import torch.nn.functional as F
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from PIL import Image

from harness.api import ImageSet, Method
from harness.config import MetricSettings, dataset_settings
from harness.data.embedded import load_embedded_cohort
from harness.evaluate import translate_test
from harness.metrics import feature_spaces
from harness.metrics.feature_spaces import MRI_EXTRACTOR, MRIExtractor, MRIModuleExtractor, ensure_registered
from harness.metrics.generative import BATCH_SIZE, Translations, UInt8Images, evaluate_generative, to_uint8
from harness.metrics.subject_halves import BALANCE, subject_groups, subject_halves
from harness.metrics.weights import INCEPTION_WEIGHTS_FILE
from harness.hashing import file_sha256
from harness.metric_info import SCHEMA1_METRICS, infos_from_document
from harness.results import upgrade_metrics

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
LOG = logging.getLogger("test-generative")
CPU = torch.device("cpu")
SETTINGS = MetricSettings(isc_splits=2, kid_subset_size=10, bootstrap=200)
SPACE = "mri-tiny"


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Any connection attempt fails the test; TORCH_HOME is an empty folder."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture(autouse=True, scope="module")
def single_threaded():
    """On shared CI cores multi-threaded BLAS and torch spin and make eigvals (FID) much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)


def _zscore(x: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    return (x - x.mean(dim=(1, 2, 3), keepdim=True)) / (x.std(dim=(1, 2, 3), keepdim=True) + 1e-6)


def _convs(width: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(1, width, 5, 2, 2), torch.nn.ReLU(),
                               torch.nn.Conv2d(width, width, 3, 2, 1), torch.nn.ReLU())


class TinyMRINet(torch.nn.Module):
    """(N,1,H,W) in [0,1] at any size -> (16-d features of a random trunk, logits of a small branch)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = _convs(8)
        self.branch = torch.nn.Sequential(_convs(8), torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
                                          torch.nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = _zscore(x)
        h = self.trunk(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], 1), self.branch(x)

    def fit(self, images: torch.Tensor, labels: torch.Tensor, steps: int = 150) -> TinyMRINet:
        x = _zscore(images)
        opt = torch.optim.Adam(self.branch.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(self.branch(x), labels).backward()
            opt.step()
        return self.eval()


def brains(n: int, seed: int, noise: float = 0.08, size: int = 32) -> torch.Tensor:
    """Seeded blob 'slices' with noise: one distribution per noise level, many samples per seed."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.5 + 0.3 * torch.rand(n, 1, 1, generator=g)
    cx = 0.2 * (torch.rand(n, 1, 1, generator=g) - 0.5)
    blob = ((xx - cx) ** 2 + yy**2 < radius**2).float() * (0.4 + 0.4 * torch.rand(n, 1, 1, generator=g))
    img = blob + noise * torch.randn(n, size, size, generator=g)
    return img.clamp(0, 1).unsqueeze(1)


def tiny_mri(val_images: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
             module: torch.nn.Module | None = None) -> MRIExtractor:
    if val_images is None:
        val_images = torch.cat([brains(8, 90), brains(8, 91, noise=0.3)])
        val_labels = torch.tensor([0] * 8 + [1] * 8)
    return MRIExtractor(module or TinyMRINet().eval(), SPACE, "ab" * 32, val_images, val_labels)


def own_subjects(images: torch.Tensor, tag: str) -> list[str]:
    return [f"{tag}{i}" for i in range(len(images))]


def data_of(real: dict, translated: dict, real_groups: dict | None = None,
            source_groups: dict | None = None) -> Translations:
    """Translations with every image its own subject unless groups are given."""
    real_groups = real_groups or {d: own_subjects(x, f"r{d}") for d, x in real.items()}
    source_groups = source_groups or {d: own_subjects(x, f"s{d}") for d, x in translated.items()}
    return Translations(real, translated, real_groups, source_groups)


def evaluate(data: Translations, tmp_path: Path, mri: MRIExtractor | None = None, settings=SETTINGS,
             inception=None, seed=0, working_size=None, partitions=5) -> list[dict]:
    """The FID-side rows (FRD has its own tests: radiomics extraction costs seconds)."""
    return evaluate_generative("m", data, settings=settings, device=CPU, seed=seed, working_size=working_size,
                               inception_weights=inception, mri=mri, cache_dir=tmp_path / "cache", logger=LOG,
                               partitions=partitions, frd=False)


def pick(rows, metric, space=SPACE, domain="tumor"):
    (row,) = [r for r in rows if r["metric"] == metric and r["feature_space"] == space and r["domain"] == domain]
    return row


# ------------------------------------------------------------------ the embedded cohort

@pytest.fixture(scope="module")
def cohort() -> dict:
    """The quick profile's cohort (cached in $HARNESS_CACHE), split by subject number: even
    subjects play the test split, odd ones the pool the oracle translator draws from."""
    c = load_embedded_cohort(dataset_settings("mni152-lesions", "quick"), seed=0, progress=False)
    images = torch.from_numpy(np.stack([c.load_image(r) for r in c.records]))[:, None]
    labels = torch.tensor([r.label == "tumor" for r in c.records]).long()
    subjects = np.array([r.subject for r in c.records])
    sequence = np.array([r.stratum for r in c.records])
    test = np.array([int(s.rsplit("-", 1)[-1]) % 2 == 0 for s in subjects])
    fit = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:400]
    net = TinyMRINet().fit(images[fit], labels[fit])
    return {"images": images, "labels": labels.numpy(), "subjects": subjects, "sequence": sequence,
            "test": test, "mri": MRIExtractor(net, SPACE, "cd" * 32, images[fit], labels[fit])}


def _domain(c: dict, label: int) -> np.ndarray:
    return np.flatnonzero(c["test"] & (c["labels"] == label))


def _cohort_data(c: dict, translate) -> Translations:
    """Real test images per domain, and ``translate(source index array, target label)`` -> the
    image indices (or tensor) translated into the target domain."""
    real, translated, real_groups, source_groups = {}, {}, {}, {}
    for domain, label in (("tumor", 1), ("no_tumor", 0)):
        idx, src = _domain(c, label), _domain(c, 1 - label)
        real[domain], real_groups[domain] = c["images"][idx], list(c["subjects"][idx])
        out = translate(src, label)
        translated[domain] = out if isinstance(out, torch.Tensor) else c["images"][out]
        source_groups[domain] = list(c["subjects"][src])
    return Translations(real, translated, real_groups, source_groups)


def oracle(c: dict):
    """A perfect translator: each source image becomes a real image of the target domain with the
    same MRI sequence, from a subject outside the test split (so outside every reference half)."""
    rng = np.random.default_rng(0)

    def translate(src: np.ndarray, label: int) -> np.ndarray:
        pool = ~c["test"] & (c["labels"] == label)
        return np.array([rng.choice(np.flatnonzero(pool & (c["sequence"] == c["sequence"][i]))) for i in src])
    return translate


def test_reference_halves_share_no_subject_and_are_balanced(cohort):
    idx = _domain(cohort, 1)
    groups = list(cohort["subjects"][idx])
    parts = subject_halves(groups, 5, seed=0)
    assert len(parts) == 5  # distinct partitions
    for p in parts:
        a, b = {groups[i] for i in p.a}, {groups[i] for i in p.b}
        assert not a & b and len(a) == p.subjects_a >= 2 and len(b) == p.subjects_b >= 2
        assert sorted(np.concatenate([p.a, p.b]).tolist()) == list(range(len(groups)))
        assert abs(len(p.a) - len(p.b)) <= BALANCE * len(groups)
    assert [p.a.tolist() for p in subject_halves(groups, 5, seed=0)] == [p.a.tolist() for p in parts]
    # a duplicate group joins subjects: they never land in different halves
    assert subject_groups(["s1", "s2", "s3", "s4"], [0, -1, 0, -1]) == ["s1", "s2", "s1", "s4"]
    joined = subject_groups(list(cohort["subjects"][idx]), [0 if s in ("sub-002", "sub-004") else -1
                                                            for s in cohort["subjects"][idx]])
    for p in subject_halves(joined, 5, seed=1):
        sides = {cohort["subjects"][idx][i]: side for side, half in (("a", p.a), ("b", p.b)) for i in half}
        assert sides.get("sub-002", sides.get("sub-004")) == sides.get("sub-004", sides.get("sub-002"))


def test_oracle_is_near_one_and_noise_far(cohort, tmp_path):
    rows = evaluate(_cohort_data(cohort, oracle(cohort)), tmp_path, cohort["mri"])
    for domain in ("tumor", "no_tumor"):
        rel = pick(rows, "fid_relative", domain=domain)
        assert 0.6 <= rel["value"] <= 1.6, rel
        assert rel["std"] > 0
        ref = pick(rows, "fid_reference", domain=domain)
        assert "share no subject" in ref["note"] and "subjects per half" in ref["note"] and ref["std"] > 0
    g = torch.Generator().manual_seed(0)
    noise = evaluate(_cohort_data(cohort, lambda src, label: torch.rand(len(src), 1, 128, 128, generator=g)),
                     tmp_path, cohort["mri"])
    for domain in ("tumor", "no_tumor"):
        assert pick(noise, "fid_relative", domain=domain)["value"] >= 5


def test_target_rate_oracle_near_reference_identity_is_the_complement(cohort, tmp_path):
    rows = evaluate(_cohort_data(cohort, oracle(cohort)), tmp_path, cohort["mri"])
    identity = evaluate(_cohort_data(cohort, lambda src, label: src), tmp_path, cohort["mri"])
    for domain, source in (("tumor", "no_tumor"), ("no_tumor", "tumor")):
        rate, reference = pick(rows, "target_rate", domain=domain), pick(rows, "target_rate_reference", domain=domain)
        assert reference["value"] > 0.7 and "not a ceiling" in reference["note"]
        assert abs(rate["value"] - reference["value"]) <= 0.15, (rate, reference)
        assert rate["ci_low"] <= rate["value"] <= rate["ci_high"] and rate["ci_low"] < rate["ci_high"]
        assert "higher is better" in rate["note"] and "Youden" in rate["note"]
        source_real = pick(identity, "target_rate_reference", domain=source)["value"]
        assert pick(identity, "target_rate", domain=domain)["value"] == pytest.approx(1 - source_real, abs=1e-12)
        assert pick(identity, "target_rate", domain=domain)["value"] < rate["value"] - 0.3


def test_too_few_subjects_is_not_computed_with_the_reason(tmp_path):
    real = {"tumor": brains(12, 1)}
    groups = {"tumor": ["a"] * 4 + ["b"] * 4 + ["c"] * 4}
    rows = evaluate(data_of(real, {"tumor": brains(12, 2)}, groups), tmp_path, tiny_mri())
    for metric in ("fid_reference", "fid_relative"):
        row = pick(rows, metric)
        assert row["value"] is None
        assert "only 3 subject(s)" in row["note"] and "need >= 4" in row["note"]
    assert pick(rows, "fid")["value"] is not None


def test_equal_n_across_domains_and_sets(tmp_path):
    real = {"tumor": brains(30, 1), "no_tumor": brains(22, 2)}
    translated = {"tumor": brains(22, 3), "no_tumor": brains(17, 4)}
    rows = evaluate(data_of(real, translated), tmp_path, tiny_mri())
    for domain in ("tumor", "no_tumor"):
        for metric in ("fid", "kid"):
            row = pick(rows, metric, domain=domain)
            assert row["n"] == 17 and "n=17 real and 17 translated" in row["note"]
        # halves of 11 (no_tumor: 22 // 2) are the smallest, so h = 11 in both domains
        assert pick(rows, "fid_reference", domain=domain)["n"] == 11
        assert pick(rows, "fid_relative", domain=domain)["n"] == 11
        assert pick(rows, "target_rate", domain=domain)["n"] == len(translated[domain])  # rates use every image


def test_real_images_take_the_methods_resolution_path(tmp_path):
    real = brains(16, 1, size=32)
    down_up = F.interpolate(F.interpolate(real, size=(16, 16), mode="bilinear", align_corners=False, antialias=True),
                            size=(32, 32), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    data = data_of({"tumor": real}, {"tumor": down_up})
    matched = pick(evaluate(data, tmp_path, tiny_mri(), working_size=16), "fid")
    assert abs(matched["value"]) < 1e-6
    assert "taken down to 16 px and back up to 32x32 px" in matched["note"]
    native = pick(evaluate(data, tmp_path, tiny_mri()), "fid")
    assert native["value"] > 1e-3 and "at 32x32 px" in native["note"]


def test_each_space_reports_its_own_metrics_and_absent_inception_says_why(tmp_path):
    real = {"tumor": brains(12, 1), "no_tumor": brains(12, 2)}
    rows = evaluate(data_of(real, {"tumor": brains(12, 3), "no_tumor": brains(12, 4)}), tmp_path, tiny_mri())
    by_space = {s: {r["metric"] for r in rows if r["feature_space"] == s} for s in ("inception-v3", SPACE)}
    assert by_space["inception-v3"] == {"fid", "is", "kid", "fid_reference", "fid_relative"}
    assert by_space[SPACE] == {"fid", "kid", "fid_reference", "fid_relative", "target_rate", "target_rate_reference"}
    hub = str(Path(torch.hub.get_dir()) / "checkpoints")
    for r in rows:
        assert set(r) >= {"method", "split", "domain", "metric", "feature_space", "value", "std",
                          "ci_low", "ci_high", "n", "note"}
        if r["feature_space"] == "inception-v3":
            assert r["value"] is None
            assert INCEPTION_WEIGHTS_FILE in r["note"] and hub in r["note"]
            assert "--inception-weights PATH" in r["note"] and "weights --fetch" in r["note"]
        else:
            assert isinstance(r["value"], float), r
            assert r["n"] is not None and f"extractor {SPACE} sha256 abababababab" in r["note"]


def test_missing_spaces_are_named(tmp_path):
    rows = evaluate(data_of({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}), tmp_path,
                    inception=str(tmp_path / "nope.pth"))
    assert all(r["value"] is None for r in rows)
    assert "nope.pth does not exist" in pick(rows, "fid", "inception-v3")["note"]
    assert "no MRI-domain network" in pick(rows, "target_rate", "mri")["note"]


class Broken(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1) * self.w  # not (features, logits)


def test_a_module_that_breaks_the_contract_is_a_note(tmp_path):
    rows = evaluate(data_of({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}), tmp_path,
                    tiny_mri(module=Broken()))
    assert "must return (features, logits)" in pick(rows, "fid")["note"]
    assert all(r["value"] is None for r in rows)


def test_validation_with_one_class_gives_no_rate(tmp_path):
    mri = tiny_mri(brains(6, 9), torch.zeros(6, dtype=torch.long))
    rows = evaluate(data_of({"tumor": brains(8, 1)}, {"tumor": brains(8, 2)}), tmp_path, mri)
    assert "validation holds one class" in pick(rows, "target_rate")["note"]
    assert pick(rows, "fid")["value"] is not None


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(tmp_path):
    real = brains(24, 1)
    fids = []
    g = torch.Generator().manual_seed(5)
    for sigma in (0.0, 0.1, 0.3):
        noisy = (real + sigma * torch.randn(real.shape, generator=g)).clamp(0, 1)
        fids.append(pick(evaluate(data_of({"tumor": real}, {"tumor": noisy}), tmp_path, tiny_mri()), "fid")["value"])
    assert abs(fids[0]) < 1e-6 * max(1.0, fids[2])
    assert fids[0] < fids[1] < fids[2]


def test_kid_near_zero_for_one_distribution(tmp_path):
    settings = MetricSettings(isc_splits=2, kid_subset_size=20, bootstrap=10)
    same = pick(evaluate(data_of({"tumor": brains(60, 1)}, {"tumor": brains(60, 2)}), tmp_path, tiny_mri(),
                         settings), "kid")
    shifted = pick(evaluate(data_of({"tumor": brains(60, 1)}, {"tumor": brains(60, 2, noise=0.3)}), tmp_path,
                            tiny_mri(), settings), "kid")
    assert same["std"] > 0
    assert abs(same["value"]) < 3 * same["std"]
    assert shifted["value"] > 10 * abs(same["value"])
    assert shifted["value"] > 3 * shifted["std"]


def test_kid_has_no_std_when_every_subset_is_the_whole_set(tmp_path):
    """torch-fidelity's std over identical subsets is rounding noise; the row says so instead."""
    settings = MetricSettings(isc_splits=2, kid_subset_size=1000, bootstrap=10)
    kid = pick(evaluate(data_of({"tumor": brains(20, 1)}, {"tumor": brains(20, 2, noise=0.3)}), tmp_path,
                        tiny_mri(), settings), "kid")
    assert kid["value"] is not None and kid["std"] is None
    assert "every subset is the whole set, so no std" in kid["note"]


def _features(module: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module(to_uint8(images).float() / 255)[0].double().numpy()


def test_fid_matches_a_direct_frechet_distance(tmp_path):
    mri = tiny_mri()
    real, fake = brains(40, 1), brains(40, 2, noise=0.2)
    fid = pick(evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, mri), "fid")["value"]
    a, b = _features(mri.module, real), _features(mri.module, fake)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    direct = float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
    assert fid == pytest.approx(direct, rel=1e-3, abs=1e-4)


def test_mri_space_equals_calculate_metrics_with_the_registered_wrapper(tmp_path):
    """The feature-level path gives torch-fidelity's calculate_metrics numbers exactly."""
    mri = tiny_mri()
    real, fake = brains(20, 1), brains(20, 2, noise=0.2)
    rows = evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, mri, seed=7)
    ensure_registered()
    ref = torch_fidelity.calculate_metrics(
        input1=UInt8Images(to_uint8(fake)), input2=UInt8Images(to_uint8(real)), cuda=False,
        feature_extractor=MRI_EXTRACTOR, mri_module=mri.module, fid=True, kid=True, kid_subset_size=10,
        rng_seed=7, batch_size=BATCH_SIZE, cache=False, verbose=False, save_cpu_ram=True)
    assert pick(rows, "fid")["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_FID], rel=1e-9)
    assert pick(rows, "kid")["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-9)
    assert pick(rows, "kid")["std"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_KID_STD], rel=1e-9)


def test_bad_images_are_noted_not_raised(tmp_path):
    nan = brains(6, 2)
    nan[0, 0, 0, 0] = float("nan")
    rows = evaluate(data_of({"tumor": brains(6, 1), "no_tumor": torch.rand(6, 3, 32, 32)},
                            {"tumor": nan, "no_tumor": brains(6, 3)}), tmp_path, tiny_mri())
    assert "NaN" in pick(rows, "fid")["note"]
    assert "single-channel" in pick(rows, "fid", domain="no_tumor")["note"]
    rows = evaluate(data_of({"tumor": brains(6, 1)}, {"tumor": brains(1, 2)}), tmp_path, tiny_mri())
    assert "translated tumor: only 1 images, need >= 2" in pick(rows, "kid")["note"]
    rows = evaluate(Translations({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}, {"tumor": ["a"] * 5},
                                 {"tumor": ["b"] * 6}), tmp_path, tiny_mri())
    assert "5 subject groups for 6 images" in pick(rows, "fid")["note"]


def test_real_features_are_cached_by_content(tmp_path, monkeypatch):
    seen: list[int] = []
    original = MRIModuleExtractor.forward

    def counting(self, x):
        seen.append(int(x.shape[0]))
        return original(self, x)

    monkeypatch.setattr(MRIModuleExtractor, "forward", counting)
    mri = tiny_mri()
    real, fake = brains(20, 1), brains(12, 2)
    first = evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, mri)
    assert sum(seen) == 20 + 12 + 16  # real, translated, validation
    seen.clear()
    second = evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, mri)
    assert sum(seen) == 12  # translated only: real and validation features came from the cache
    assert [r["value"] for r in first] == [r["value"] for r in second]
    assert len(set((tmp_path / "cache" / "features").glob("*.pt"))) == 2
    seen.clear()
    changed = real.clone()
    changed[0, 0, 5, 5] = 1.0 - changed[0, 0, 5, 5]
    evaluate(data_of({"tumor": changed}, {"tumor": fake}), tmp_path, mri)
    assert sum(seen) == 20 + 12  # one changed pixel -> a new key, recomputed
    seen.clear()
    other = TinyMRINet()
    torch.nn.init.zeros_(other.trunk[0].bias)
    evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, tiny_mri(module=other.eval()))
    assert sum(seen) == 20 + 12 + 16  # same fingerprint string, other weights -> never the stale features


def test_reference_fids_are_computed_once_per_run(tmp_path, monkeypatch):
    import harness.metrics.generative as generative

    calls = []
    original = generative.fid_statistics_to_metric
    monkeypatch.setattr(generative, "fid_statistics_to_metric", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(generative, "_REFERENCE_FIDS", {})  # earlier tests may have seen these halves
    data = data_of({"tumor": brains(16, 1)}, {"tumor": brains(16, 2)})
    first = evaluate(data, tmp_path, tiny_mri(), partitions=3)
    assert len(calls) == 1 + 2 * 3  # fid, then reference and relative per partition
    calls.clear()
    second = evaluate(data_of({"tumor": brains(16, 1)}, {"tumor": brains(16, 3)}), tmp_path, tiny_mri(), partitions=3)
    assert len(calls) == 1 + 3  # another method's translations: the real halves' FIDs are reused
    assert pick(first, "fid_reference")["value"] == pick(second, "fid_reference")["value"]


def test_module_fingerprint_covers_every_weight_and_buffer():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))  # 0-d num_batches_tracked
    first = feature_spaces.module_sha256(net)
    net[1].running_mean += 1
    assert feature_spaces.module_sha256(net) != first


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    real, fake = brains(6, 1), brains(6, 2)
    first = evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, tiny_mri())
    for entry in (tmp_path / "cache" / "features").glob("*.pt"):
        entry.write_bytes(b"truncated")
    again = evaluate(data_of({"tumor": real}, {"tumor": fake}), tmp_path, tiny_mri())
    assert [r["value"] for r in first] == [r["value"] for r in again]


class Negate(Method):
    name = "negate"
    capabilities = frozenset({"scores", "translates"})

    def fit(self, train, val, ctx):
        pass

    def score(self, images):
        raise NotImplementedError

    def translate(self, images, to_domain):
        return 1 - images


def test_translate_test_keeps_each_image_with_its_subject():
    labels = torch.tensor([1, 0, 1, 0, 0])
    images = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 4, 4) / 10
    test = ImageSet(images, labels, [f"i{k}" for k in range(5)], torch.ones(5, 1, 4, 4, dtype=torch.bool))
    out = translate_test(Negate(), test, ["a", "b", "c", "d", "e"])
    assert out.real_groups == {"tumor": ["a", "c"], "no_tumor": ["b", "d", "e"]}
    assert out.source_groups == {"tumor": ["b", "d", "e"], "no_tumor": ["a", "c"]}
    assert torch.equal(out.translated["tumor"], 1 - out.real["no_tumor"])
    assert translate_test(Negate(), test).real_groups["tumor"] == ["i0", "i2"]  # no subjects: one per image


def test_old_isc_rows_are_read_as_is():
    old = [{"method": "m", "metric": "isc", "domain": "tumor", "feature_space": "inception-v3", "value": 1.5}]
    (row,) = upgrade_metrics(old)
    assert row["metric"] == "is"


def test_old_target_rate_real_rows_and_infos_are_read_as_the_reference():
    """target_rate_real was called a ceiling; old runs read under the current name, the rows'
    notes say what they were written as, and their infos give the current title."""
    old = {"schema_version": 2, "rows": [{"method": "m", "metric": "target_rate_real", "domain": "tumor",
                                          "feature_space": "mri-resnet18", "value": 0.9, "note": "the ceiling"}],
           "metrics": {"target_rate_real": {"id": "target_rate_real", "title": "Target rate of real images (ceiling)",
                                            "family": "generative"}}}
    (row,) = upgrade_metrics(old)
    assert row["metric"] == "target_rate_reference" and row["value"] == 0.9
    assert row["note"] == "written as target_rate_real: the ceiling"
    infos = infos_from_document(old)
    assert set(infos) == {"target_rate_reference"} and "ceiling" not in infos["target_rate_reference"].title
    assert infos["target_rate_reference"] == SCHEMA1_METRICS["target_rate_reference"]


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A randomly initialised Inception-v3 in torch-fidelity's format (its own network class,
    built without loading weights; He-initialised convs so that features are not ~0)."""
    torch.manual_seed(0)
    with mock.patch.object(tf_inception, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None):
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("incep") / INCEPTION_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    return path


def _write_pngs(folder: Path, images: torch.Tensor) -> None:
    folder.mkdir()
    for i, image in enumerate(to_uint8(images)[:, 0].numpy()):
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")


@pytest.mark.slow
def test_inception_fid_equals_calculate_metrics_on_png_folders(random_inception_weights, tmp_path):
    """uint8 images at their own size through torch-fidelity's own pipeline: the harness's FID is
    calculate_metrics' on the same pictures saved as PNG files."""
    real, fake = brains(5, 1, size=48), brains(5, 2, noise=0.3, size=48)
    _write_pngs(tmp_path / "a", fake)
    _write_pngs(tmp_path / "b", real)
    ref = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "a"), input2=str(tmp_path / "b"), fid=True, cuda=False, cache=False,
        feature_extractor_weights_path=str(random_inception_weights), verbose=False, save_cpu_ram=True)
    data = Translations({"tumor": real}, {"tumor": fake}, {"tumor": ["one subject"] * 5}, {"tumor": ["x"] * 5})
    rows = evaluate(data, tmp_path, inception=str(random_inception_weights))
    fid = pick(rows, "fid", "inception-v3")
    assert fid["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_FID], rel=1e-3)
    assert fid["n"] == 5 and file_sha256(random_inception_weights) in fid["note"]
    assert pick(rows, "is", "inception-v3")["value"] is not None


@pytest.mark.slow
def test_inception_every_metric_computes_from_the_hub_cache(random_inception_weights, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    (hub / INCEPTION_WEIGHTS_FILE).symlink_to(random_inception_weights)
    settings = MetricSettings(isc_splits=2, kid_subset_size=4, bootstrap=10)
    rows = evaluate(data_of({"tumor": brains(4, 1, size=16)}, {"tumor": brains(4, 2, noise=0.3, size=16)}),
                    tmp_path, settings=settings, partitions=1)
    sha = file_sha256(random_inception_weights)
    for metric in ("fid", "is", "kid", "fid_reference", "fid_relative"):
        row = pick(rows, metric, "inception-v3")
        assert row["value"] is not None and np.isfinite(row["value"]), row
        assert f"extractor inception-v3 sha256 {sha}" in row["note"]


def test_corrupt_inception_weights_are_a_note(tmp_path):
    bad = tmp_path / INCEPTION_WEIGHTS_FILE
    bad.write_bytes(b"not a checkpoint")
    rows = evaluate(data_of({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}), tmp_path, inception=str(bad))
    assert "could not load inception-v3 weights" in pick(rows, "fid", "inception-v3")["note"]
    assert all(r["value"] is None for r in rows)


def test_extractor_construction_never_downloads():
    with feature_spaces._no_download(), pytest.raises(RuntimeError, match="refuses to download"):
        tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
