"""autoencoder, dae and the diffusion methods: smoke fit, healthy-only training, selection scored as deployed,
exact resume, translation to no_tumor only (tiny data, CPU, seconds)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from baseline_data import make_slices
from harness.api import NO_TUMOR, TUMOR, FitContext, ImageSet
from harness.evaluate import example_arrays, translate_test
from harness.registry import METHODS
from harness.scoring import MAP_KINDS, TUNED
from generative import reconstruction

NAMES = ("autoencoder", "dae", "gaussian-ddpm", "anoddpm", "pddpm")
EPOCHS = 3


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from a second thread on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(name: str, **override):
    cls = METHODS.get(name)
    return cls(cls.Settings(**{**cls.profile_defaults["smoke"], "epochs": EPOCHS, **override}))


def context(out: Path, seed: int = 0, resume: bool = False) -> FitContext:
    return FitContext(device=torch.device("cpu"), seed=seed, output_dir=out, logger=logging.getLogger("test-recon"),
                      resume=resume, progress=False)


@pytest.fixture(scope="module")
def data() -> tuple[ImageSet, ImageSet]:
    return make_slices(24, size=32, seed=0), make_slices(16, size=32, seed=1)


@pytest.fixture(scope="module", params=NAMES)
def fitted(request, data, tmp_path_factory):
    method = make(request.param)
    out = tmp_path_factory.mktemp(request.param)
    method.fit(*data, context(out))
    return method, out


def weights(method) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in method.model.state_dict().items()}


def test_smoke_fit_scores_maps_and_translates_to_no_tumor_only(fitted, data):
    method, out = fitted
    assert method.supervision == "healthy_only" and method.translates_to == frozenset({NO_TUMOR})
    val = data[1]
    result = method.score(val)
    assert result.scores.shape == (16,) and np.isfinite(result.scores).all()
    assert result.maps.shape == (16, 32, 32) and result.maps.min() >= 0
    assert np.abs(result.maps[~val.brain.squeeze(1).numpy()]).max() == 0
    healthy = method.translate(val.images[:3], NO_TUMOR)
    assert healthy.shape == (3, 1, 32, 32) and healthy.min() >= 0 and healthy.max() <= 1
    with pytest.raises(ValueError, match="healthy anatomy only"):
        method.translate(val.images[:1], TUMOR)
    curves = method.training_curves()
    assert curves["epoch"] == [1, 2, 3] and all(np.isfinite(curves["train_loss"]))
    assert method.checkpoint() is not None and method.checkpoint().is_file()
    assert (out / "checkpoints" / "last.pt").is_file()


def test_records_are_the_deployed_scorers_val_aurocs(fitted, data):
    """The main row records its validation AUROC (nothing chosen from it); the tuned variant's
    selection and deployment are one code path: each recorded val AUROC is that of the scorer
    on validation, to the last bit."""
    method, _ = fitted
    val = data[1]
    main, tuned = method.selection(), method.variant_selection(TUNED)
    assert method.variants == {TUNED: "healthy_only+val_masks"}
    assert main["aggregate"] == "mean" and main["criterion"].startswith("none")
    assert main["val_auroc"] == roc_auc_score(val.labels.numpy(), method.score(val).scores)
    assert tuned["map"] in MAP_KINDS and tuned["val_pixel_auroc"] is not None
    tuned_out = method.score_variant(val, TUNED)
    assert tuned["val_auroc"] == roc_auc_score(val.labels.numpy(), tuned_out.scores)
    assert tuned_out.maps.shape == (16, 32, 32)
    assert main["image_size"] == tuned["image_size"] == 32
    assert method.healthy_version(val) is method.healthy_version(val)  # the variant reuses the reconstructions
    with pytest.raises(ValueError, match="no variant"):
        method.score_variant(val, "best")


def test_main_row_uses_no_validation_masks(data, tmp_path):
    """Wrong validation masks change what the tuned variant sees, never the main row's scores or maps."""
    train, val = data
    wrong = ImageSet(images=val.images, labels=val.labels, ids=val.ids, brain=val.brain,
                     masks=torch.flip(val.masks, dims=[-1, -2]))
    a, b = make("autoencoder", epochs=1), make("autoencoder", epochs=1)
    a.fit(train, val, context(tmp_path / "a"))
    b.fit(train, wrong, context(tmp_path / "b"))
    test = make_slices(12, size=32, seed=2)
    out_a, out_b = a.score(test), b.score(test)
    assert np.array_equal(out_a.scores, out_b.scores) and np.array_equal(out_a.maps, out_b.maps)
    assert a.selection()["val_auroc"] == b.selection()["val_auroc"]
    table_a, table_b = a.variant_selection(TUNED)["table"], b.variant_selection(TUNED)["table"]
    assert table_a["residual/pixel"] != table_b["residual/pixel"]  # the variant did read the masks


def test_runner_skips_the_tumor_direction_and_grids_show_reconstructions(fitted, data):
    method, _ = fitted
    test = data[1]
    moved = translate_test(method, test)
    assert set(moved.translated) == {NO_TUMOR} and moved.translated[NO_TUMOR].shape == moved.real[TUMOR].shape
    arrays = example_arrays(method, test, method.score(test), k=2)
    assert arrays["no_tumor_translated"].shape == arrays["no_tumor_real"].shape


def test_kill_after_an_epoch_then_resume_matches_uninterrupted(fitted, data, tmp_path, monkeypatch):
    method, _ = fitted
    name = method.name
    save = reconstruction.Checkpointer.save

    def save_then_die(self, epoch, state):
        path = save(self, epoch, state)
        if epoch == 2:
            raise KeyboardInterrupt("simulated kill")
        return path

    monkeypatch.setattr(reconstruction.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        make(name).fit(*data, context(tmp_path))
    monkeypatch.setattr(reconstruction.Checkpointer, "save", save)
    resumed = make(name)
    resumed.fit(*data, context(tmp_path, resume=True))
    want, got = weights(method), weights(resumed)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert resumed.training_curves() == method.training_curves() | {"seconds": resumed.training_curves()["seconds"]}
    assert np.array_equal(resumed.score(data[1]).scores, method.score(data[1]).scores)


def test_resume_with_other_settings_is_refused(fitted, data, tmp_path):
    method, out = fitted
    other = make(method.name, lr=0.5)
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        other.fit(*data, context(out, resume=True))


def test_trains_on_healthy_images_only(data, tmp_path):
    """Replacing every tumor image of the train split changes nothing: they are never seen."""
    train, val = data
    scrambled = ImageSet(images=torch.where(train.labels[:, None, None, None] == 1, torch.rand(train.images.shape),
                                            train.images),
                         labels=train.labels, ids=train.ids, brain=train.brain, masks=train.masks)
    a, b = make("autoencoder", epochs=1), make("autoencoder", epochs=1)
    a.fit(train, val, context(tmp_path / "a"))
    b.fit(scrambled, val, context(tmp_path / "b"))
    assert all(torch.equal(v, weights(b)[k]) for k, v in weights(a).items())
    with pytest.raises(ValueError, match="no_tumor"):
        make("autoencoder", epochs=1).fit(train.of_label(1), val, context(tmp_path / "c"))


@pytest.mark.parametrize("fitted", ["gaussian-ddpm", "anoddpm", "pddpm"], indirect=True)
def test_diffusion_reconstruction_does_not_depend_on_the_batch(fitted, data):
    method, _ = fitted
    images = data[1].images
    alone = method.translate(images[2:4], NO_TUMOR)
    batched = method.translate(images[:6], NO_TUMOR)[2:4]
    assert torch.allclose(alone, batched, atol=1e-5)
    assert method.selection()["noise_level"] <= method.settings.noise_level


@pytest.mark.parametrize("level,steps", [(250, 1), (250, 5), (30, 30), (999, 3)])
def test_ddim_chain_starts_noisy_and_ends_at_zero(level, steps):
    method = make("gaussian-ddpm", train_timesteps=1000, noise_level=level, max_train_timestep=0, inference_steps=steps)
    chain = method.chain()
    assert 0 < chain[0] <= level and chain[-1] == 0 and len(chain) >= steps
    assert chain == sorted(chain, reverse=True)


def test_settings_are_checked_and_profiles_are_valid():
    for name in NAMES:
        cls = METHODS.get(name)
        for values in cls.profile_defaults.values():
            cls.Settings(**values)
    with pytest.raises(ValidationError, match="multiple of"):
        METHODS.get("autoencoder").Settings(image_size=40, levels=4)
    with pytest.raises(ValidationError, match="noise_level"):
        METHODS.get("gaussian-ddpm").Settings(noise_level=1000)
    with pytest.raises(RuntimeError, match="fit"):
        make("dae").score(make_slices(2, size=32))
