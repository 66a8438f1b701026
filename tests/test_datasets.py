"""The dataset registry: a source registered from this module is picked by ``--data`` and runs;
none or several sources claiming a path are one-line errors; ``--dataset`` names a source;
sources own their settings (``--set SECTION.KEY``) and old run configs stay readable."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
from pydantic import Field

import harness.registry as registry
from data_factory import make_yes_no
from harness.cli import main
from harness.config import RunConfig, apply_overrides, dataset_settings, get_profile, resolve_dataset_settings
from harness.data.sources import DatasetSettings, DatasetSource, data_specs, open_dataset, pick_dataset
from harness.data.types import DatasetError, Record, SkippedFile
from harness.registry import DATASETS, Registry, UnknownNameError, register_dataset
from harness.results import load_run
from harness.settings import SettingsError

MARKER = "toy-layout.json"


class ToySettings(DatasetSettings):
    image_size: int = Field(40, ge=16, description="load size when no method sets one")
    lesion_brightness: float = Field(0.9, gt=0.0, le=1.0)


class ToyData:
    """A layout that is only a marker file: its images are made in memory from the marker's counts."""

    name = "toy-layout"

    def __init__(self, root: Path, settings: ToySettings) -> None:
        spec = json.loads((root / MARKER).read_text())
        self.root = str(root)
        self.skipped: list[SkippedFile] = []
        self.notices = [f"toy layout with {spec['n_per_label']} images per label"]
        self._images: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}
        self.records: list[Record] = []
        yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
        brain = xx ** 2 + yy ** 2 <= 0.8
        for i in range(2 * spec["n_per_label"]):
            rng = np.random.default_rng(i)
            tumor = i % 2 == 0
            image = ((0.3 + 0.3 * rng.random((32, 32))) * brain).astype(np.float32)
            lesion = (((xx - rng.uniform(-0.3, 0.3)) ** 2 + (yy - rng.uniform(-0.3, 0.3)) ** 2 <= 0.06) & brain
                      if tumor else np.zeros_like(brain))
            image[lesion] = settings.lesion_brightness
            rid = f"case{i:02d}"
            self._images[rid], self._masks[rid] = image, lesion
            self.records.append(Record(id=rid, label="tumor" if tumor else "no_tumor", subject=f"s{i // 2}",
                                       sha256=hashlib.sha256(image.tobytes()).hexdigest(), has_mask=True,
                                       meta={"width": 32, "height": 32}))

    def fingerprint(self) -> str:
        return hashlib.sha256("".join(r.sha256 for r in self.records).encode()).hexdigest()[:16]

    def load_image(self, record: Record) -> np.ndarray:
        return self._images[record.id]

    def load_mask(self, record: Record) -> np.ndarray | None:
        return self._masks[record.id]


class ToySource(DatasetSource):
    description = "test layout: a folder with toy-layout.json"
    expects = f"a folder with {MARKER}"
    section = "toy"
    Settings = ToySettings
    profile_defaults = {"smoke": {"image_size": 36}}

    @classmethod
    def claims(cls, path: Path) -> bool:
        return (path / MARKER).is_file()

    @classmethod
    def open(cls, path, settings, seed, progress):
        return ToyData(path, settings)


@pytest.fixture
def toy_source(monkeypatch):
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    register_dataset("toy-layout")(ToySource)
    yield ToySource
    DATASETS.unregister("toy-layout")


def _layout(root: Path, n_per_label: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(json.dumps({"n_per_label": n_per_label}))
    return root


@pytest.mark.slow
def test_a_source_registered_here_is_picked_by_data_and_a_run_completes(toy_source, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data, out = _layout(tmp_path / "toy"), tmp_path / "runs"
    code = main(["run", "--data", str(data), "--method", "intensity", "--profile", "smoke", "--device", "cpu",
                 "--output", str(out), "--no-progress", "--set", "toy.lesion_brightness=0.95"])
    assert code == 0
    (folder,) = out.iterdir()
    run = load_run(folder)
    info = run["run"]
    assert info["status"] == "complete" and info["methods"]["intensity"]["status"] == "complete"
    assert info["dataset"]["name"] == "toy-layout" and info["dataset"]["n_images"] == 24
    assert info["config"]["data"] == [{"dataset": "toy-layout", "path": str(data), "source": "",
                                       "settings": {"image_size": 36, "lesion_brightness": 0.95}}]
    assert "toy layout with 12 images per label" in info["notes"]
    auroc = next(r for r in run["metrics"] if r["method"] == "intensity" and r["metric"] == "auroc"
                 and r["domain"] == "all")
    assert auroc["value"] > 0.9  # the bright lesions are there: the source's settings reached its images
    ex = np.load(folder / "examples" / "intensity.npz")
    assert ex["tumor_real"].shape[1:] == (36, 36)  # intensity sets no size: the source's smoke image_size


def test_none_or_several_claimers_are_one_line_errors_and_dataset_chooses(toy_source, tmp_path, capsys):
    plain = tmp_path / "notes"
    plain.mkdir()
    (plain / "readme.txt").write_text("no images here")
    assert main(["data", "splits", "--profile", "smoke", "--data", str(plain)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: no data source recognises {plain}")
    assert "folder: a folder of 2D images" in line and f"toy-layout: a folder with {MARKER}" in line
    assert "--dataset NAME" in line

    both = _layout(make_yes_no(tmp_path / "both", n=4))  # images in label folders and the marker
    assert main(["data", "splits", "--profile", "smoke", "--data", str(both)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"error: several data sources recognise {both}: folder, toy-layout; choose one with "
                    f"--dataset NAME")

    assert main(["data", "splits", "--profile", "smoke", "--data", str(both), "--dataset", "toy-layout"]) == 0
    assert capsys.readouterr().out.startswith(f"dataset: toy-layout ({both}), 24 images")
    assert main(["data", "splits", "--profile", "smoke", "--data", str(both), "--dataset", "folder"]) == 0
    assert capsys.readouterr().out.startswith(f"dataset: folder ({both}), 8 images")

    assert main(["data", "splits", "--data", str(both), "--dataset", "toy-layuot"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "unknown dataset 'toy-layuot'. Did you mean 'toy-layout'?" in line


def test_pick_dataset_rules(toy_source, tmp_path):
    toy = _layout(tmp_path / "toy")
    assert pick_dataset(None, None) == "mni152-lesions"  # no --data: the embedded cohort
    assert pick_dataset(str(toy), None) == "toy-layout"
    with pytest.raises(DatasetError, match="'folder' reads your files: give --data PATH"):
        pick_dataset(None, "folder")
    with pytest.raises(DatasetError, match="'mni152-lesions' makes its own data"):
        pick_dataset(str(toy), "mni152-lesions")
    with pytest.raises(DatasetError, match="does not exist; to use the data source of that name, pass --dataset"):
        pick_dataset("mni152-lesions", None)
    with pytest.raises(UnknownNameError):
        pick_dataset(str(toy), "nope")


def test_a_source_owns_its_settings_section_and_profile_defaults(toy_source, tmp_path):
    smoke = get_profile("smoke")
    assert dataset_settings("toy-layout", "smoke").image_size == 36
    assert dataset_settings("toy-layout", "quick").image_size == 40
    changed = apply_overrides(smoke, {"toy.image_size": 64, "cohort.n_subjects": 8})
    assert changed.datasets == {"toy-layout": {"image_size": 64}, "mni152-lesions": {"n_subjects": 8}}
    assert resolve_dataset_settings(changed, "toy-layout") == {"image_size": 64, "lesion_brightness": 0.9}
    with pytest.raises(SettingsError, match="unknown setting toy.image_sise; did you mean toy.image_size"):
        apply_overrides(smoke, {"toy.image_sise": 64})
    specs = data_specs(str(_layout(tmp_path / "toy", n_per_label=3)), None, changed)
    source = open_dataset(specs, seed=0, progress=False)
    assert source.name == "toy-layout" and len(source.records) == 6


def test_embedded_cohort_keeps_the_cohort_section_and_profile_sizes():
    for profile, sizes in {"smoke": (12, 64, 12), "quick": (48, 128, 24), "paper": (120, 256, 32)}.items():
        s = dataset_settings("mni152-lesions", profile)
        assert (s.n_subjects, s.slice_size, s.slices_per_subject) == sizes
    changed = apply_overrides(get_profile("smoke"), {"cohort": {"n_subjects": 8}})
    (spec,) = data_specs(None, None, changed)
    assert spec.dataset == "mni152-lesions" and spec.path is None
    assert spec.settings["n_subjects"] == 8 and spec.settings["slice_size"] == 64


def test_folder_layout_rules_are_settings(tmp_path):
    root = make_yes_no(tmp_path / "d", n=3, yes="lesion", no="clean")
    with pytest.raises(DatasetError, match="no usable images"):
        open_dataset(data_specs(str(root), None, get_profile("smoke")), 0, progress=False)
    profile = apply_overrides(get_profile("smoke"), {"folder.tumor_folders": ["Lesion"], "folder.no_tumor_folders": ["clean"]})
    source = open_dataset(data_specs(str(root), None, profile), 0, progress=False)
    assert {r.label for r in source.records if r.id.startswith("lesion/")} == {"tumor"}
    assert len(source.records) == 6
    with pytest.raises(SettingsError, match="no also in tumor_folders"):
        apply_overrides(get_profile("smoke"), {"folder.tumor_folders": ["yes", "No"]})


def test_old_run_configs_are_read_as_the_source_they_ran_on():
    profile = get_profile("smoke").model_dump(mode="json")
    profile.pop("datasets")
    cohort = {"n_subjects": 8, "tumor_fraction": 0.6, "slice_size": 64, "slices_per_subject": 12,
              "lesion_radius_mm": [8.0, 22.0], "lesion_contrast": 1.0, "min_lesion_fraction": 0.005}
    old = {"profile": {**profile, "cohort": cohort}, "seed": 0, "data": None, "methods": ["intensity"]}
    config = RunConfig.model_validate(old)
    (spec,) = config.data
    assert spec.dataset == "mni152-lesions" and spec.settings == cohort
    assert config.profile.datasets == {"mni152-lesions": {"n_subjects": 8}}
    folder = RunConfig.model_validate({**old, "data": "/data/kaggle"})
    assert folder.data[0].dataset == "folder" and folder.data[0].path == "/data/kaggle"
    assert folder.data[0].settings["image_size"] == 64  # the size it loaded at: the old cohort's slice size


def test_registration_refuses_an_unusable_source():
    class NoOpen(DatasetSource):
        pass

    class BadDefaults(ToySource):
        profile_defaults = {"smoke": {"image_sise": 3}}

    with pytest.raises(TypeError, match="does not implement open"):
        register_dataset("no-open")(NoOpen)
    with pytest.raises(ValueError, match=r"profile_defaults\['smoke'\].*image_sise"):
        register_dataset("bad-defaults")(BadDefaults)
    with pytest.raises(TypeError, match="not a harness.data.sources.DatasetSource"):
        register_dataset("not-a-source")(object)
    assert not {"no-open", "bad-defaults", "not-a-source"} & set(DATASETS.names())


class EntryPointSource(ToySource):
    section = "toy-ep"


def test_entry_point_sources_load_and_broken_ones_are_recorded(monkeypatch):
    fresh: Registry = Registry("dataset")
    monkeypatch.setattr(registry, "DATASETS", fresh)
    points = [EntryPoint("toy-ep", f"{__name__}:EntryPointSource", "harness.datasets"),
              EntryPoint("broken", "harness_no_such_module:Source", "harness.datasets")]
    monkeypatch.setattr(registry, "entry_points", lambda group: points if group == "harness.datasets" else [])
    fresh.load_entry_points("harness.datasets", registry.register_dataset)
    assert fresh.get("toy-ep") is EntryPointSource and EntryPointSource.name == "toy-ep"
    assert "ModuleNotFoundError" in fresh.load_errors["broken"]
