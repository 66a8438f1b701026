"""The ResNet18 baseline: learns, is deterministic, resumes exactly, loads local ImageNet weights."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
import torchvision
from sklearn.metrics import roc_auc_score

from baseline_data import make_context, make_slices, resnet18
from baselines.augment import AugmentSettings, augment_batch
from baselines.resnet18 import ResNet18Baseline, load_classifier, load_pretrained, preprocess
from baselines.resnet18_net import build_resnet18_classifier, standardize
from harness.registry import METHODS
from harness.training import Checkpointer

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
SETTINGS = dict(image_size=32, epochs=3, batch_size=16, patience=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """32 px models gain nothing from intra-op threads, and on a shared CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return make_slices(64, seed=1, contrast=0.35), make_slices(32, seed=2, contrast=0.35), \
        make_slices(48, size=48, seed=3, contrast=0.35)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train, val, _ = data
    model = resnet18(**SETTINGS)
    model.fit(train, val, make_context(tmp_path_factory.mktemp("r18")))
    return model


def test_registered():
    assert METHODS.get("resnet18") is ResNet18Baseline


def test_learns_bright_blobs(trained, data):
    test = data[2]  # 48 px: the runner's size differs from the model's 32 px
    out = trained.score(test)
    assert out.scores.shape == (len(test),) and out.maps is None
    assert np.all((out.scores >= 0) & (out.scores <= 1))
    assert roc_auc_score(test.labels.numpy(), out.scores) > 0.8


def test_best_checkpoint_and_curves(trained):
    best = torch.load(trained.checkpoint_path, weights_only=True)
    assert set(best) >= {"model", "image_size", "epoch", "val_auroc"}
    assert best["image_size"] == 32 and 1 <= best["epoch"] <= 3
    curves = trained.training_curves()
    assert curves["epoch"] == [1, 2, 3]
    assert {len(v) for v in curves.values()} == {3}
    assert best["val_auroc"] == max(curves["val_auroc"])
    model, size = load_classifier(trained.checkpoint_path)
    x = make_slices(4, size=32, seed=9).images
    with torch.no_grad():
        assert torch.equal(model(preprocess(x, size)), trained.model(standardize(x)))


def test_same_seed_same_scores(data, tmp_path):
    train, val, test = data
    one_epoch = {**SETTINGS, "epochs": 1}
    scores = []
    for run in ("a", "b"):
        model = resnet18(**one_epoch)
        model.fit(train, val, make_context(tmp_path / run))
        scores.append(model.score(test).scores)
    np.testing.assert_array_equal(scores[0], scores[1])


def test_resume_is_exact(trained, data, tmp_path, monkeypatch):
    """Crash after epoch 1 of 3, resume, and compare with the uninterrupted run ``trained``."""
    train, val, test = data
    full = trained

    original_save = Checkpointer.save

    def crash_after_first_epoch(self, epoch, state):
        path = original_save(self, epoch, state)
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash")
        return path

    monkeypatch.setattr(Checkpointer, "save", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        resnet18(**SETTINGS).fit(train, val, make_context(tmp_path / "resumed"))
    monkeypatch.setattr(Checkpointer, "save", original_save)
    torch.manual_seed(12345)  # a resumed process starts with different global RNG state
    resumed = resnet18(**SETTINGS)
    resumed.fit(train, val, make_context(tmp_path / "resumed", resume=True))

    last_full = torch.load(full.checkpoint_path.parent / "checkpoints/last.pt", weights_only=True)["state"]
    last_resumed = torch.load(tmp_path / "resumed/checkpoints/last.pt", weights_only=True)["state"]
    for a, b in ((full.model.state_dict(), resumed.model.state_dict()),
                 (last_full["model"], last_resumed["model"])):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert full.training_curves() == resumed.training_curves()
    np.testing.assert_array_equal(full.score(test).scores, resumed.score(test).scores)


def test_missing_pretrained_file_is_a_clear_error(data, tmp_path):
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError) as info:
        resnet18(pretrained=str(missing), **SETTINGS).fit(*data[:2], make_context(tmp_path))
    assert str(missing) in str(info.value) and "resnet18-f37072fd.pth" in str(info.value)


def test_pretrained_file_loads(data, tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    model = build_resnet18_classifier()
    load_pretrained(model, path)
    assert torch.equal(model.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.weight.shape == (2, 512)
    fitted = resnet18(pretrained=str(path), **{**SETTINGS, "epochs": 1})
    fitted.fit(*data[:2], make_context(tmp_path / "run"))
    assert fitted.selected["pretrained"] is True


def test_unreadable_pretrained_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read pretrained weights"):
        load_pretrained(build_resnet18_classifier(), bad)


def test_bad_inputs(data, tmp_path):
    train, val, test = data
    with pytest.raises(RuntimeError, match="fit"):
        ResNet18Baseline().score(test)
    with pytest.raises(ValueError, match="both tumor and no_tumor"):
        resnet18(**SETTINGS).fit(train.of_label(1), val, make_context(tmp_path))
    with pytest.raises(ValueError, match="empty"):
        resnet18(**SETTINGS).fit(train, val.subset([]), make_context(tmp_path))


NOTHING = AugmentSettings(flip_p=0.0, max_rotation_deg=0.0, max_translate=0.0, scale=(1.0, 1.0),
                          max_log_gamma=0.0, noise_std=0.0, max_bias_field=0.0, max_blur_sigma=0.0,
                          ghosting_p=0.0)


def test_augment_flip_is_left_right_and_seeded():
    x = make_slices(4, size=16, seed=5).images
    flip_only = dataclasses.replace(NOTHING, flip_p=1.0)
    torch.testing.assert_close(augment_batch(x, torch.Generator().manual_seed(0), flip_only), x.flip(-1),
                               atol=1e-5, rtol=0)
    a = augment_batch(x, torch.Generator().manual_seed(7))
    b = augment_batch(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= 0 and a.max() <= 1



def test_augment_with_every_range_zero_is_the_identity():
    x = make_slices(3, size=16, seed=2).images
    torch.testing.assert_close(augment_batch(x, torch.Generator().manual_seed(0), NOTHING), x, atol=1e-5, rtol=0)


def test_augment_bias_field_is_smooth_and_multiplicative():
    x = torch.full((2, 1, 32, 32), 0.5)
    out = augment_batch(x, torch.Generator().manual_seed(3), dataclasses.replace(NOTHING, max_bias_field=0.8))
    field = out / 0.5
    assert field.max() <= 1 + 1e-6 and field.min() > 0.1
    assert (field.amax(dim=(-2, -1)) - field.amin(dim=(-2, -1))).max() > 0.1  # it does vary
    assert field.diff(dim=-1).abs().max() < 0.1 and field.diff(dim=-2).abs().max() < 0.1  # smoothly


def test_augment_blur_lowers_resolution_only():
    x = make_slices(2, size=32, seed=4).images
    out = augment_batch(x, torch.Generator().manual_seed(1), dataclasses.replace(NOTHING, max_blur_sigma=3.0))
    assert out.diff(dim=-1).abs().mean() < x.diff(dim=-1).abs().mean()
    torch.testing.assert_close(out.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), atol=0.02, rtol=0)


def test_augment_ghosting_copies_the_image_along_the_phase_encode_axis():
    x = torch.zeros(1, 1, 32, 32)
    x[..., 14:18, 14:18] = 1.0
    out = augment_batch(x, torch.Generator().manual_seed(0), dataclasses.replace(NOTHING, ghosting_p=1.0))
    assert out[..., :8, 14:18].max() > 0.05 or out[..., 24:, 14:18].max() > 0.05  # a ghost up or down
    assert out[..., 14:18, :8].max() < 1e-3  # nothing along the read-out axis
