"""CycleGAN: networks, exact resume, determinism, scoring maps, translation (tiny, CPU)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.api import NO_TUMOR, TUMOR, FitContext, ImageSet
from harness.config import method_settings
from generative.cyclegan.settings import CycleGANSettings
from harness.registry import METHODS
from harness.scoring import MAP_KINDS
from generative.cyclegan.method import CycleGANMethod
from generative.cyclegan.networks import (PatchDiscriminator, ResnetGenerator, discriminator_layers, init_weights,
                                          patch_grid, receptive_field)
from generative.cyclegan.train import CycleGANTrainer, ImagePool, LinearDecay


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from a second thread, and on a shared CPU spinning OpenMP
    threads make them many times slower; restore the setting for other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_set(n: int, size: int, seed: int) -> ImageSet:
    """Ellipse 'brains' with smooth texture; the first half carry a bright round lesion."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    images, masks, brains, labels = [], [], [], []
    for i in range(n):
        a, b = 0.7 + 0.1 * torch.rand(2, generator=g)
        brain = (xx / a) ** 2 + (yy / (b + 0.1)) ** 2 < 1
        tex = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=g), 5, 1, 2)[0, 0]
        image = brain.float() * (0.35 + 0.3 * tex)
        mask = torch.zeros(size, size, dtype=torch.bool)
        if i < n // 2:
            cx, cy = (torch.rand(2, generator=g) - 0.5) * 0.8
            r = 0.15 + 0.1 * torch.rand((), generator=g)
            mask = (((xx - cx) ** 2 + (yy - cy) ** 2) < r**2) & brain
            image = torch.where(mask, torch.full_like(image, 0.95), image)
        images.append(image)
        masks.append(mask)
        brains.append(brain)
        labels.append(int(i < n // 2))
    return ImageSet(images=torch.stack(images)[:, None], labels=torch.tensor(labels),
                    ids=[f"{seed}-{i}" for i in range(n)], brain=torch.stack(brains)[:, None],
                    masks=torch.stack(masks)[:, None])


TINY = CycleGANSettings(image_size=32, ngf=4, ndf=4, n_blocks=1, epochs=2, decay_epochs=1,
                        batch_size=4, pool_size=3, max_train_per_domain=0, sample_every=2,
                        upsample="transpose", cpu_bf16=False)


def make_ctx(tmp: Path, seed: int = 0, resume: bool = False) -> FitContext:
    return FitContext(device=torch.device("cpu"), seed=seed, profile="smoke", output_dir=tmp,
                      logger=logging.getLogger("test-cyclegan"), resume=resume, progress=False)


def generator_tensors(method: CycleGANMethod) -> dict[str, torch.Tensor]:
    assert method.trainer is not None
    return {f"{name}.{k}": v for name in ("G_AB", "G_BA")
            for k, v in getattr(method.trainer, name).state_dict().items()}


@pytest.fixture(scope="module")
def tiny_data() -> tuple[ImageSet, ImageSet]:
    return synthetic_set(32, 32, seed=1), synthetic_set(12, 32, seed=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data) -> CycleGANMethod:
    train, val = tiny_data
    method = CycleGANMethod(TINY)
    method.fit(train, val, make_ctx(tmp_path_factory.mktemp("tiny")))
    return method


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[CycleGANMethod, ImageSet, Path]:
    """The smoke profile's settings on 64 px synthetic data (the model works at 32 px)."""
    out = tmp_path_factory.mktemp("smoke")
    method = METHODS.get("cyclegan")(method_settings("cyclegan", "smoke"))
    method.fit(synthetic_set(64, 64, seed=3), synthetic_set(24, 64, seed=4), make_ctx(out))
    return method, synthetic_set(24, 64, seed=5), out


# -- networks ------------------------------------------------------------------------------

@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_generator_keeps_shape_and_range(upsample):
    g = ResnetGenerator(1, ngf=4, n_blocks=2, upsample=upsample)
    init_weights(g, torch.Generator().manual_seed(0))
    y = g(torch.rand(2, 1, 48, 48) * 2 - 1)
    assert y.shape == (2, 1, 48, 48)
    assert y.abs().max() <= 1.0
    norms = [m for m in g.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert norms and not any(m.affine for m in norms)


def test_patch_discriminator_shape_and_receptive_field():
    d = PatchDiscriminator(1, ndf=4, n_layers=3)
    assert d(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 6, 6)
    assert d(torch.zeros(2, 1, 256, 256)).shape == (2, 1, 30, 30)  # the reference 30x30 patch grid
    assert sum(isinstance(m, torch.nn.Conv2d) for m in d.modules()) == 5


def _measured_receptive_field(n_layers: int, size: int) -> int:
    """Side of the input region that one central output logit depends on (by its gradient),
    with instance norm left out: its per-image statistics would tie every logit to every pixel."""
    d = PatchDiscriminator(1, ndf=2, n_layers=n_layers)
    init_weights(d, torch.Generator().manual_seed(0))
    for i, layer in enumerate(d.model):
        if isinstance(layer, torch.nn.InstanceNorm2d):
            d.model[i] = torch.nn.Identity()
    x = torch.rand(1, 1, size, size, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(dim=1) > 0).flatten()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_receptive_field_formula_matches_the_network(n_layers):
    assert _measured_receptive_field(n_layers, 160) == receptive_field(n_layers)
    size = 96
    d = PatchDiscriminator(1, ndf=2, n_layers=n_layers)
    assert d(torch.zeros(1, 1, size, size)).shape[-1] == patch_grid(size, n_layers)


def test_discriminator_depth_follows_the_image_size():
    """The reference 70x70 PatchGAN at 256 px; smaller images get a shallower critic whose
    patches stay well inside the image (at 64 px the reference one would see all of it)."""
    assert [receptive_field(n) for n in (1, 2, 3, 4)] == [16, 34, 70, 142]
    picked = {size: receptive_field(discriminator_layers(size)) for size in (16, 32, 64, 128, 256, 512)}
    assert picked == {16: 16, 32: 16, 64: 34, 128: 70, 256: 70, 512: 70}
    assert all(rf < size for size, rf in picked.items() if size > 16)


def test_init_is_normal_002_and_seeded():
    a, b, c = (ResnetGenerator(1, ngf=8, n_blocks=2) for _ in range(3))
    init_weights(a, torch.Generator().manual_seed(7))
    init_weights(b, torch.Generator().manual_seed(7))
    init_weights(c, torch.Generator().manual_seed(8))
    weights = torch.cat([m.weight.flatten() for m in a.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.std().item() - 0.02) < 0.002 and abs(weights.mean().item()) < 0.002
    assert all(m.bias.abs().sum() == 0 for m in a.modules() if isinstance(m, torch.nn.Conv2d))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_bad_image_size_is_a_clear_error(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="multiple of 4"):
        CycleGANMethod(TINY.model_copy(update=dict(image_size=30))).fit(*tiny_data, make_ctx(tmp_path))


def test_missing_domain_is_a_clear_error(tmp_path, tiny_data):
    train, val = tiny_data
    with pytest.raises(ValueError, match="no_tumor images"):
        CycleGANMethod(TINY).fit(train.of_label(1), val, make_ctx(tmp_path))


# -- training pieces -----------------------------------------------------------------------

def test_linear_decay_schedule():
    rule = LinearDecay(epochs=3, decay_epochs=3)
    assert [rule(e) for e in range(6)] == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]


def test_image_pool_fills_then_mixes_history():
    pool = ImagePool(2)
    g = torch.Generator().manual_seed(0)
    first = pool.query(torch.zeros(2, 1, 2, 2), g)
    assert torch.equal(first, torch.zeros(2, 1, 2, 2)) and len(pool.images) == 2
    outs = torch.cat([pool.query(torch.full((1, 1, 2, 2), float(i)), g) for i in range(1, 40)])
    returned_old = sum(int(o[0, 0, 0] != i) for i, o in zip(range(1, 40), outs))
    assert 5 < returned_old < 35  # about half the queries return an older image
    assert ImagePool(0).query(torch.ones(3, 1, 2, 2), g).shape == (3, 1, 2, 2)


def test_training_writes_curves_samples_and_checkpoints(tiny_run):
    curves = tiny_run.training_curves()
    assert curves["epoch"] == [1, 2, 3]
    assert set(curves) == {"epoch", "loss_G", "loss_D", "loss_cycle", "loss_identity", "lr", "val_auroc",
                           "val_pixel_auroc", "val_auroc_residual", "val_pixel_auroc_residual", "val_auroc_tuned",
                           "val_pixel_auroc_tuned"}
    # the learning curve's last point is the main row's record and the tuned variant's selection
    assert curves["val_auroc"][-1] == tiny_run.selected["val_auroc"]
    assert curves["val_pixel_auroc"][-1] == tiny_run.selected["val_pixel_auroc"]
    assert curves["val_auroc_tuned"][-1] == tiny_run.tuned["val_auroc"]
    assert tiny_run.selection()["discriminator"] == {"d_layers": 1, "receptive_field_px": 16, "patch_grid": 14,
                                                     "image_size": 32}
    assert curves["lr"] == pytest.approx([2e-4, 2e-4, 1e-4])
    assert all(math.isfinite(v) for k in curves for v in curves[k])
    out = tiny_run.trainer.output_dir
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["epoch-002.png", "epoch-003.png"]
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3
    assert {"G_AB", "G_BA", "D_A", "D_B", "opt_G", "opt_D", "sched_G", "sched_D", "pool_A",
            "pool_B", "curves"} <= set(state["state"])
    assert len(state["state"]["pool_A"]["images"]) == TINY.pool_size


def test_learning_curve_records_the_runs_mri_fid_each_epoch(tmp_path, tiny_data):
    """With ``ctx.mri_fid`` the curve gains the FID of val translated into each domain against
    that domain's real val images, every epoch."""
    calls = []

    def fake_fid(real: torch.Tensor, generated: torch.Tensor) -> float:
        assert real.shape[1:] == generated.shape[1:] == (1, 32, 32)
        calls.append((len(real), len(generated)))
        return float(len(calls))

    ctx = make_ctx(tmp_path)
    ctx.mri_fid = fake_fid
    method = CycleGANMethod(TINY.model_copy(update=dict(epochs=1, decay_epochs=1)))
    method.fit(*tiny_data, ctx)
    curves = method.training_curves()
    assert curves["val_mri_fid_no_tumor"] == [1.0, 3.0] and curves["val_mri_fid_tumor"] == [2.0, 4.0]
    assert calls == [(6, 6)] * 4  # val: 6 healthy real vs 6 tumor translated, and the other way


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_data, tiny_run):
    again = CycleGANMethod(TINY)
    again.fit(*tiny_data, make_ctx(tmp_path / "a"))
    ref = generator_tensors(tiny_run)
    assert all(torch.equal(v, ref[k]) for k, v in generator_tensors(again).items())
    other = CycleGANMethod(TINY)
    other.fit(*tiny_data, make_ctx(tmp_path / "b", seed=1))
    assert not torch.equal(generator_tensors(other)["G_AB.model.1.weight"], ref["G_AB.model.1.weight"])


def test_kill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, tiny_data, tiny_run, monkeypatch):
    steps_per_epoch = math.ceil(16 / TINY.batch_size)
    original = CycleGANTrainer._step
    calls = {"n": 0}

    def dying_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == steps_per_epoch + 2:  # the middle of epoch 2 of 3
            raise KeyboardInterrupt("simulated kill")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CycleGANTrainer, "_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        CycleGANMethod(TINY).fit(*tiny_data, make_ctx(tmp_path))
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(CycleGANTrainer, "_step", original)

    torch.manual_seed(12345)  # a resumed process starts with unrelated global RNG state
    resumed = CycleGANMethod(TINY)
    resumed.fit(*tiny_data, make_ctx(tmp_path, resume=True))
    ref = generator_tensors(tiny_run)
    got = generator_tensors(resumed)
    assert got.keys() == ref.keys()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    assert resumed.training_curves() == tiny_run.training_curves()


def test_resume_with_other_settings_is_refused(tmp_path, tiny_data, tiny_run):
    import shutil

    shutil.copytree(tiny_run.trainer.output_dir / "checkpoints", tmp_path / "checkpoints")
    with pytest.raises(ValueError, match="different cyclegan settings.*ngf"):
        CycleGANMethod(TINY.model_copy(update=dict(ngf=8))).fit(*tiny_data, make_ctx(tmp_path, resume=True))


# -- scoring -------------------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_model_scores_maps_and_translates(smoke_run):
    method, test, out = smoke_run
    assert method.selected["aggregate"] == "mean" and "SSIM" in method.selected["map"]  # structural main row
    assert method.selected["val_auroc"] is not None
    assert method.residual["aggregate"] == "max" and method.residual["val_pixel_auroc"] is not None
    assert method.tuned["map"] in MAP_KINDS and method.tuned["val_pixel_auroc"] is not None  # val has masks
    assert method.variants == {"residual": "image_labels", "tuned": "image_labels+val_masks"}
    result = method.score(test)
    assert result.scores.shape == (24,) and np.isfinite(result.scores).all()
    assert result.maps.shape == (24, 64, 64)
    assert result.extras["translated"].shape == (24, 64, 64)
    assert np.abs(result.maps[~test.brain.squeeze(1).numpy()]).max() == 0
    for domain in (TUMOR, NO_TUMOR):
        y = method.translate(test.images[:5], domain)
        assert y.shape == (5, 1, 64, 64) and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="to_domain"):
        method.translate(test.images[:1], "healthy")
    assert (out / "samples").is_dir()


@pytest.mark.slow
def test_selection_records_the_deployed_scorers_val_auroc(smoke_run):
    """The main row records its scorer's val AUROC; the tuned variant's map and aggregate are
    chosen on maps made, upsampled and masked exactly as test images' are (the model works at
    32 px, the images are 64 px), so its recorded val AUROC is the deployed scorer's too."""
    method, _, _ = smoke_run
    val = synthetic_set(24, 64, seed=4)  # the fixture's validation set
    recorded = method.selection()  # what the runner writes into run.json (methods.cyclegan.selected)
    assert recorded["val_auroc"] == roc_auc_score(val.labels.numpy(), method.score(val).scores)
    tuned = method.variant_selection("tuned")  # methods["cyclegan+tuned"].selected
    assert tuned["val_auroc"] == roc_auc_score(val.labels.numpy(), method.score_variant(val, "tuned").scores)
    residual = method.variant_selection("residual")  # methods["cyclegan+residual"].selected
    assert residual["val_auroc"] == roc_auc_score(val.labels.numpy(), method.score_variant(val, "residual").scores)


@pytest.mark.slow
def test_identity_residual_smaller_than_tumor_to_healthy(smoke_run):
    method, test, _ = smoke_run
    brain = test.brain

    def mean_residual(label: int) -> float:
        idx = torch.nonzero(test.labels == label).flatten()
        x = test.images[idx]
        diff = (method.translate(x, NO_TUMOR) - x).abs()
        return float(diff[brain[idx]].mean())

    healthy, tumor = mean_residual(0), mean_residual(1)
    assert healthy < 0.8 * tumor, (healthy, tumor)


def test_score_before_fit_is_a_clear_error(tiny_data):
    with pytest.raises(RuntimeError, match="fit"):
        CycleGANMethod().score(tiny_data[1])
