"""EDA and shortcut audit on tiny in-memory datasets made on the fly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data.eda import add_input_audit, run_eda
from harness.data.file_audit import NO_FILE_FLAG, SHORTCUT_THRESHOLD, shortcut_audit
from harness.data.input_audit import FEATURES, axial_positions, input_audit, input_features
from harness.data.types import ImageSet, Record, SkippedFile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TOP_KEYS = {"eda_version", "dataset", "labels", "counts", "resolution", "aspect", "modes", "channels",
            "formats", "brightness", "intensity", "load_failures", "sample_ids", "skipped", "notices",
            "duplicates", "masks", "shortcut_audit", "figures"}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_NO_PROGRESS", "1")


@dataclass
class MemorySource:
    """A DataSource held in memory; images are drawn from each record's seed and size."""

    records: list[Record]
    skipped: list[SkippedFile] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    name: str = "memory"
    root: str = "<memory>"

    def fingerprint(self) -> str:
        text = "".join(f"{r.id}|{r.label}|{r.sha256}" for r in self.records)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load_image(self, record: Record) -> np.ndarray:
        if record.id in self.broken:
            raise OSError(f"image file is truncated: {record.id}")
        rng = np.random.default_rng(int(record.sha256[:8], 16))
        h, w = int(record.meta["height"]), int(record.meta["width"])
        return rng.random((h, w), dtype=np.float32) * float(record.meta["mean_brightness"]) * 2

    def load_mask(self, record: Record) -> np.ndarray | None:
        return None


def _record(i: int, label: str, **meta: object) -> Record:
    base = {"width": 32, "height": 32, "mode": "L", "channels": 1, "format": "PNG",
            "file_size": 1000 + (i * 37) % 101, "mean_brightness": 0.3 + ((i * 13) % 17) / 100}
    base.update(meta)
    rid = f"{label}/img{i:03d}.png"
    return Record(id=rid, label=label, subject=rid, sha256=hashlib.sha256(rid.encode()).hexdigest(),
                  has_mask=label == "tumor", meta=base)


def _balanced(n: int = 20) -> list[Record]:
    """Both labels draw every feature from the same alternating pattern: nothing to exploit."""
    return [_record(i, label, width=32 + 8 * (i % 2), height=32 + 8 * (i % 2),
                    format="PNG" if i % 2 else "JPEG", mode="L" if i % 2 else "RGB",
                    channels=1 if i % 2 else 3, mean_brightness=0.3 + (i % 4) / 20,
                    file_size=900 + 10 * (i % 5))
            for label in ("tumor", "no_tumor") for i in range(n)]


def _features(audit: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in audit["features"]}


@dataclass
class StandInSplit:
    """The Split contract (harness.data.splits), for running before/without the real splitter."""

    manifest: pd.DataFrame
    hash: str
    duplicate_groups: list[list[str]]
    cross_label_duplicates: list[list[str]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: g.groupby("label").size().astype(int).to_dict()
                for s, g in self.manifest.groupby("split", sort=True)}


def _stand_in_split(records: list[Record]) -> StandInSplit:
    rows = [{"path": r.id, "sha256": r.sha256, "label": r.label, "subject": r.subject,
             "split": ("train", "val", "test")[i % 3], "dup_group": ""} for i, r in enumerate(records)]
    return StandInSplit(manifest=pd.DataFrame(rows), hash="abc123",
                        duplicate_groups=[[records[0].id, records[1].id]],
                        cross_label_duplicates=[[records[0].id, records[-1].id]])


def test_width_that_predicts_the_label_is_flagged() -> None:
    records = [_record(i, "tumor", width=64) for i in range(10)]
    records += [_record(i, "no_tumor", width=32) for i in range(10)]
    audit = shortcut_audit(records)
    width = _features(audit)["width"]
    assert width["auroc"] == pytest.approx(1.0)
    assert width["strength"] == pytest.approx(1.0) and width["flagged"] is True
    assert width["by_label"]["median"] == {"no_tumor": 32.0, "tumor": 64.0}
    assert "width" in audit["flagged"] and "aspect" in audit["flagged"]
    assert audit["verdict"].startswith("2 features flagged: ")
    assert "width (AUROC 1.00)" in audit["verdict"]


def test_inverse_direction_is_flagged_too() -> None:
    records = [_record(i, "tumor", width=32) for i in range(10)]
    records += [_record(i, "no_tumor", width=64) for i in range(10)]
    width = _features(shortcut_audit(records))["width"]
    assert width["auroc"] == pytest.approx(0.0) and width["strength"] == pytest.approx(1.0)
    assert width["flagged"] is True


def test_balanced_features_are_not_flagged() -> None:
    audit = shortcut_audit(_balanced())
    assert audit["verdict"] == NO_FILE_FLAG and audit["flagged"] == []
    for entry in audit["features"]:
        assert entry["strength"] is not None and entry["strength"] < SHORTCUT_THRESHOLD, entry
    assert {"format=JPEG", "format=PNG", "mode=L", "mode=RGB"} <= set(_features(audit))


def test_categorical_format_is_one_hot() -> None:
    records = [_record(i, "tumor", format="JPEG") for i in range(8)]
    records += [_record(i, "no_tumor") for i in range(8)]
    feats = _features(shortcut_audit(records))
    assert feats["format=JPEG"]["auroc"] == pytest.approx(1.0) and feats["format=JPEG"]["flagged"]
    assert feats["format=PNG"]["auroc"] == pytest.approx(0.0) and feats["format=PNG"]["flagged"]
    assert feats["format=JPEG"]["by_label"]["share"] == {"no_tumor": 0.0, "tumor": 1.0}


def test_constant_and_missing_features() -> None:
    records = [_record(i, lab, file_size=None) for lab in ("tumor", "no_tumor") for i in range(6)]
    feats = _features(shortcut_audit(records))
    for name in ("width", "height", "aspect", "channels"):
        assert feats[name]["auroc"] == 0.5 and feats[name]["note"] == "constant"
        assert feats[name]["flagged"] is False
    assert feats["format"]["auroc"] == 0.5 and feats["format"]["note"] == "constant (all PNG)"
    assert feats["file_size"]["auroc"] is None and feats["file_size"]["note"] == "not available"


def test_partly_missing_feature_is_noted() -> None:
    records = _balanced(6)
    records[0].meta["file_size"] = None
    assert "missing for 1 images" in _features(shortcut_audit(records))["file_size"]["note"]


def test_one_label_is_not_applicable() -> None:
    audit = shortcut_audit([_record(i, "tumor") for i in range(4)])
    assert audit["verdict"].startswith("not applicable") and audit["features"] == []


def test_run_eda_writes_json_and_figures(tmp_path: Path) -> None:
    records = _balanced(12)
    source = MemorySource(
        records=records,
        skipped=[SkippedFile("no/empty.png", "zero-byte file"),
                 SkippedFile("yes/bad.jpg", "cannot decode: image file is truncated"),
                 SkippedFile("yes/bad2.jpg", "cannot decode (broken data stream)"),
                 SkippedFile("notes.txt", "not an image")],
        notices=["2 files ignored"],
    )
    split = _stand_in_split(records)
    report = run_eda(source, split, tmp_path, progress=False)

    on_disk = json.loads((tmp_path / "eda.json").read_text())
    assert on_disk == report
    assert TOP_KEYS <= set(report)
    assert report["dataset"] == {"name": "memory", "root": "<memory>", "fingerprint": source.fingerprint(),
                                 "n_images": 24, "n_skipped": 4}
    assert report["counts"]["per_label"] == {"no_tumor": 12, "tumor": 12}
    assert report["counts"]["per_split"] == split.counts()
    assert report["skipped"]["count"] == 4
    assert report["skipped"]["by_reason"] == {"cannot decode": 2, "not an image": 1, "zero-byte file": 1}
    bad = {"path": "yes/bad.jpg", "reason": "cannot decode: image file is truncated"}
    assert bad in report["skipped"]["files"]
    assert report["notices"] == ["2 files ignored"]
    assert report["duplicates"]["split_hash"] == "abc123"
    assert report["duplicates"]["n_groups"] == 1 and report["duplicates"]["n_cross_label"] == 1
    assert report["masks"] == {"n_with_mask": 12, "per_label": {"no_tumor": 0, "tumor": 12}}
    assert report["resolution"]["n_distinct"] == 2
    assert report["resolution"]["width"] == {"min": 32.0, "median": 36.0, "max": 40.0}
    assert report["formats"]["tumor"] == {"JPEG": 6, "PNG": 6}
    assert report["channels"]["no_tumor"] == {"1": 6, "3": 6}
    assert report["brightness"]["tumor"]["n"] == 12
    intensity = report["intensity"]["per_label"]["tumor"]
    assert intensity["n_images"] == 12 and len(intensity["hist"]) == len(report["intensity"]["bin_edges"]) - 1
    assert sum(intensity["hist"]) == pytest.approx(1.0)
    assert report["shortcut_audit"]["verdict"] == NO_FILE_FLAG
    assert report["input_audit"]["verdict"].startswith("not computed")  # no loaded images given

    expected = {"class_balance.png", "resolution.png", "aspect.png", "brightness.png", "intensity_hist.png",
                "samples_tumor.png", "samples_no_tumor.png", "shortcut_audit.png"}
    assert set(report["figures"]) == expected
    for name in expected:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_eda_is_deterministic(tmp_path: Path) -> None:
    records = _balanced(6)
    first = run_eda(MemorySource(records=records), None, tmp_path / "a", progress=False)
    second = run_eda(MemorySource(records=records), None, tmp_path / "b", progress=False)
    assert first == second
    for name in first["figures"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_decode_failure_is_recorded_not_raised(tmp_path: Path) -> None:
    records = _balanced(4)
    broken = {records[0].id, records[5].id}
    report = run_eda(MemorySource(records=records, broken=broken), None, tmp_path, progress=False)
    failures = {f["id"]: f["error"] for f in report["load_failures"]}
    assert set(failures) == broken
    assert all(err.startswith("OSError: image file is truncated") for err in failures.values())
    assert report["intensity"]["per_label"]["tumor"]["n_images"] == 3
    assert len(report["sample_ids"]["tumor"]) == 3 and not set(report["sample_ids"]["tumor"]) & broken
    assert (tmp_path / "samples_tumor.png").read_bytes().startswith(PNG_MAGIC)


def test_unusable_array_is_recorded(tmp_path: Path) -> None:
    class NaNSource(MemorySource):
        def load_image(self, record: Record) -> np.ndarray:
            return np.full((8, 8), np.nan, dtype=np.float32)

    report = run_eda(NaNSource(records=_balanced(2)), None, tmp_path, progress=False)
    assert len(report["load_failures"]) == 4
    assert "samples_tumor.png" not in report["figures"]
    assert report["intensity"]["per_label"]["tumor"]["hist"] is None


def test_shortcut_dataset_end_to_end(tmp_path: Path) -> None:
    """Like Kaggle sets: tumor images are larger RGB JPEGs, no_tumor small grayscale PNGs."""
    records = ([_record(i, "tumor", width=64 + i, height=60, format="JPEG", mode="RGB", channels=3)
                for i in range(10)] + [_record(i, "no_tumor") for i in range(10)])
    report = run_eda(MemorySource(records=records), None, tmp_path, progress=False)
    audit = report["shortcut_audit"]
    assert {"width", "height", "aspect", "channels", "format=JPEG", "mode=RGB"} <= set(audit["flagged"])
    assert audit["verdict"].startswith(f"{len(audit['flagged'])} features flagged: ")
    assert report["counts"]["per_split"] is None and report["duplicates"] is None
    assert report["resolution"]["per_label"]["tumor"]["width"]["min"] == 64.0


def test_empty_source_still_reports(tmp_path: Path) -> None:
    source = MemorySource(records=[], skipped=[SkippedFile("x.png", "zero-byte file")])
    report = run_eda(source, None, tmp_path, progress=False)
    assert report["dataset"]["n_images"] == 0 and report["skipped"]["count"] == 1
    assert report["shortcut_audit"]["verdict"].startswith("not applicable")
    assert report["resolution"]["width"] == {"min": None, "median": None, "max": None}
    for name in report["figures"]:
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)


def test_sample_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.data.eda as eda

    monkeypatch.setattr(eda, "INTENSITY_SAMPLE", 5)
    calls: list[str] = []

    class Counting(MemorySource):
        def load_image(self, record: Record) -> np.ndarray:
            calls.append(record.id)
            return super().load_image(record)

    report = run_eda(Counting(records=_balanced(20)), None, tmp_path, progress=False)
    assert len(calls) == 10 and len(set(calls)) == 10
    assert report["intensity"]["per_label"]["no_tumor"]["n_images"] == 5


def test_with_the_real_splitter(tmp_path: Path) -> None:
    from harness.config import SplitSettings
    from harness.data.splits import make_split

    records = _balanced(15)
    # the same file under both labels: the splitter reports it as a cross-label duplicate
    twin = records[0]
    records.append(Record(id="no_tumor/twin.png", label="no_tumor", subject="no_tumor/twin.png",
                          sha256=twin.sha256, meta=dict(twin.meta)))
    source = MemorySource(records=records)
    split = make_split(source, 0, SplitSettings())
    report = run_eda(source, split, tmp_path, progress=False)
    assert report["counts"]["per_split"] == split.counts()
    assert report["duplicates"]["split_hash"] == split.hash
    assert report["duplicates"]["cross_label"] == [sorted([twin.id, "no_tumor/twin.png"])]
    # a contradictory pair is dropped from the split, so it is not among the kept duplicate groups
    assert report["duplicates"]["n_groups"] == len(split.duplicate_groups) == 0


@pytest.mark.slow
def test_embedded_cohort_files_show_no_shortcut(tmp_path: Path) -> None:
    from harness.config import dataset_settings
    from harness.data.embedded import load_embedded_cohort

    source = load_embedded_cohort(dataset_settings("mni152-lesions", "smoke"), seed=0, cache_dir=tmp_path / "cache")
    report = run_eda(source, None, tmp_path / "eda", progress=False)
    assert report["shortcut_audit"]["verdict"] == NO_FILE_FLAG, report["shortcut_audit"]
    assert report["load_failures"] == []
    assert report["masks"]["n_with_mask"] == report["dataset"]["n_images"]


def _kaggle_like_folder(root: Path) -> None:
    """Tumor images as bigger RGB JPEGs, healthy ones as small grayscale PNGs (like public sets),
    plus a zero-byte file, a truncated JPEG and a text file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "yes").mkdir(parents=True)
    (root / "no").mkdir()
    for i in range(8):
        rgb = (rng.random((40 + i, 48, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(root / "yes" / f"Y{i}.jpg", quality=90)
        gray = (rng.random((24, 24)) * 255).astype(np.uint8)
        Image.fromarray(gray, "L").save(root / "no" / f"N{i}.png")
    (root / "no" / "empty.png").write_bytes(b"")
    (root / "yes" / "cut.jpg").write_bytes((root / "yes" / "Y0.jpg").read_bytes()[:200])
    (root / "yes" / "readme.txt").write_text("not an image")


def test_folder_dataset_shortcuts_and_skips(tmp_path: Path) -> None:
    from harness.data.folders import FolderDataset

    _kaggle_like_folder(tmp_path / "data")
    source = FolderDataset(tmp_path / "data", progress=False, workers=1)
    report = run_eda(source, None, tmp_path / "eda", progress=False)
    skipped = {f["path"]: f["reason"] for f in report["skipped"]["files"]}
    assert {"no/empty.png", "yes/cut.jpg", "yes/readme.txt"} <= set(skipped)
    assert sum(report["skipped"]["by_reason"].values()) == report["skipped"]["count"] >= 3
    assert "truncated" in skipped["yes/cut.jpg"] and "empty" in skipped["no/empty.png"]
    audit = report["shortcut_audit"]
    assert {"width", "height", "channels", "file_size"} <= set(audit["flagged"])
    assert audit["verdict"] != NO_FILE_FLAG
    assert report["formats"]["tumor"] == {"JPEG": 8} and report["modes"]["no_tumor"] == {"L": 8}
    assert report["load_failures"] == []


def test_grid_keeps_at_most_sixteen_images() -> None:
    from harness.data.eda_sample import GRID_SIZE, sample_images

    records = _balanced(20)
    sample = sample_images(MemorySource(records=records), records, 18, seed=0, progress=False)
    assert len(sample.stats["tumor"]) == 18 and len(sample.grid["tumor"]) == GRID_SIZE == 16
    assert len(set(sample.grid_ids["tumor"])) == 16
    other_seed = sample_images(MemorySource(records=records), records, 18, seed=1, progress=False)
    assert other_seed.grid_ids["tumor"] != sample.grid_ids["tumor"]


# ---------------------------------------------------------------- the input audit (what methods see)

def _imageset(labels: list[int], *, shift: float = 0.0, seed: int = 0, size: int = 32,
              prefix: str = "img") -> ImageSet:
    """Loaded-looking images: a textured disc of brain on a black background, its brain mask;
    tumor images get their in-brain intensity raised by ``shift`` (a planted cue)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    images = np.zeros((len(labels), 1, size, size), np.float32)
    for i, label in enumerate(labels):
        images[i, 0][disc] = 0.4 + 0.1 * rng.random(int(disc.sum())) + (shift if label else 0.0)
    brain = np.broadcast_to(disc, images.shape).copy()
    return ImageSet(images=torch.from_numpy(images), labels=torch.tensor(labels), brain=torch.from_numpy(brain),
                    ids=[f"{prefix}{i:03d}" for i in range(len(labels))])


def _audit_features(audit: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in audit["features"]}


def test_input_audit_flags_a_planted_intensity_cue_and_not_its_absence() -> None:
    labels = [1, 0] * 30
    planted = input_audit({"train": _imageset(labels, shift=0.05)})
    median = _audit_features(planted)["median"]
    assert median["flagged"] and median["auroc"] == pytest.approx(1.0)
    assert planted["flagged"][0] == "median" and planted["verdict"].startswith("1 input feature flagged: median")
    assert median["by_label"]["median"]["tumor"] > median["by_label"]["median"]["no_tumor"]
    clean = input_audit({"train": _imageset(labels, shift=0.0)})
    assert clean["flagged"] == [] and clean["verdict"] == "no input feature flagged"
    assert {f["feature"] for f in clean["features"]} == set(FEATURES)
    assert _audit_features(clean)["axial_position"]["note"] == "not available"  # no positions recorded


def test_input_audit_reads_axial_position_where_the_records_carry_it() -> None:
    labels = [1, 0] * 20
    images = _imageset(labels)
    positions = {i: 60.0 + 10.0 * label for i, label in zip(images.ids, labels)}  # tumor slices sit higher
    audit = input_audit({"test": images}, positions)
    assert _audit_features(audit)["axial_position"]["flagged"]
    records = [_record(0, "tumor", z=62), _record(1, "no_tumor"), _record(2, "tumor", z=float("nan"))]
    assert axial_positions(records) == {records[0].id: 62.0}


def test_input_features_measure_what_they_say() -> None:
    images = _imageset([0, 0], size=32)
    images.images[1] = images.images[1] * 0  # same brain mask, flat intensity
    images.images[1][images.brain[1]] = 0.5
    f = input_features(images)
    assert f["median"][1] == pytest.approx(0.5) and f["iqr"][1] == pytest.approx(0.0)
    assert f["sharpness"][1] == pytest.approx(0.0) and f["noise"][1] == pytest.approx(0.0)
    assert f["sharpness"][0] > 0 and f["noise"][0] > 0
    rng = np.random.default_rng(0)
    noisy = _imageset([0], size=64)
    noisy.images[0, 0] = torch.from_numpy((0.5 + rng.normal(0, 0.05, (64, 64))).astype(np.float32))
    noisy.brain[:] = True
    assert input_features(noisy)["noise"][0] == pytest.approx(0.05, rel=0.1)  # Immerkaer recovers sigma


def test_eda_json_gets_the_input_audit(tmp_path: Path) -> None:
    planted = {"train": _imageset([1, 0] * 10, shift=0.05)}
    report = run_eda(MemorySource(records=_balanced(4)), None, tmp_path, progress=False, inputs=planted)
    assert report["input_audit"]["flagged"][0] == "median"
    # a run writes the EDA first and adds the audit of its loaded splits afterwards
    added = add_input_audit(tmp_path / "eda.json", {"train": _imageset([1, 0] * 10)}, {})
    on_disk = json.loads((tmp_path / "eda.json").read_text())
    assert on_disk["input_audit"] == added and added["flagged"] == []
    assert on_disk["shortcut_audit"] == report["shortcut_audit"]  # the rest is kept


def test_shortcut_floor_chooses_its_feature_and_direction_on_validation() -> None:
    from harness.config import MetricSettings
    from harness.metrics.comparison_suite import shortcut_floor
    from harness.results import FLOOR_METHOD

    labels = [1, 0] * 20
    val = _imageset(labels, shift=-0.05, seed=1, prefix="val")  # on validation tumor is darker
    test = _imageset(labels, shift=-0.05, seed=2, prefix="test")
    positions = {i: float(k % 2) for k, i in enumerate(test.ids)}  # a perfect cue on test only
    strata = {i: "T1" if k % 4 < 2 else "T2" for k, i in enumerate(test.ids)}
    rows, scores = shortcut_floor(val, test, {}, positions, MetricSettings(bootstrap=50), seed=0, strata=strata)
    assert {r["domain"] for r in rows} == {"all", "stratum:T1", "stratum:T2"}  # beside the methods' strata
    by = {r["metric"]: r for r in rows if r["domain"] == "all"}
    assert {r["method"] for r in rows} == {FLOOR_METHOD}
    assert by["auroc"]["value"] == pytest.approx(1.0)  # lower median = tumor, learnt on validation
    assert "median, lower = tumor, chosen on validation" in by["auroc"]["note"]
    assert set(scores["split"]) == {"val", "test"} and len(scores) == len(val) + len(test)
    one_class = _imageset([0] * 6, prefix="val")
    rows, scores = shortcut_floor(one_class, test, {}, None, MetricSettings(bootstrap=50), seed=0)
    assert rows[0]["value"] is None and rows[0]["note"].startswith("not computed") and scores.empty


def test_input_audit_finds_a_cue_that_pooling_over_strata_dilutes() -> None:
    labels = [1, 0] * 30
    cued = _imageset(labels, shift=0.05, prefix="flair")  # the cue lives in one sequence only
    plain = [_imageset(labels, seed=s, prefix=p) for s, p in ((1, "t1"), (2, "t2"), (3, "t1c"))]
    sets = {"a": cued, **{f"b{k}": s for k, s in enumerate(plain)}}
    strata = {i: ("FLAIR" if i.startswith("flair") else "other") for s in sets.values() for i in s.ids}
    audit = input_audit(sets, None, strata)
    median = _audit_features(audit)["median"]
    assert median["by_stratum"]["FLAIR"]["auroc"] == pytest.approx(1.0)
    assert not median["by_stratum"]["other"]["flagged"]
    assert audit["flagged_within_stratum"][0].startswith("median in FLAIR")
    assert "within one stratum: median in FLAIR" in audit["verdict"]
