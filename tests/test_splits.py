"""Splits: determinism, stratification, subject grouping, de-duplication, manifests, the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from data_factory import brain_slice, make_training_testing, make_yes_no, save
from harness.config import SplitSettings
from harness.data.folders import FolderDataset
from harness.data.splits import (
    NEAR_DUPLICATE_BITS, SPLITS, make_split, near_duplicate_pairs, read_manifest,
)
from harness.data.types import DatasetError, Record, SkippedFile

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
REPO = Path(__file__).resolve().parents[1]
SETTINGS = SplitSettings()


@dataclass
class FakeSource:
    """A DataSource of records only (the splitter never decodes)."""

    records: list[Record]
    name: str = "fake"
    root: str = "memory"
    skipped: list[SkippedFile] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        return "fake"

    def load_image(self, record: Record) -> np.ndarray:
        raise AssertionError("the splitter must not decode")

    def load_mask(self, record: Record) -> None:
        return None


def random_hex(rng: np.random.Generator) -> str:
    return f"{int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2)):016x}"


def record(i: int | str, label: str, rng: np.random.Generator, subject: str | None = None,
           sha: str | None = None, phash: str | None = None, given: str | None = None) -> Record:
    rid = f"{label}/{i}"
    return Record(id=rid, label=label, subject=subject or rid, sha256=sha or hashlib.sha256(rid.encode()).hexdigest(),
                  phash=random_hex(rng) if phash is None else phash, given_split=given)


def balanced(n_tumor: int, n_healthy: int, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    return ([record(i, "tumor", rng) for i in range(n_tumor)]
            + [record(i, "no_tumor", rng) for i in range(n_healthy)])


def split_of(split, rid: str) -> str:
    return split.manifest.set_index("path").loc[rid, "split"]


def test_deterministic_and_seed_dependent() -> None:
    source = FakeSource(balanced(40, 60))
    a, b, c = make_split(source, 0, SETTINGS), make_split(source, 0, SETTINGS), make_split(source, 1, SETTINGS)
    assert a.hash == b.hash and a.manifest.equals(b.manifest)
    assert c.hash != a.hash
    shuffled = FakeSource(list(reversed(source.records)))
    assert make_split(shuffled, 0, SETTINGS).hash == a.hash  # record order does not matter


def test_stratified_proportions() -> None:
    split = make_split(FakeSource(balanced(100, 300)), 3, SETTINGS)
    counts = split.counts()
    assert sum(sum(c.values()) for c in counts.values()) == 400
    for s, frac in (("train", 0.6), ("val", 0.15), ("test", 0.25)):
        assert counts[s]["tumor"] == pytest.approx(100 * frac, abs=1)
        assert counts[s]["no_tumor"] == pytest.approx(300 * frac, abs=1)
    assert list(split.manifest["path"]) == sorted(split.manifest["path"])
    assert list(split.manifest.columns) == ["path", "sha256", "label", "subject", "split", "dup_group"]



def test_strata_are_balanced_within_each_label() -> None:
    """Eight subjects per (label, sequence): every split gets its share of each, so no split is,
    say, all-T2 among its healthy subjects."""
    rng = np.random.default_rng(7)
    records = []
    for label in ("tumor", "no_tumor"):
        for stratum in ("T1", "T2", "FLAIR"):
            for k in range(8):
                subject = f"{label}-{stratum}-{k}"
                records += [dataclasses.replace(record(f"{subject}/z{z}", label, rng, subject=subject),
                                                stratum=stratum) for z in range(6)]
    for seed in range(5):
        manifest = make_split(FakeSource(records), seed, SETTINGS).manifest
        manifest["stratum"] = manifest["subject"].str.split("-").str[1]
        subjects = manifest.groupby(["split", "label", "stratum"])["subject"].nunique()
        for s, frac in (("train", 0.6), ("val", 0.15), ("test", 0.25)):
            for label in ("tumor", "no_tumor"):
                for stratum in ("T1", "T2", "FLAIR"):
                    assert subjects.get((s, label, stratum), 0) == pytest.approx(8 * frac, abs=1), (seed, s, label, stratum)

def test_subjects_never_cross_splits_and_mixed_subjects_allowed() -> None:
    rng = np.random.default_rng(100)
    records = []
    for s in range(30):
        tumor_subject = s % 2 == 0
        for z in range(8):
            label = "tumor" if tumor_subject and 2 <= z <= 5 else "no_tumor"
            records.append(record(f"s{s}z{z}", label, rng, subject=f"sub-{s:02d}"))
    split = make_split(FakeSource(records), 0, SETTINGS)
    assert split.manifest.groupby("subject")["split"].nunique().max() == 1
    assert not split.cross_label_duplicates and len(split.manifest) == 240
    subjects = split.manifest.groupby("split")["subject"].nunique()
    assert subjects["train"] == pytest.approx(18, abs=2) and subjects["val"] >= 2


def test_exact_duplicates_stay_together_and_are_listed() -> None:
    rng = np.random.default_rng(101)
    records = balanced(20, 20, seed=1)
    for k in range(5):  # five copies of one tumor image under different names
        records.append(record(f"copy{k}", "tumor", rng, sha="ab" * 32))
    records.append(record("copyA", "no_tumor", rng, sha="cd" * 32))
    records.append(record("copyB", "no_tumor", rng, sha="cd" * 32))
    for seed in range(5):
        split = make_split(FakeSource(records), seed, SETTINGS)
        assert len({split_of(split, f"tumor/copy{k}") for k in range(5)}) == 1
        assert split_of(split, "no_tumor/copyA") == split_of(split, "no_tumor/copyB")
    assert split.duplicate_groups == [["no_tumor/copyA", "no_tumor/copyB"],
                                      [f"tumor/copy{k}" for k in range(5)]]
    m = split.manifest.set_index("path")
    assert m.loc["tumor/copy0", "dup_group"] == m.loc["tumor/copy4", "dup_group"] == 1
    assert m.loc["tumor/0", "dup_group"] == -1


def test_near_duplicates_grouped_by_phash_distance() -> None:
    rng = np.random.default_rng(102)
    records = balanced(20, 20, seed=2)
    base = int(records[0].phash, 16)
    near = f"{base ^ 0b1011:016x}"  # 3 bits away
    far = f"{base ^ (0b11111 << 8):016x}"  # 5 bits away (8 from near)
    records.append(record("near", "tumor", rng, phash=near))
    records.append(record("far", "tumor", rng, phash=far))
    split = make_split(FakeSource(records), 0, SETTINGS)
    assert [records[0].id, "tumor/near"] in split.duplicate_groups
    assert not any("tumor/far" in g for g in split.duplicate_groups)


def test_cross_label_duplicates_reported_and_excluded() -> None:
    rng = np.random.default_rng(103)
    records = balanced(15, 15, seed=3)
    records.append(record("same", "tumor", rng, sha="ee" * 32))
    records.append(record("same", "no_tumor", rng, sha="ee" * 32))
    split = make_split(FakeSource(records), 0, SETTINGS)
    assert split.cross_label_duplicates == [["no_tumor/same", "tumor/same"]]
    assert split.n_excluded == 2 and len(split.manifest) == 30
    assert "tumor/same" not in set(split.manifest["path"])


def test_near_cross_label_kept_together_but_same_image_excluded() -> None:
    rng = np.random.default_rng(108)
    records = balanced(20, 20, seed=8)
    base = int(records[0].phash, 16)  # tumor/0
    records.append(record("lookalike", "no_tumor", rng, phash=f"{base ^ 0b1111:016x}"))  # 4 bits
    records.append(record("reencoded", "no_tumor", rng, phash=f"{int(records[1].phash, 16) ^ 0b1:016x}"))
    split = make_split(FakeSource(records), 0, SETTINGS)
    assert split.cross_label_duplicates == [["no_tumor/reencoded", "tumor/1"]]
    assert split.mixed_label_near_duplicates == [["no_tumor/lookalike", "tumor/0"]]
    assert split_of(split, "no_tumor/lookalike") == split_of(split, "tumor/0")
    assert "tumor/1" not in set(split.manifest["path"])


def test_given_test_split_is_kept() -> None:
    rng = np.random.default_rng(104)
    records = balanced(30, 30, seed=4)
    records += [record(f"t{i}", lab, rng, given="test") for i in range(5) for lab in ("tumor", "no_tumor")]
    split = make_split(FakeSource(records), 0, SETTINGS)
    test_ids = set(split.ids("test"))
    assert test_ids == {r.id for r in records if r.given_split == "test"}
    assert split.counts()["train"]["tumor"] == 24 and split.counts()["val"]["tumor"] == 6


def test_duplicate_of_a_test_image_is_pulled_into_test() -> None:
    rng = np.random.default_rng(105)
    records = balanced(20, 20, seed=5)
    records += [record(f"t{i}", lab, rng, given="test") for i in range(3) for lab in ("tumor", "no_tumor")]
    records.append(record("leak", "tumor", rng, sha=records[-2].sha256))  # a copy of test image t2
    split = make_split(FakeSource(records), 0, SETTINGS)
    assert split_of(split, "tumor/leak") == "test"


def test_too_few_groups_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match=r"the (val|test) split would have no tumor images \(too few"):
        make_split(FakeSource(balanced(2, 20)), 0, SETTINGS)
    rng = np.random.default_rng(106)
    records = balanced(10, 10) + [record("t", "tumor", rng, given="test")]
    with pytest.raises(DatasetError, match="Testing/ folder has no no_tumor images"):
        make_split(FakeSource(records), 0, SETTINGS)
    three = balanced(3, 3)  # exactly one group per split and label still works
    assert all(min(c.values()) == 1 for c in make_split(FakeSource(three), 0, SETTINGS).counts().values())


def test_bad_fractions() -> None:
    from harness.config import apply_overrides, get_profile
    from harness.settings import SettingsError

    with pytest.raises(SettingsError, match=r"split\.test=0\.0: input should be greater than 0"):
        apply_overrides(get_profile("smoke"), {"split.test": 0.0})
    with pytest.raises(ValueError, match="positive"):  # settings built without validation still fail
        make_split(FakeSource(balanced(10, 10)), 0, SplitSettings.model_construct(train=0.8, val=0.2, test=0.0))


def test_near_duplicate_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(107)
    base = [random_hex(rng) for _ in range(300)]
    hashes = base + [f"{int(h, 16) ^ (1 << int(rng.integers(0, 64))):016x}" for h in base[:200]]
    a, b, bits = near_duplicate_pairs(hashes, NEAR_DUPLICATE_BITS)
    ints = [int(h, 16) for h in hashes]
    expected = {(i, j) for i in range(len(ints)) for j in range(i + 1, len(ints))
                if bin(ints[i] ^ ints[j]).count("1") <= NEAR_DUPLICATE_BITS}
    assert set(zip(a.tolist(), b.tolist())) == expected and len(expected) >= 200
    assert all(bin(ints[i] ^ ints[j]).count("1") == d for i, j, d in zip(a.tolist(), b.tolist(), bits.tolist()))


def test_manifest_round_trip_and_hash(tmp_path: Path) -> None:
    split = make_split(FakeSource(balanced(10, 10)), 0, SETTINGS)
    path = split.write_manifest(tmp_path / "sub" / "split.csv")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest()[:16] == split.hash and b"\r" not in data
    assert read_manifest(path).equals(split.manifest)
    assert sorted(split.ids("train") + split.ids("val") + split.ids("test")) == sorted(split.manifest["path"])
    with pytest.raises(ValueError, match="unknown split"):
        split.ids("training")


def test_folder_dataset_with_duplicates_end_to_end(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "d", n=10)
    same = brain_slice(777, tumor=True)
    save(root / "yes" / "dupA.png", same)
    save(root / "yes" / "sub" / "dupB.png", same)
    save(root / "yes" / "both.png", brain_slice(778))
    save(root / "no" / "both.png", brain_slice(778))
    split = make_split(FolderDataset(root, progress=False), 0, SETTINGS)
    assert split.cross_label_duplicates == [["no/both.png", "yes/both.png"]]
    assert ["yes/dupA.png", "yes/sub/dupB.png"] in split.duplicate_groups
    assert split_of(split, "yes/dupA.png") == split_of(split, "yes/sub/dupB.png")
    assert set(split.manifest["split"]) == set(SPLITS)


def test_training_testing_folders_end_to_end(tmp_path: Path) -> None:
    root = make_training_testing(tmp_path / "nick", n_train=5, n_test=2)
    split = make_split(FolderDataset(root, progress=False), 0, SETTINGS)
    assert all(p.startswith("Testing/") for p in split.ids("test")) and len(split.ids("test")) == 8


# -- the command line ------------------------------------------------------------------------

def cli_processes(*argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """Run ``python -m harness data splits ARGS`` for each argv, concurrently (separate processes,
    so a hash that depended on PYTHONHASHSEED or memory addresses would differ)."""
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "data", "splits", *argv], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    results = []
    for p, argv in zip(procs, argvs):
        out, err = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(argv, p.returncode, out, err))
    return results


def cli_main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    from harness.cli import main

    code = main(["data", "splits", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def hash_line(out: str) -> str:
    (line,) = [ln for ln in out.splitlines() if ln.startswith("split hash: ")]
    return line.split(": ")[1]


@pytest.mark.slow
def test_cli_hash_is_reproducible_across_processes(tmp_path: Path) -> None:
    root = str(make_yes_no(tmp_path / "cli", n=6))
    first, second, other = cli_processes(["--data", root], ["--data", root], ["--data", root, "--seed", "1"])
    assert first.returncode == 0, first.stderr
    assert hash_line(first.stdout) == hash_line(second.stdout) != hash_line(other.stdout)


def test_cli_out_set_and_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = str(make_yes_no(tmp_path / "cli", n=6))
    code, out, _ = cli_main(capsys, "--data", root)
    assert code == 0 and "duplicate groups: 0" in out and "skipped files: 0" in out
    assert "subjects" not in out  # every image is its own subject: no subject table
    manifest = tmp_path / "m.csv"
    code, out2, _ = cli_main(capsys, "--data", root, "--out", str(manifest), "--set", "split.val=0.3")
    assert code == 0 and hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] == hash_line(out2)
    assert hash_line(out2) != hash_line(out)
    toml = tmp_path / "c.toml"
    toml.write_text("[split]\nval = 0.3\n")
    code, out3, _ = cli_main(capsys, "--data", root, "--config", str(toml))
    assert code == 0 and hash_line(out3) == hash_line(out2)


@pytest.mark.parametrize("make", ["missing", "empty", "one_label", "bad_set"])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, make: str) -> None:
    root = tmp_path / make
    extra: list[str] = []
    if make == "empty":
        root.mkdir()
    else:
        for i in range(3):
            save(root / "yes" / f"{i}.png", brain_slice(i, tumor=True))
        if make == "bad_set":
            save(root / "no" / "n.png", brain_slice(9))
            extra = ["--set", "split.nope=1"]
    code, out, err = cli_main(capsys, "--data", str(root), *extra)
    assert code == 2 and "split hash" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


@pytest.mark.slow
def test_cli_embedded_smoke_is_reproducible() -> None:
    pytest.importorskip("harness.data.embedded")
    first, second = cli_processes(["--profile", "smoke"], ["--profile", "smoke"])
    assert first.returncode == 0, first.stderr
    assert "mni152-lesions" in first.stdout
    assert hash_line(first.stdout) == hash_line(second.stdout)
    # subjects per split, with and without tumor, and per sequence (the cohort's strata)
    lines = first.stdout.splitlines()
    header = next(ln for ln in lines if ln.startswith("subjects"))
    assert header.split()[-3:] == ["FLAIR", "T1", "T2"]
    rows = {ln.split()[0]: [int(v) for v in ln.split()[1:]] for ln in lines[lines.index(header) + 1:][:3]}
    assert set(rows) == set(SPLITS) and sum(r[0] + r[1] for r in rows.values()) == 12  # smoke: 12 subjects
    assert all(r[0] + r[1] == sum(r[2:]) for r in rows.values())


@pytest.mark.slow
def test_eda_command_reports_shortcut_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("harness.data.eda")
    from harness.cli import main

    root = tmp_path / "shortcut"
    for i in range(8):  # tumor images all RGB JPEG, healthy all grayscale PNG: a format shortcut
        save(root / "yes" / f"{i}.jpg", np.stack([brain_slice(i, tumor=True)] * 3, -1))
        save(root / "no" / f"{i}.png", brain_slice(100 + i))
    out = tmp_path / "eda"
    assert main(["data", "eda", "--data", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "eda.json").exists() and f"EDA written to {out}" in printed
    assert "shortcut flag: format" in printed
