"""Profiles, overrides, the method registry and the CLI's basic contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.api import Method, ScoreOutput
from harness.config import (PROFILES, DataSpec, RunConfig, apply_overrides, dataset_settings, get_profile,
                            method_settings, parse_set_option, resolve_method_settings)
from harness.registry import METHODS, Registry, UnknownNameError
from harness.settings import SettingsError


def test_profiles_exist_and_methods_own_their_per_profile_defaults():
    assert {"smoke", "quick", "paper"} <= set(PROFILES)
    assert method_settings("resnet18", "paper").image_size == 224
    assert method_settings("cyclegan", "paper").image_size == 256
    assert method_settings("cyclegan", "smoke").epochs < method_settings("cyclegan", "quick").epochs
    assert dataset_settings("mni152-lesions", "smoke").n_subjects < dataset_settings("mni152-lesions", "quick").n_subjects


def test_unknown_profile_suggests_close_name():
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        get_profile("quik")


def test_overrides_nested_and_dotted_reach_the_method_settings():
    base = get_profile("quick")
    changed = apply_overrides(base, parse_set_option(["cyclegan.epochs=3", "resnet18.lr=0.01", "cohort.n_subjects=20"]))
    resolved = resolve_method_settings(changed, ("cyclegan", "resnet18"))
    assert resolved["cyclegan"]["epochs"] == 3 and resolved["resnet18"]["lr"] == 0.01
    assert resolved["cyclegan"]["ngf"] == method_settings("cyclegan", "quick").ngf  # the rest stays
    assert changed.datasets == {"mni152-lesions": {"n_subjects": 20}} and base.datasets == {}  # original untouched
    nested = apply_overrides(base, {"cyclegan": {"epochs": 4}})
    assert resolve_method_settings(nested, ("cyclegan",))["cyclegan"]["epochs"] == 4


@pytest.mark.parametrize("item, message", [
    ("resnet18.epochs=abc", "resnet18.epochs='abc': input should be a valid integer"),
    ("resnet18.epoch=3", "unknown setting resnet18.epoch; did you mean resnet18.epochs?"),
    ("resnet18.epochs=0", "resnet18.epochs=0: input should be greater than or equal to 1"),
    ("cyclegan.upsample=nearest", "expected 'resize' | 'transpose'"),
    ("cohort.n_subjects=x", "cohort.n_subjects='x'"),
    ("resnt18.epochs=3", "Did you mean 'resnet18'"),
])
def test_bad_settings_name_the_key_and_what_was_expected(item, message):
    with pytest.raises(SettingsError) as info:
        apply_overrides(get_profile("quick"), parse_set_option([item]))
    assert message in str(info.value)


def test_unknown_key_error_lists_the_valid_keys():
    with pytest.raises(SettingsError, match="valid keys: image_size, epochs"):
        apply_overrides(get_profile("quick"), {"resnet18.epoch": 3})
    with pytest.raises(SettingsError, match="SECTION.KEY=VALUE"):
        parse_set_option(["epochs=3"])


def test_config_hash_is_stable_and_sensitive():
    data = (DataSpec(dataset="mni152-lesions", settings={"n_subjects": 12}),)
    a = RunConfig(profile=get_profile("smoke"), seed=0, data=data)
    b = RunConfig(profile=get_profile("smoke"), seed=0, data=data)
    c = RunConfig(profile=get_profile("smoke"), seed=1, data=data)
    d = RunConfig(profile=get_profile("smoke"), seed=0, data=(DataSpec(dataset="mni152-lesions", settings={"n_subjects": 8}),))
    assert a.short_hash() == b.short_hash() != c.short_hash() != d.short_hash() != a.short_hash()


def test_a_train_seed_changes_training_alone_and_leaves_ordinary_configs_as_they_were():
    data = (DataSpec(dataset="mni152-lesions", settings={"n_subjects": 12}),)
    plain = RunConfig(profile=get_profile("smoke"), seed=3, data=data)
    assert "train_seed" not in plain.to_dict() and plain.training_seed == 3  # run ids of earlier runs stand
    same = RunConfig(profile=get_profile("smoke"), seed=3, train_seed=3, data=data)
    assert same.short_hash() == plain.short_hash() and same.train_seed is None
    other = RunConfig(profile=get_profile("smoke"), seed=3, train_seed=1003, data=data)
    assert other.training_seed == 1003 and other.to_dict()["train_seed"] == 1003
    assert other.short_hash() != plain.short_hash()
    assert RunConfig.model_validate(other.to_dict()) == other  # run.json reads back
    stored = plain.to_dict()  # a run.json written before train seeds existed
    assert RunConfig.model_validate(stored).training_seed == 3


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


def test_global_registry_loads_every_builtin_method():
    from harness.registry import BUILTIN_METHOD_MODULES

    names = METHODS.names()
    assert not METHODS.load_errors, METHODS.load_errors
    assert {"resnet18", "intensity", "cyclegan"} <= set(names)
    assert len(names) >= len(BUILTIN_METHOD_MODULES)


def test_a_builtin_method_that_fails_to_import_is_recorded_not_skipped(monkeypatch):
    import harness.registry as registry

    reg: Registry = Registry("method")
    monkeypatch.setattr(registry, "METHODS", reg)
    reg.import_builtins(("harness_no_such_method_module",))
    assert "harness_no_such_method_module" in reg.load_errors
    assert "ModuleNotFoundError" in reg.load_errors["harness_no_such_method_module"]


def _method(capabilities=frozenset({"scores"}), supervision: str = "none") -> type[Method]:
    class Declared(Method):
        def fit(self, train, val, ctx):
            pass

        def score(self, images):
            return ScoreOutput(scores=images.images.mean(dim=(1, 2, 3)).numpy())

    Declared.capabilities, Declared.supervision = capabilities, supervision
    return Declared


@pytest.mark.parametrize("capabilities, supervision, message", [
    (frozenset({"scores", "map"}), "none", r"method 'typo': unknown capability 'map' \(did you mean 'maps'\?\); "
                                          r"valid capabilities: distributed, features, maps, scores, translates"),
    ("maps", "none", r"capabilities must be a set of strings, got 'maps'"),
    (frozenset({"scores"}), "healthy", r"unknown supervision 'healthy' \(did you mean 'healthy_only'\?\); "
                                      r"valid supervision values: supervised, image_labels, healthy_only, none"),
])
def test_register_method_refuses_unknown_capabilities_and_supervision(capabilities, supervision, message):
    from harness.registry import register_method

    with pytest.raises(ValueError, match=message):
        register_method("typo")(_method(capabilities, supervision))
    assert "typo" not in METHODS


def test_a_broken_entry_point_method_is_recorded_not_raised(monkeypatch):
    import harness.registry as registry

    class EntryPoint:
        def __init__(self, name, load):
            self.name, self.load = name, load

    def unimportable():
        raise ImportError("no module named 'plugin_dep'")

    good = _method(frozenset({"scores", "maps"}), "healthy_only")
    points = [EntryPoint("plugin-broken", unimportable), EntryPoint("plugin-typo", lambda: _method(frozenset({"mapz"}))),
              EntryPoint("plugin-good", lambda: good)]
    reg: Registry = Registry("method")
    monkeypatch.setattr(registry, "METHODS", reg)
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    reg.load_entry_points("harness.methods", registry.register_method)
    assert reg.names() == ["plugin-good"] and good.name == "plugin-good"
    assert "ImportError" in reg.load_errors["plugin-broken"]
    assert "unknown capability 'mapz' (did you mean 'maps'?)" in reg.load_errors["plugin-typo"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=300)


def test_cli_help_and_list():
    assert _cli("--help").returncode == 0
    listing = _cli("list")
    assert listing.returncode == 0, listing.stderr
    for word in ("Datasets:", "mni152-lesions", "Methods:", "Profiles:", "smoke", "quick", "paper",
                 "supervision: supervised", "resnet18.epochs", "cyclegan.image_size", "cohort.n_subjects",
                 "folder.tumor_folders"):
        assert word in listing.stdout
    filtered = _cli("list", "cycle*")
    assert "cyclegan.image_size" in filtered.stdout and "resnet18.epochs" not in filtered.stdout


def test_cli_bad_setting_is_one_error_line_before_any_data_is_loaded(tmp_path):
    result = _cli("run", "--all", "--set", "resnet18.epochs=abc", "--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: resnet18.epochs='abc': input should be a valid integer, unable to parse string as an "
        "integer (expected int)"]
    assert not any(tmp_path.iterdir())  # no run folder


def test_cli_unknown_method_is_one_line_error():
    result = _cli("run", "--method", "resnet19", "--profile", "smoke")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Did you mean 'resnet18'" in result.stderr
