"""FID/IS/KID per domain through torch-fidelity: availability, theory, caching, no network."""

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
import torch_fidelity
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
from torch_fidelity.utils import create_feature_extractor

from harness.config import MetricSettings
from harness.metrics import feature_spaces
from harness.metrics.feature_spaces import MRI_EXTRACTOR, MRIResNet18Extractor, ensure_registered
from harness.metrics.generative import evaluate_generative, to_uint8
from harness.models import build_resnet18_classifier, file_sha256
from harness.metrics.weights import INCEPTION_WEIGHTS_FILE

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
LOG = logging.getLogger("test-generative")
CPU = torch.device("cpu")
SETTINGS = MetricSettings(isc_splits=2, kid_subset_size=10)


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
    """On shared CI cores multi-threaded BLAS and torch spin and make a 512x512 eigvals (FID)
    ~50x slower; one thread keeps this file fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mri_checkpoint(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mri") / "resnet18.pt"
    torch.save({"model": build_resnet18_classifier().state_dict(), "image_size": 32}, path)
    return str(path)


def brains(n: int, seed: int, noise: float = 0.08, size: int = 32) -> torch.Tensor:
    """Seeded blob 'slices' with noise: one distribution per noise level, many samples per seed.
    (A brightness shift would not do: the MRI extractor z-scores each image.)"""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radius = 0.5 + 0.3 * torch.rand(n, 1, 1, generator=g)
    cx = 0.2 * (torch.rand(n, 1, 1, generator=g) - 0.5)
    blob = ((xx - cx) ** 2 + yy**2 < radius**2).float() * (0.4 + 0.4 * torch.rand(n, 1, 1, generator=g))
    img = blob + noise * torch.randn(n, size, size, generator=g)
    return img.clamp(0, 1).unsqueeze(1)


def evaluate(real, translated, ckpt, tmp_path, settings=SETTINGS, inception=None, seed=0):
    return evaluate_generative("m", real, translated, settings=settings, device=CPU, seed=seed,
                               inception_weights=inception, mri_checkpoint=ckpt,
                               cache_dir=tmp_path / "cache", logger=LOG)


def pick(rows, metric, space="mri-resnet18", domain="tumor"):
    (row,) = [r for r in rows if r["metric"] == metric and r["feature_space"] == space and r["domain"] == domain]
    return row


def test_inception_absent_rows_say_why_and_mri_rows_compute(mri_checkpoint, tmp_path):
    real = {"tumor": brains(12, 1), "no_tumor": brains(12, 2)}
    fake = {"tumor": brains(12, 3), "no_tumor": brains(12, 4)}
    rows = evaluate(real, fake, mri_checkpoint, tmp_path)
    assert len(rows) == 2 * 2 * 5
    hub = str(Path(torch.hub.get_dir()) / "checkpoints")
    for r in rows:
        assert set(r) == {"method", "split", "domain", "metric", "feature_space", "value", "std",
                          "ci_low", "ci_high", "n", "note"}
        if r["feature_space"] == "inception-v3":
            assert r["value"] is None
            assert INCEPTION_WEIGHTS_FILE in r["note"] and hub in r["note"]
            assert "--inception-weights PATH" in r["note"] and "weights --fetch" in r["note"]
        else:
            assert isinstance(r["value"], float), r
            assert f"sha256 {file_sha256(mri_checkpoint)}" in r["note"]


def test_explicit_missing_inception_path_is_named(mri_checkpoint, tmp_path):
    rows = evaluate({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}, None, tmp_path,
                    inception=str(tmp_path / "nope.pth"))
    assert all(r["value"] is None for r in rows)
    assert "nope.pth does not exist" in pick(rows, "fid", "inception-v3")["note"]
    assert "no ResNet18 classifier checkpoint" in pick(rows, "fid")["note"]


def test_bad_mri_checkpoint_is_a_note(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    rows = evaluate({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}, str(bad), tmp_path)
    assert "must hold 'model'" in pick(rows, "kid")["note"]
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "image_size": 32}, wrong)
    rows = evaluate({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}, str(wrong), tmp_path)
    assert "could not load mri-resnet18 weights" in pick(rows, "fid")["note"]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(mri_checkpoint, tmp_path):
    real = brains(24, 1)
    fids = []
    g = torch.Generator().manual_seed(5)
    for sigma in (0.0, 0.1, 0.3):
        noisy = (real + sigma * torch.randn(real.shape, generator=g)).clamp(0, 1)
        rows = evaluate({"tumor": real}, {"tumor": noisy}, mri_checkpoint, tmp_path)
        fids.append(pick(rows, "fid")["value"])
    assert abs(fids[0]) < 1e-6 * max(1.0, fids[2])
    assert fids[0] < fids[1] < fids[2]


def test_kid_near_zero_for_one_distribution(mri_checkpoint, tmp_path):
    settings = MetricSettings(isc_splits=2, kid_subset_size=20)
    same = pick(evaluate({"tumor": brains(60, 1)}, {"tumor": brains(60, 2)}, mri_checkpoint, tmp_path,
                         settings), "kid")
    shifted = pick(evaluate({"tumor": brains(60, 1)}, {"tumor": brains(60, 2, noise=0.3)}, mri_checkpoint,
                            tmp_path, settings), "kid")
    assert same["std"] > 0
    assert abs(same["value"]) < 3 * same["std"]
    assert shifted["value"] > 10 * abs(same["value"])
    assert shifted["value"] > 3 * shifted["std"]


def _mri_features(ckpt: str, images: torch.Tensor) -> np.ndarray:
    ensure_registered()
    extractor = create_feature_extractor(MRI_EXTRACTOR, ["512"], cuda=False, feature_extractor_weights_path=ckpt)
    with torch.no_grad():
        (feats,) = extractor(to_uint8(images, 32).expand(-1, 3, -1, -1))
    return feats.double().numpy()


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # n < 512: singular covariances
def test_fid_matches_a_direct_frechet_distance(mri_checkpoint, tmp_path):
    real, fake = brains(40, 1), brains(30, 2, noise=0.2)
    fid = pick(evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path), "fid")["value"]
    a, b = _mri_features(mri_checkpoint, real), _mri_features(mri_checkpoint, fake)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    direct = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
    assert fid == pytest.approx(direct, rel=1e-3, abs=1e-4)


def test_equal_to_calculate_metrics(mri_checkpoint, tmp_path):
    """The feature-level path gives torch-fidelity's calculate_metrics numbers exactly."""
    from harness.metrics.generative import BATCH_SIZE, UInt8Images

    real, fake = brains(20, 1), brains(16, 2, noise=0.2)
    rows = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path, seed=7)
    ensure_registered()
    ref = torch_fidelity.calculate_metrics(
        input1=UInt8Images(to_uint8(fake, 32)), input2=UInt8Images(to_uint8(real, 32)), cuda=False,
        feature_extractor=MRI_EXTRACTOR, feature_extractor_weights_path=mri_checkpoint,
        fid=True, kid=True, isc=True, isc_splits=2, kid_subset_size=10, rng_seed=7,
        batch_size=BATCH_SIZE, cache=False, verbose=False, save_cpu_ram=True)
    assert pick(rows, "fid")["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_FID], rel=1e-9)
    assert pick(rows, "kid")["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-9)
    assert pick(rows, "kid")["std"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_KID_STD], rel=1e-9)
    assert pick(rows, "isc")["value"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_ISC_MEAN], rel=1e-9)
    assert pick(rows, "isc")["std"] == pytest.approx(ref[torch_fidelity.KEY_METRIC_ISC_STD], rel=1e-9)


def test_reference_and_relative_fid(mri_checkpoint, tmp_path):
    rows = evaluate({"tumor": brains(40, 1)}, {"tumor": brains(30, 2, noise=0.3)}, mri_checkpoint, tmp_path)
    ref, rel = pick(rows, "fid_reference"), pick(rows, "fid_relative")
    assert ref["n"] == 20 and ref["value"] > 0
    assert rel["n"] == 20 and rel["value"] > 1  # a shifted set is farther than real halves are
    rows_same = evaluate({"tumor": brains(40, 1)}, {"tumor": brains(30, 2)}, mri_checkpoint, tmp_path)
    assert pick(rows_same, "fid_relative")["value"] < rel["value"]


def test_kid_subset_capped_and_too_few_noted(mri_checkpoint, tmp_path):
    settings = MetricSettings(isc_splits=10, kid_subset_size=1000)
    rows = evaluate({"tumor": brains(6, 1), "no_tumor": brains(3, 2)},
                    {"tumor": brains(5, 3), "no_tumor": brains(1, 4)}, mri_checkpoint, tmp_path, settings)
    kid = pick(rows, "kid")
    assert kid["value"] is not None and "capped at 5 (setting 1000)" in kid["note"]
    assert "5 splits" in pick(rows, "isc")["note"]
    for metric in ("fid", "isc", "kid", "fid_reference", "fid_relative"):
        row = pick(rows, metric, domain="no_tumor")
        assert row["value"] is None and "1 translated no_tumor images, need >= 2" in row["note"]
    rows = evaluate({"tumor": brains(3, 1)}, {"tumor": brains(4, 2)}, mri_checkpoint, tmp_path)
    assert pick(rows, "fid")["value"] is not None
    assert "need >= 4 for two halves" in pick(rows, "fid_reference")["note"]


def test_bad_images_are_noted_not_raised(mri_checkpoint, tmp_path):
    nan = brains(6, 2)
    nan[0, 0, 0, 0] = float("nan")
    rows = evaluate({"tumor": brains(6, 1), "no_tumor": torch.rand(6, 3, 32, 32)},
                    {"tumor": nan, "no_tumor": brains(6, 3)}, mri_checkpoint, tmp_path)
    assert "NaN" in pick(rows, "fid")["note"]
    assert "single-channel" in pick(rows, "fid", domain="no_tumor")["note"]
    rows = evaluate({"tumor": brains(6, 1)}, {}, mri_checkpoint, tmp_path)
    assert "translated tumor: no images" in pick(rows, "kid")["note"]


def test_real_features_are_cached_by_content(mri_checkpoint, tmp_path, monkeypatch):
    seen: list[int] = []
    original = MRIResNet18Extractor.forward

    def counting(self, x):
        seen.append(int(x.shape[0]))
        return original(self, x)

    monkeypatch.setattr(MRIResNet18Extractor, "forward", counting)
    real, fake = brains(20, 1), brains(12, 2)
    first = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path)
    assert sum(seen) == 20 + 12
    seen.clear()
    second = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path)
    assert sum(seen) == 12  # translated only: the real features came from the cache
    assert [r["value"] for r in first] == [r["value"] for r in second]
    files = set((tmp_path / "cache" / "features").glob("*.pt"))
    assert len(files) == 1
    seen.clear()
    changed = real.clone()
    changed[0, 0, 5, 5] = 1.0 - changed[0, 0, 5, 5]
    evaluate({"tumor": changed}, {"tumor": fake}, mri_checkpoint, tmp_path)
    assert sum(seen) == 20 + 12  # one changed pixel -> a new key, recomputed
    assert len(set((tmp_path / "cache" / "features").glob("*.pt"))) == 2
    reseeded = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path, seed=1)
    assert pick(reseeded, "fid")["value"] == pick(first, "fid")["value"]  # FID has no randomness
    assert pick(reseeded, "kid")["value"] != pick(first, "kid")["value"]  # KID subsets follow the seed


def test_corrupt_cache_entry_is_a_miss(mri_checkpoint, tmp_path):
    real, fake = brains(6, 1), brains(6, 2)
    first = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path)
    (entry,) = (tmp_path / "cache" / "features").glob("*.pt")
    entry.write_bytes(b"truncated")
    again = evaluate({"tumor": real}, {"tumor": fake}, mri_checkpoint, tmp_path)
    assert [r["value"] for r in first] == [r["value"] for r in again]


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


@pytest.mark.slow
def test_inception_every_metric_computes_from_the_hub_cache(random_inception_weights, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch-fidelity tried to download")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", refuse)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    (hub / INCEPTION_WEIGHTS_FILE).symlink_to(random_inception_weights)
    settings = MetricSettings(isc_splits=2, kid_subset_size=4)
    rows = evaluate({"tumor": brains(4, 1, size=16)}, {"tumor": brains(4, 2, noise=0.3, size=16)}, None,
                    tmp_path, settings)
    sha = file_sha256(random_inception_weights)
    for metric in ("fid", "isc", "kid", "fid_reference", "fid_relative"):
        row = pick(rows, metric, "inception-v3")
        assert row["value"] is not None and np.isfinite(row["value"]), row
        assert f"extractor inception-v3 sha256 {sha}" in row["note"]


def test_corrupt_inception_weights_are_a_note(tmp_path):
    bad = tmp_path / INCEPTION_WEIGHTS_FILE
    bad.write_bytes(b"not a checkpoint")
    rows = evaluate({"tumor": brains(6, 1)}, {"tumor": brains(6, 2)}, None, tmp_path, inception=str(bad))
    assert "could not load inception-v3 weights" in pick(rows, "fid", "inception-v3")["note"]
    assert all(r["value"] is None for r in rows)


def test_extractor_construction_never_downloads():
    with feature_spaces._no_download(), pytest.raises(RuntimeError, match="refuses to download"):
        tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])


def test_mri_extractor_sees_what_the_classifier_was_trained_on(mri_checkpoint):
    """Its logits equal the resnet18 baseline's own preprocessing + model on the same pixels."""
    from baselines.resnet18 import load_classifier, preprocess

    images = to_uint8(brains(6, 1, size=48), 48)  # 48 px -> resized to the checkpoint's 32
    ensure_registered()
    extractor = create_feature_extractor(MRI_EXTRACTOR, ["logits"], cuda=False,
                                         feature_extractor_weights_path=mri_checkpoint)
    model, size = load_classifier(mri_checkpoint)
    with torch.no_grad():
        (ours,) = extractor(images.expand(-1, 3, -1, -1))
        theirs = model(preprocess(images.float() / 255, size))
    assert torch.allclose(ours, theirs, atol=1e-5)
