"""Profiles, overrides, the method registry and the CLI's basic contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.api import Method, ScoreOutput
from harness.config import PROFILES, RunConfig, apply_overrides, get_profile, parse_set_option
from harness.registry import METHODS, Registry, UnknownNameError


def test_profiles_exist_and_differ():
    assert {"smoke", "quick", "paper"} <= set(PROFILES)
    assert get_profile("paper").resnet18.image_size == 224
    assert get_profile("paper").cyclegan.image_size == 256
    assert get_profile("smoke").cyclegan.epochs < get_profile("quick").cyclegan.epochs


def test_unknown_profile_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        get_profile("quik")


def test_overrides_nested_and_dotted():
    base = get_profile("quick")
    changed = apply_overrides(base, parse_set_option(["cyclegan.epochs=3", "resnet18.lr=0.01"]))
    assert changed.cyclegan.epochs == 3 and changed.resnet18.lr == 0.01
    assert base.cyclegan.epochs != 3 or base.resnet18.lr != 0.01  # original untouched
    with pytest.raises(ValueError, match="unknown cyclegan setting"):
        apply_overrides(base, {"cyclegan.epochz": 1})
    with pytest.raises(ValueError, match="section.key=value"):
        parse_set_option(["epochs=3"])


def test_config_hash_is_stable_and_sensitive():
    a = RunConfig(profile=get_profile("smoke"), seed=0)
    b = RunConfig(profile=get_profile("smoke"), seed=0)
    c = RunConfig(profile=get_profile("smoke"), seed=1)
    assert a.short_hash() == b.short_hash() != c.short_hash()


def test_registry_did_you_mean_and_runtime_registration():
    reg: Registry = Registry("method")

    class Toy(Method):
        capabilities = frozenset({"scores"})

        def fit(self, train, val, ctx):
            pass

        def score(self, images):
            return ScoreOutput(scores=images.images.mean(dim=(1, 2, 3)).numpy())

    reg.register("toy-mean", Toy)
    assert reg.get("toy-mean") is Toy
    with pytest.raises(UnknownNameError, match="Did you mean 'toy-mean'"):
        reg.get("toy-maen")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("toy-mean", object)


def test_global_registry_lists_builtin_methods_without_errors():
    names = METHODS.names()
    assert not METHODS.load_errors, METHODS.load_errors
    assert isinstance(names, list)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300)


def test_cli_help_and_list():
    assert _cli("--help").returncode == 0
    listing = _cli("list")
    assert listing.returncode == 0, listing.stderr
    for word in ("Datasets:", "mni152-lesions", "Methods:", "Profiles:", "smoke", "quick", "paper"):
        assert word in listing.stdout


def test_cli_unknown_method_is_one_line_error():
    result = _cli("run", "--method", "resnet19", "--profile", "smoke")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Did you mean 'resnet18'" in result.stderr
