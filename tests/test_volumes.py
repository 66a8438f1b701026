"""The ``volumes`` data source: NIfTI layouts read as axial slices with the embedded cohort's label
rule, exported cohorts that load back unchanged, several sources as one cohort, bad input skipped
with its reason, and the content-hash cache."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from volume_factory import SHAPE, brain, brats_subject, save

from harness.cli import main
from harness.config import get_profile
from harness.data import volumes as volumes_module
from harness.data.embedded import CohortSettings, load_embedded_cohort
from harness.data.export import export_volumes
from harness.data.file_audit import shortcut_audit
from harness.data.sources import data_specs, open_dataset, pick_dataset
from harness.data.splits import make_split
from harness.data.types import DatasetError
from harness.data.volume_layouts import find_cases
from harness.data.volumes import VolumeDataset, VolumeSettings
from harness.results import load_run

ALL = VolumeSettings(sequence="all")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    settings = CohortSettings(n_subjects=8, tumor_fraction=0.5, slice_size=48, slices_per_subject=8)
    return load_embedded_cohort(settings, 3, cache_dir=tmp_path_factory.mktemp("embedded"), progress=False)


def _by_subject(source) -> dict[str, list]:
    out = defaultdict(list)
    for record in source.records:
        out[record.subject].append(record)
    return {k: sorted(v, key=lambda r: r.meta["z"]) for k, v in out.items()}


@pytest.mark.parametrize("layout", ["brats", "ixi", "generic"])
def test_an_exported_cohort_loads_back_with_its_subjects_labels_and_masks(cohort, layout, tmp_path):
    written = export_volumes(cohort, layout, tmp_path / layout)
    loaded = VolumeDataset(tmp_path / layout, ALL, progress=False)
    assert not loaded.skipped
    embedded = _by_subject(cohort)
    lesion_subjects = {s for s, rs in embedded.items() if any(cohort.load_mask(r).any() for r in rs)}
    expected = {"brats": lesion_subjects, "ixi": set(embedded) - lesion_subjects, "generic": set(embedded)}[layout]
    assert set(written) == expected and expected
    got = _by_subject(loaded)
    number = {s: int(s.split("-")[1]) for s in embedded}
    name = {"brats": "BraTS2021_{:05d}", "ixi": "IXI{:03d}-Guys-{:04d}", "generic": "sub-{:03d}"}[layout]
    assert set(got) == {name.format(number[s], number[s]) for s in expected}
    for subject in expected:
        mine, theirs = embedded[subject], got[name.format(number[subject], number[subject])]
        assert [r.label for r in theirs] == [r.label for r in mine]
        assert [r.stratum for r in theirs] == [r.stratum.lower() for r in mine]  # the sequence
        for a, b in zip(mine, theirs):
            mask = loaded.load_mask(b)
            assert np.array_equal(cohort.load_mask(a), np.zeros_like(cohort.load_mask(a)) if mask is None else mask)
            image = loaded.load_image(b)
            assert image.shape == (48, 48) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1


def test_the_export_command_writes_a_layout_the_volume_source_claims(tmp_path, capsys):
    out = tmp_path / "generic"
    assert main(["data", "export", "--layout", "generic", str(out), "--profile", "smoke",
                 "--set", "cohort.n_subjects=4", "--set", "cohort.slice_size=32"]) == 0
    assert "wrote 4 subject(s)" in capsys.readouterr().out
    names = {p.name for p in (out / "sub-001").iterdir()}
    assert names & {"T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"} and all(n.endswith(".nii.gz") for n in names)
    assert pick_dataset(str(out), None) == "volumes"


def test_layouts_are_recognised_by_file_names(tmp_path):
    root = tmp_path / "mixed"
    for name in ("BraTS2021_00001/BraTS2021_00001_flair", "BraTS2021_00001/BraTS2021_00001_t2",
                 "BraTS2021_00001/BraTS2021_00001_seg", "BraTS-GLI-00002-000/BraTS-GLI-00002-000-t2w",
                 "BraTS-GLI-00002-000/BraTS-GLI-00002-000-t2f", "BraTS-GLI-00002-000/BraTS-GLI-00002-000-seg",
                 "IXI-T2/IXI002-Guys-0828-T2", "IXI-T2/IXI012-HH-1211-T2", "IXI-T1/IXI002-Guys-0828-T1",
                 "patient01/T2W", "patient01/FLAIR", "patient01/consensus_gt", "patient01/brainmask",
                 "sub-r001/anat/sub-r001_space-MNI_T1w", "sub-r001/anat/sub-r001_space-MNI_label-L_desc-T1lesion_mask",
                 "BraTS2021_00009/BraTS2021_00009_t2", "notes/readme_v2"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.nii.gz").write_bytes(b"")
    cases, skipped = find_cases(root, VolumeSettings().naming())
    found = {c.subject: c for c in cases}
    assert set(found) == {"BraTS2021_00001", "BraTS-GLI-00002-000", "IXI002-Guys-0828", "IXI012-HH-1211",
                          "patient01", "sub-r001/anat"}
    assert found["BraTS2021_00001"].layout == "brats2021" and set(found["BraTS2021_00001"].images) == {"flair", "t2"}
    assert found["BraTS-GLI-00002-000"].layout == "brats2023"
    assert set(found["BraTS-GLI-00002-000"].images) == {"t2", "flair"}
    assert found["BraTS-GLI-00002-000"].lesion.name == "BraTS-GLI-00002-000-seg.nii.gz"
    assert found["IXI002-Guys-0828"].layout == "ixi" and set(found["IXI002-Guys-0828"].images) == {"t1", "t2"}
    assert found["IXI002-Guys-0828"].lesion is None
    mslub = found["patient01"]
    assert (mslub.layout, set(mslub.images), mslub.lesion.name, mslub.brain.name) == \
        ("generic", {"t2", "flair"}, "consensus_gt.nii.gz", "brainmask.nii.gz")
    assert found["sub-r001/anat"].lesion.name.endswith("T1lesion_mask.nii.gz")
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["BraTS2021_00009"].startswith("BraTS subject without a seg file")
    assert reasons["notes/readme_v2.nii.gz"].startswith("file name names no known sequence")


def test_axial_means_the_same_whatever_the_files_orientation(tmp_path):
    image, seg = brain(1, lesion=True)
    save(tmp_path / "ras" / "sub-1" / "t2.nii.gz", image)
    save(tmp_path / "ras" / "sub-1" / "seg.nii.gz", seg)
    flipped = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS voxel axes: x and y run the other way
    flipped[:2, 3] = [SHAPE[0] - 1, SHAPE[1] - 1]
    save(tmp_path / "lps" / "sub-1" / "t2.nii.gz", image[::-1, ::-1], flipped)
    save(tmp_path / "lps" / "sub-1" / "seg.nii.gz", seg[::-1, ::-1], flipped)
    ras, lps = (VolumeDataset(tmp_path / d, progress=False) for d in ("ras", "lps"))
    assert [r.id for r in ras.records] == [r.id for r in lps.records]
    for a, b in zip(ras.records, lps.records):
        assert np.array_equal(ras.load_image(a), lps.load_image(b))
        assert np.array_equal(ras.load_mask(a), lps.load_mask(b))


def test_slice_rules_and_resampling(tmp_path):
    image, seg = brain(2, lesion=True)
    save(tmp_path / "s" / "sub-1" / "t2.nii.gz", image)
    save(tmp_path / "s" / "sub-1" / "seg.nii.gz", seg)
    every = VolumeDataset(tmp_path / "s", VolumeSettings(min_brain_fraction=0.01), progress=False)
    middle = VolumeDataset(tmp_path / "s", VolumeSettings(min_brain_fraction=0.8), progress=False)
    assert len(middle.records) < len(every.records) <= SHAPE[2]
    ranged = VolumeDataset(tmp_path / "s", VolumeSettings(slice_rule="index_range", slice_range=(6, 9)), progress=False)
    assert [r.meta["z"] for r in ranged.records] == [6, 7, 8, 9]
    coarse = VolumeDataset(tmp_path / "s", VolumeSettings(min_brain_fraction=0.01, spacing=(1.0, 1.0, 2.0)),
                           progress=False)
    assert len(coarse.records) == pytest.approx(len(every.records) / 2, abs=1)
    assert {r.id.split("/z")[0] for r in every.records} == {"sub-1/t2"}


def test_slice_labels_follow_the_embedded_rule(tmp_path):
    image, seg = brain(3, lesion=True)
    save(tmp_path / "s" / "sub-1" / "t2.nii.gz", image)
    save(tmp_path / "s" / "sub-1" / "seg.nii.gz", seg)
    data = VolumeDataset(tmp_path / "s", VolumeSettings(min_brain_fraction=0.01, min_lesion_fraction=0.05),
                         progress=False)
    brain_area = (image > 0).sum(axis=(0, 1))
    lesion_area = (seg > 0).sum(axis=(0, 1))
    expected = {z: ("no_tumor" if lesion_area[z] == 0 else "tumor" if lesion_area[z] >= 0.05 * brain_area[z] else None)
                for z in range(SHAPE[2]) if brain_area[z] >= 0.01 * brain_area.max()}
    assert {r.meta["z"]: r.label for r in data.records} == {z: lab for z, lab in expected.items() if lab}
    ambiguous = sum(lab is None for lab in expected.values())
    assert ambiguous and any(f"{ambiguous} slice(s) left out as ambiguous" in n for n in data.notices)


def test_bad_input_is_skipped_with_its_reason(tmp_path):
    root = tmp_path / "bad"
    for n in (1, 2):
        brats_subject(root, n, lesion=n == 1)
    brats_subject(root, 3, sequences=("flair",))  # no t2
    name = "BraTS2021_00004"  # a seg of another shape
    brats_subject(root, 4)
    save(root / name / f"{name}_seg.nii.gz", np.zeros((10, 10, 10), np.uint8))
    name = "BraTS2021_00005"  # a seg on another grid
    brats_subject(root, 5)
    image, seg = brain(5, lesion=True)
    save(root / name / f"{name}_seg.nii.gz", seg, np.diag([2.0, 2.0, 2.0, 1.0]))
    name = "BraTS2021_00006"  # 4D
    brats_subject(root, 6)
    save(root / name / f"{name}_t2.nii.gz", np.stack([brain(6)[0]] * 3, axis=-1))
    name = "BraTS2021_00007"  # truncated
    brats_subject(root, 7)
    data = (root / name / f"{name}_t2.nii.gz").read_bytes()
    (root / name / f"{name}_t2.nii.gz").write_bytes(data[: len(data) // 2])
    name = "BraTS2021_00008"  # all zero
    brats_subject(root, 8)
    save(root / name / f"{name}_t2.nii.gz", np.zeros(SHAPE, np.float32))
    name = "BraTS2021_00010"  # NaN voxels: zeroed and counted
    image, seg = brain(10, lesion=True)
    image[0, 0, :3] = np.nan
    save(root / name / f"{name}_t2.nii.gz", image)
    save(root / name / f"{name}_seg.nii.gz", seg)
    name = "BraTS2021_00011"  # an undocumented label: still lesion, and counted
    image, seg = brain(11, lesion=True)
    seg[seg > 0] = 7
    save(root / name / f"{name}_t2.nii.gz", image)
    save(root / name / f"{name}_seg.nii.gz", seg)

    source = VolumeDataset(root, progress=False)
    reasons = {s.path: s.reason for s in source.skipped}
    assert reasons["BraTS2021_00003"].startswith("no t2 image (has: flair)")
    assert "lesion mask BraTS2021_00004_seg.nii.gz has shape (10, 10, 10), its image (32, 36, 20)" in \
        reasons["BraTS2021_00004/BraTS2021_00004_t2.nii.gz"]
    assert "lies on another voxel grid" in reasons["BraTS2021_00005/BraTS2021_00005_t2.nii.gz"]
    assert reasons["BraTS2021_00006/BraTS2021_00006_t2.nii.gz"].startswith("4D file")
    assert reasons["BraTS2021_00007/BraTS2021_00007_t2.nii.gz"].startswith("truncated or corrupt file")
    assert reasons["BraTS2021_00008/BraTS2021_00008_t2.nii.gz"] == "all-zero volume (no signal)"
    assert len(reasons) == 6
    subjects = {r.subject for r in source.records}
    assert subjects == {"BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00010", "BraTS2021_00011"}
    assert any("1 volume(s) held non-finite voxels, read as 0 (3 voxels): BraTS2021_00010" in n for n in source.notices)
    assert any("labels their layout does not document (7)" in n and "BraTS2021_00011" in n for n in source.notices)
    assert any(r.subject == "BraTS2021_00011" and r.label == "tumor" for r in source.records)


def test_a_path_without_volumes_or_with_one_label_is_one_error_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub-1").mkdir(parents=True)
    (empty / "sub-1" / "t2.nii.gz").write_bytes(b"not a volume")
    assert main(["data", "splits", "--profile", "smoke", "--data", str(empty)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: no usable volumes under {empty.resolve()}") and "not a readable NIfTI" in line

    healthy = tmp_path / "ixi"
    for n in range(3):
        save(healthy / f"IXI{n:03d}-Guys-{n:04d}-T2.nii.gz", brain(n)[0])
    assert main(["data", "splits", "--profile", "smoke", "--data", str(healthy)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: only one label in {healthy.resolve()}: ") and "no_tumor" in line

    (tmp_path / "nothing").mkdir()
    with pytest.raises(DatasetError, match="no NIfTI volumes"):
        VolumeDataset(tmp_path / "nothing", progress=False)


def test_a_volume_that_is_not_skull_stripped_is_flagged(tmp_path):
    image, _ = brain(4)
    head = image + 20.0 + np.random.default_rng(0).random(SHAPE).astype(np.float32)  # noisy non-zero background
    save(tmp_path / "raw" / "IXI004-Guys-0004-T2.nii.gz", head)
    save(tmp_path / "raw" / "IXI005-Guys-0005-T2.nii.gz", image)
    source = VolumeDataset(tmp_path / "raw", progress=False)
    (notice,) = [n for n in source.notices if "skull-stripped" in n]
    assert notice.startswith("volumes: 1 volume(s) do not look skull-stripped") and "IXI004-Guys-0004" in notice
    assert "HD-BET" in notice
    stripped = {r.subject: r.meta["skull_stripped"] for r in source.records}
    assert stripped == {"IXI004-Guys-0004": False, "IXI005-Guys-0005": True}


def test_decoded_slices_are_cached_by_file_content(tmp_path, monkeypatch, cache):
    root = tmp_path / "b"
    brats_subject(root, 1)
    brats_subject(root, 2, lesion=False)
    first = VolumeDataset(root, progress=False)
    assert len(list((cache / "volumes").iterdir())) == 2

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    real = volumes_module.read_pair
    monkeypatch.setattr(volumes_module, "read_pair", fail)
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    second = VolumeDataset(moved, progress=False)  # same bytes elsewhere: read from the cache
    assert [(r.id, r.label, r.sha256) for r in second.records] == [(r.id, r.label, r.sha256) for r in first.records]
    assert second.notices == first.notices and second.fingerprint() == first.fingerprint()
    record = second.records[0]
    assert np.array_equal(second.load_image(record), first.load_image(first.records[0]))

    monkeypatch.setattr(volumes_module, "read_pair", real)
    image, _ = brain(99, lesion=True)
    save(moved / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz", image)  # an edited file misses the cache
    VolumeDataset(moved, progress=False)
    assert len(list((cache / "volumes").iterdir())) == 3


def test_several_sources_make_one_cohort_with_a_source_stratum(cohort, tmp_path):
    export_volumes(cohort, "brats", tmp_path / "brats")
    export_volumes(cohort, "ixi", tmp_path / "ixi")
    profile = get_profile("smoke")
    specs = data_specs([f"brats={tmp_path / 'brats'}", f"ixi={tmp_path / 'ixi'}"], None, profile)
    assert [(s.source, s.dataset) for s in specs] == [("brats", "volumes"), ("ixi", "volumes")]
    with pytest.raises(DatasetError, match="name each source"):
        data_specs([str(tmp_path / "brats"), str(tmp_path / "ixi")], None, profile)
    specs = tuple(s.model_copy(update={"settings": {**s.settings, "sequence": "all"}}) for s in specs)
    source = open_dataset(specs, 0, progress=False)
    assert {r.meta["source"] for r in source.records} == {"brats", "ixi"}
    assert all(r.id.startswith(r.meta["source"] + "/") and r.subject.startswith(r.meta["source"] + "/")
               and r.stratum.split("/")[0] == r.meta["source"] for r in source.records)
    assert {r.label for r in source.records if r.meta["source"] == "ixi"} == {"no_tumor"}
    record = next(r for r in source.records if r.label == "tumor")
    assert source.load_mask(record).any() and source.load_image(record).shape == (48, 48)
    split = make_split(source, 0, profile.split)
    where = split.manifest.groupby("subject")["split"].nunique()
    assert (where == 1).all()  # a volume's slices stay together
    per_source = split.manifest.assign(source=split.manifest["subject"].str.split("/").str[0])
    assert per_source.groupby("source")["split"].nunique().min() >= 2  # each source's subjects are spread
    audit = {f["feature"]: f for f in shortcut_audit(source.records)["features"]}
    assert audit["source=ixi"]["flagged"] and audit["source=ixi"]["auroc"] < 0.3
    assert "source=ixi" not in {f["feature"] for f in shortcut_audit(cohort.records)["features"]}


@pytest.mark.slow
def test_a_two_source_cohort_runs_every_method_and_its_eda_flags_the_source(tmp_path, capsys):
    cohort = ["--profile", "smoke", "--set", "cohort.n_subjects=8", "--set", "cohort.slice_size=32"]
    for layout in ("brats", "ixi"):
        assert main(["data", "export", "--layout", layout, str(tmp_path / layout), *cohort]) == 0
    data = ["--data", f"brats={tmp_path / 'brats'}", "--data", f"ixi={tmp_path / 'ixi'}",
            "--set", "volumes.sequence=all", "--profile", "smoke"]
    assert main(["run", "--all", *data, "--device", "cpu", "--output", str(tmp_path / "runs"), "--no-progress"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    run = load_run(folder)
    assert run["run"]["status"] == "complete"
    assert [d["source"] for d in run["run"]["config"]["data"]] == ["brats", "ixi"]
    dice = {r["method"]: r for r in run["metrics"] if r["metric"] == "volume_dice"}
    assert {"intensity", "autoencoder"} <= set(dice) and dice["intensity"]["n"] > 0
    eda = json.loads((folder / "eda" / "eda.json").read_text())
    assert set(eda["counts"]["per_source"]["ixi"]) == {"no_tumor"}
    assert "source=ixi" in eda["shortcut_audit"]["flagged"]
    capsys.readouterr()
    assert main(["data", "eda", *data, "--out", str(tmp_path / "eda")]) == 0
    assert "shortcut flag: source=ixi alone separates the labels" in capsys.readouterr().out


def test_a_grid_reads_every_named_source_as_one_cohort(cohort, tmp_path):
    from harness.cli import build_parser
    from harness.grid import cell_config, grid_cells, spec_from_args

    for layout in ("brats", "ixi"):
        export_volumes(cohort, layout, tmp_path / layout)
    args = build_parser().parse_args(["grid", "run", "--method", "intensity", "--seeds", "1", "2", "--profile", "smoke",
                                      "--data", f"brats={tmp_path / 'brats'}", "--data", f"ixi={tmp_path / 'ixi'}"])
    spec = json.loads(json.dumps(spec_from_args(args)))  # as grid.json stores it
    cells = grid_cells(spec)
    assert len(cells) == 2 and cells[0].dataset == cells[1].dataset and cells[0].key != cells[1].key
    config = cell_config(spec, cells[0])
    assert [(d.source, d.path) for d in config.data] == [("brats", str((tmp_path / "brats").resolve())),
                                                         ("ixi", str((tmp_path / "ixi").resolve()))]
