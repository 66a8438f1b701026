"""PatchCore: the k-center coreset, nearest-neighbour distances, lesion maps, and a backbone that
comes from a checked weights file or from random init, never from the network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from baseline_data import make_context, make_slices
from sklearn.metrics import roc_auc_score
from torchvision import models

from baselines import coreset
from baselines.coreset import greedy_coreset, nearest_neighbours
from baselines.patchcore import PatchCore
from harness.cli import main
from harness.config import method_settings
from harness.settings import SettingsError

SIZE = 128  # layer2 patches are 8 px: a 64 px slice gives an 8 x 8 grid, too coarse for the lesions


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    train = make_slices(24, size=SIZE, seed=1, contrast=0.5)
    test = make_slices(20, size=SIZE, seed=3, contrast=0.5)
    return train, test


def patchcore(**overrides) -> PatchCore:
    return PatchCore(method_settings("patchcore", "smoke", {"image_size": SIZE, **overrides}))


def fitted(train, tmp_path: Path, seed: int = 0, **overrides) -> PatchCore:
    method = patchcore(**overrides)
    method.fit(train, train, make_context(tmp_path, seed=seed))
    return method


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A resnet18 state dict (not ImageNet's: seeded random) named as torchvision names files."""
    torch.manual_seed(123)
    folder = tmp_path_factory.mktemp("weights")
    tmp = folder / "resnet18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return tmp.rename(folder / f"resnet18-{sha[:8]}.pth")


# ---------------------------------------------------------------- coreset and distances
def test_greedy_coreset_adds_the_farthest_point_each_step():
    g = torch.Generator().manual_seed(0)
    cluster = torch.randn(40, 2, generator=g) * 0.1
    outliers = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-8.0, -8.0]])
    points = torch.cat([cluster, outliers])
    picked = greedy_coreset(points, 4, seed=5, projection_dim=None)
    assert set(range(40, 43)) <= set(picked.tolist())  # the three outliers cover the most
    for k in range(1, len(picked)):
        to_chosen = torch.cdist(points, points[picked[:k]]).min(dim=1).values
        assert to_chosen[picked[k]] == pytest.approx(float(to_chosen.max()), rel=1e-5)
    assert torch.equal(picked, greedy_coreset(points, 4, seed=5, projection_dim=None))  # seeded


def test_projected_coreset_still_covers_far_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, 256, generator=g) * 20
    points = (centres[:, None, :] + torch.randn(5, 30, 256, generator=g)).reshape(-1, 256)
    picked = greedy_coreset(points, 5, seed=0, projection_dim=16)
    assert sorted((picked // 30).tolist()) == [0, 1, 2, 3, 4]  # one point from each cluster


def test_nearest_neighbours_in_chunks_equal_brute_force(monkeypatch):
    monkeypatch.setattr(coreset, "_BLOCK_BYTES", 4 * 7 * 13)  # 7 queries per chunk
    g = torch.Generator().manual_seed(2)
    queries, bank = torch.randn(50, 6, generator=g), torch.randn(13, 6, generator=g)
    dist, idx = nearest_neighbours(queries, bank)
    full = torch.cdist(queries, bank)
    assert torch.equal(idx, full.argmin(dim=1))
    assert torch.allclose(dist, full.min(dim=1).values, atol=1e-5)


# ---------------------------------------------------------------- the method
def test_random_init_detects_and_localises_an_obvious_lesion(data, tmp_path):
    train, test = data
    method = fitted(train, tmp_path)
    sel = method.selection()
    assert sel["backbone"] == "resnet18" and sel["backbone_source"].startswith("random init")
    assert sel["train_images"] == int((train.labels == 0).sum())  # healthy train images only
    assert sel["memory_bank"] == int(np.ceil(method.settings.coreset_fraction * sel["train_patches"]))
    out = method.score(test)
    assert out.scores.shape == (len(test),) and out.maps.shape == (len(test), SIZE, SIZE)
    assert np.all(out.maps[~test.brain[:, 0].numpy()] == 0)
    np.testing.assert_allclose(out.scores, out.maps.reshape(len(test), -1).max(1), rtol=1e-6)
    assert roc_auc_score(test.labels.numpy(), out.scores) >= 0.9
    lesion, brain = test.masks[:, 0].numpy(), test.brain[:, 0].numpy()
    for i in np.flatnonzero(test.labels.numpy() == 1):
        assert lesion[i].flat[out.maps[i].argmax()]  # the map peaks inside the lesion
        assert out.maps[i][lesion[i]].mean() > 1.3 * out.maps[i][brain[i] & ~lesion[i]].mean()
    again = fitted(train, tmp_path).score(test)
    np.testing.assert_array_equal(out.scores, again.scores)  # seeded init, projection, coreset


def test_reweighting_scales_the_max_by_a_weight_in_its_range(data, tmp_path):
    train, test = data
    plain = fitted(train, tmp_path).score(test)
    weighted = fitted(train, tmp_path, reweight=True, reweight_neighbours=4).score(test)
    ratio = weighted.scores / plain.scores
    assert np.all(ratio >= 1 - 1 / 4 - 1e-9) and np.all(ratio <= 1)
    np.testing.assert_array_equal(weighted.maps, plain.maps)


def test_weights_file_is_the_backbone(data, tmp_path, resnet18_file):
    train, test = data
    method = fitted(train, tmp_path, weights=str(resnet18_file))
    sha = hashlib.sha256(resnet18_file.read_bytes()).hexdigest()
    assert method.selection()["backbone_source"] == f"ImageNet weights from {resnet18_file} sha256 {sha}"
    saved = torch.load(resnet18_file, weights_only=True)
    assert torch.equal(method.extractor.backbone.layer2[0].conv1.weight.cpu(), saved["layer2.0.conv1.weight"])
    from_file = method.score(test).scores
    # a second run from the file (named by its full sha256 now) repeats; random init differs
    np.testing.assert_array_equal(from_file, fitted(train, tmp_path, weights=str(resnet18_file),
                                                    weights_sha256=sha).score(test).scores)
    assert not np.allclose(from_file, fitted(train, tmp_path).score(test).scores)


@pytest.mark.parametrize("overrides, message", [
    ({"weights_sha256": "0" * 64}, "does not match 0000000000000000"),
    ({"rename": "resnet18-00000000.pth"}, "the hash prefix in its file name"),
    ({"rename": "resnet18.pth"}, "carries no hash prefix"),
    ({"backbone": "random"}, "contradicts weights"),
    ({"weights": "/nonexistent/resnet18-f37072fd.pth"}, "does not exist"),
])
def test_weights_checks_fail_while_settings_are_validated(overrides, message, resnet18_file, tmp_path):
    values = {"weights": str(resnet18_file), **overrides}
    if "rename" in values:
        copy = tmp_path / values.pop("rename")
        copy.write_bytes(resnet18_file.read_bytes())
        values["weights"] = str(copy)
    with pytest.raises(SettingsError, match=message):
        method_settings("patchcore", "smoke", values)


def test_imagenet_backbone_without_a_file_is_refused():
    with pytest.raises(SettingsError, match="needs weights=PATH"):
        method_settings("patchcore", "quick", {"backbone": "imagenet-file"})


def test_wrong_sha256_stops_the_run_before_any_data_is_loaded(resnet18_file, tmp_path, monkeypatch, capsys):
    from harness.data import embedded

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(embedded, "load_embedded_cohort", no_data)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    code = main(["run", "--method", "patchcore", "--profile", "smoke", "--seed", "100",
                 "--output", str(tmp_path / "runs"),
                 "--set", f"patchcore.weights={resnet18_file}", "--set", "patchcore.weights_sha256=" + "ab" * 32])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: patchcore: weights file") and "sha256" in err[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_listed_with_paper_departures_and_weights(capsys):
    from harness.listing import print_listing
    from harness.metrics.weights import known_weights

    print_listing("patchcore")
    out = capsys.readouterr().out
    assert "supervision: healthy_only" in out and "paper: Roth et al." in out and "departs from it:" in out
    entry = next(w for w in known_weights() if w.name == "wide_resnet50_2")
    assert entry.hash_prefix == "95faca4d" and entry.url.endswith(entry.file)
