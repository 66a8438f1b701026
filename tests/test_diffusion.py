"""The diffusion methods (gaussian-ddpm, anoddpm, pddpm): simplex noise, chains, pDDPM's patches,
determinism and settings checks (tiny data and networks, CPU, seconds).

Smoke fits, resume and selection of all three run in test_reconstruction_methods.py."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from baseline_data import make_slices
from pydantic import ValidationError

from generative.pddpm import patch_grid
from generative.simplex import simplex_noise
from harness.api import FitContext
from harness.registry import METHODS, UnknownNameError

DIFFUSION = ("gaussian-ddpm", "anoddpm", "pddpm")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")


def make(name: str, profile: str = "smoke", **override):
    cls = METHODS.get(name)
    return cls(cls.Settings(**{**cls.profile_defaults.get(profile, {}), **override}))


def low_frequency_share(fields: torch.Tensor, cutoff: float = 1 / 8) -> float:
    """Share of the (mean-removed) power at spatial frequencies below ``cutoff`` cycles/px."""
    power = torch.fft.fft2(fields.squeeze(1).double()).abs().square()
    f = torch.fft.fftfreq(fields.shape[-1])
    radius = (f[:, None].square() + f[None, :].square()).sqrt()
    return float(power[:, radius < cutoff].sum() / power.sum())


# ---------------------------------------------------------------------------------------- simplex noise
def test_simplex_noise_has_more_low_frequency_power_than_white_noise_of_the_same_variance():
    g = torch.Generator().manual_seed(0)
    method = make("anoddpm", "quick")
    fields = method.draw_noise(32, 64, g)
    assert fields.shape == (32, 1, 64, 64)
    flat = fields.flatten(1).double()
    assert flat.mean(1).abs().max() < 1e-5 and (flat.std(1) - 1).abs().max() < 1e-5  # every field normalised
    white = torch.randn(fields.shape, generator=g)
    simplex_share, white_share = low_frequency_share(fields), low_frequency_share(white)
    assert white_share == pytest.approx(np.pi / 64, abs=0.02)  # white: the disc's share of the spectrum
    assert simplex_share > 0.4 > 8 * white_share  # measured: 0.55 against 0.05
    # more octaves add finer detail: the share of low frequencies falls but stays above white's
    finer = simplex_noise(32, 64, 64, g, octaves=6, frequency=16)
    assert white_share < low_frequency_share(finer) < simplex_share


def test_simplex_fields_are_a_function_of_the_generator_and_differ_between_draws():
    a = simplex_noise(3, 32, 32, torch.Generator().manual_seed(5), octaves=3, frequency=8)
    b = simplex_noise(3, 32, 32, torch.Generator().manual_seed(5), octaves=3, frequency=8)
    c = simplex_noise(3, 32, 32, torch.Generator().manual_seed(6), octaves=3, frequency=8)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    corr = torch.corrcoef(a.flatten(1))
    assert corr[~torch.eye(3, dtype=torch.bool)].abs().max() < 0.5  # the fields of one draw are not copies
    with pytest.raises(ValueError, match="persistence"):
        simplex_noise(1, 8, 8, torch.Generator(), persistence=0)


def test_training_and_start_noise_follow_the_noise_setting():
    g = torch.Generator().manual_seed(1)
    gaussian = make("gaussian-ddpm", "quick").draw_noise(16, 64, g)
    simplex = make("gaussian-ddpm", "quick", noise="simplex", simplex_frequency=16, simplex_octaves=4).draw_noise(
        16, 64, g)
    assert low_frequency_share(gaussian) < 0.1 and low_frequency_share(simplex) > 0.4


# ---------------------------------------------------------------------------------------- chains
@pytest.mark.parametrize("sampler,want", [("ddpm", list(range(25, -1, -1))), ("one_step", [25])])
def test_chain_of_each_sampler(sampler, want):
    assert make("anoddpm", sampler=sampler).chain() == want


def test_paper_profiles_are_the_papers_settings():
    ano = make("anoddpm", "paper").settings
    assert (ano.noise, ano.noise_level, ano.train_timesteps, ano.sampler, ano.prediction, ano.loss_type) == (
        "simplex", 250, 1000, "ddpm", "epsilon", "l2")
    assert (ano.simplex_octaves, ano.simplex_frequency, ano.simplex_persistence, ano.image_size) == (6, 64, 0.8, 256)
    assert make("anoddpm", "paper").chain()[0] == 250 and len(make("anoddpm", "paper").chain()) == 251
    p = make("pddpm", "paper").settings
    assert (p.noise_level, p.train_timesteps, p.sampler, p.prediction, p.loss_type, p.schedule) == (
        499, 1000, "one_step", "sample", "l1", "cosine")
    assert (p.patch_size * 2, p.channels, p.res_blocks) == (p.image_size, (128, 256, 256), 3)
    assert len(make("pddpm", "paper").patch_regions(96)) == 4


# ---------------------------------------------------------------------------------------- pDDPM patches
@pytest.mark.parametrize("size,patch,stride", [(64, 32, 32), (32, 16, 8), (30, 12, 7), (64, 64, 64), (20, 5, 1)])
def test_patch_grid_keeps_every_pixel_exactly_once_inside_its_noised_patch(size, patch, stride):
    cover = torch.zeros(size, size, dtype=torch.long)
    for (r0, r1, c0, c1), (k0, k1, j0, j1) in patch_grid(size, patch, stride):
        assert (r1 - r0, c1 - c0) == (patch, patch) and 0 <= r0 and r1 <= size and 0 <= c0 and c1 <= size
        assert r0 <= k0 < k1 <= r1 and c0 <= j0 < j1 <= c1  # the kept cell lies in the noised patch
        cover[k0:k1, j0:j1] += 1
    assert torch.equal(cover, torch.ones_like(cover))


class _Constant(torch.nn.Module):
    """Predicts the clean image as one constant per call (the call's index), and records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return torch.full_like(x, len(self.inputs) / 100)


def test_pddpm_reconstructs_every_brain_pixel_once_from_its_own_patch():
    method = make("pddpm", image_size=32, patch_size=16, patch_stride=8)
    images = make_slices(3, size=32, seed=0)
    x = images.images.float()
    model = _Constant()
    with torch.no_grad():
        out = method.reconstruct_batch(model, x)
    regions = method.patch_regions(32)
    assert len(model.inputs) == len(regions) == 16  # one one-step pass per patch
    x0 = x * 2 - 1
    for k, (noised, kept) in enumerate(regions):
        seen = model.inputs[k]
        assert torch.equal(seen[~noised.expand_as(seen)], x0[~noised.expand_as(x0)])  # context stays clean
        assert not torch.equal(seen[noised.expand_as(seen)], x0[noised.expand_as(x0)])  # the patch is noised
        want = ((k + 1) / 100 + 1) / 2
        assert torch.allclose(out[kept.expand_as(out)], torch.full_like(out[kept.expand_as(out)], want))
    brain = images.brain.bool()
    assert torch.isin(out[brain], torch.tensor([((k + 1) / 100 + 1) / 2 for k in range(16)])).all()


def test_pddpm_training_noises_one_grid_patch_and_scores_only_it():
    method = make("pddpm", image_size=32, patch_size=16)
    x = make_slices(4, size=32, seed=1).images.float()
    model = _Constant()
    loss = method.loss(model, x, torch.Generator().manual_seed(0))
    seen, x0 = model.inputs[0], x * 2 - 1
    changed = seen != x0
    grid = [torch.zeros(32, 32, dtype=torch.bool) for _ in range(4)]
    for mask, ((r0, r1, c0, c1), _) in zip(grid, patch_grid(32, 16, 16)):
        mask[r0:r1, c0:c1] = True
    for i in range(4):  # exactly one patch of the grid is noised, the rest is the clean image
        assert sum(torch.equal(changed[i, 0], mask) for mask in grid) == 1
    # the loss is the L1 error of the noised patch alone (the model predicts 0.01 everywhere)
    want = ((0.01 - x0).abs() * changed).sum() / changed.sum()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)


# ---------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name,sampler", [("anoddpm", "ddpm"), ("anoddpm", "ddim"), ("pddpm", "one_step"),
                                          ("gaussian-ddpm", "ddpm")])
def test_reconstruction_is_deterministic_per_image_for_every_sampler(name, sampler):
    """Every random draw (start noise, each ancestral step) comes from the image's own generator,
    so an image is reconstructed alike alone or in any batch, and another seed draws other noise."""
    method = make(name, sampler=sampler)
    torch.manual_seed(0)
    model = method.build().eval()
    for p in model.parameters():  # MONAI zeroes the output layer; make the network's output matter
        p.data.add_(0.05 * torch.randn(p.shape))
    x = make_slices(6, size=32, seed=2).images.float()
    method.seed = 3
    with torch.no_grad():
        batched = method.reconstruct_batch(model, x)
        alone = method.reconstruct_batch(model, x[2:4])
        method.seed = 4
        other = method.reconstruct_batch(model, x[2:4])
    assert torch.allclose(batched[2:4], alone, atol=1e-5)
    assert not torch.allclose(alone, other, atol=1e-3)


def test_fit_at_smoke_size_is_reproducible(tmp_path):
    """Two fits with one seed end with identical weights and reconstructions (anoddpm: simplex
    training noise drawn from the epoch's generator)."""
    train, val = make_slices(16, size=32, seed=0), make_slices(8, size=32, seed=1)
    fitted = []
    for run in ("a", "b"):
        method = make("anoddpm", epochs=1)
        method.fit(train, val, FitContext(device=torch.device("cpu"), seed=100, output_dir=tmp_path / run,
                                          logger=logging.getLogger("test-diffusion"), progress=False))
        fitted.append(method)
    a, b = (m.model.state_dict() for m in fitted)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(fitted[0].score(val).scores, fitted[1].score(val).scores)
    picked = fitted[0].selection()
    assert picked["noise"] == "simplex" and 0 < picked["noise_level"] == fitted[0].chain()[0] <= 25


# ---------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("name,values,message", [
    ("pddpm", {"patch_size": 80}, "patch_size 80 must be at most image_size 64"),
    ("pddpm", {"patch_size": 16, "patch_stride": 20}, "patch_stride 20 must be at most patch_size 16"),
    ("anoddpm", {"noise_level": 1000}, "noise_level 1000 must be below train_timesteps"),
    ("anoddpm", {"attention_levels": 4}, "attention_levels 4 exceeds the 3 UNet levels"),
    ("anoddpm", {"attention_heads": 3}, "attention_heads 3 must divide"),
    ("anoddpm", {"simplex_persistence": 0}, "greater than 0"),
    ("gaussian-ddpm", {"noise": "perlin"}, "gaussian"),
])
def test_settings_errors_name_the_problem(name, values, message):
    with pytest.raises(ValidationError, match=message):
        METHODS.get(name).Settings(**values)


def test_every_profile_is_valid_and_the_old_name_is_gone():
    for name in DIFFUSION:
        cls = METHODS.get(name)
        assert cls.paper and cls.departures and "\n" not in cls.departures
        for values in cls.profile_defaults.values():
            cls.Settings(**values)
    with pytest.raises(UnknownNameError):
        METHODS.get("ddpm")


def test_cli_bad_patch_setting_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "harness", "run", "--method", "pddpm", "--profile", "smoke",
                             "--set", "pddpm.patch_stride=40", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "patch_stride 40" in lines[0]
    assert not any(tmp_path.iterdir())
