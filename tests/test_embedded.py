"""The embedded ``mni152-lesions`` cohort: determinism, cache, labels vs masks, 3D lesions, and
that no acquisition shortcut (brightness, brain area, axial level) gives the label away."""

from __future__ import annotations

import hashlib
import socket
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from harness.config import dataset_settings
from harness.data import anatomy
from harness.data.embedded import GENERATOR_VERSION, CohortSettings, EmbeddedCohort, load_embedded_cohort
from harness.data.types import DatasetError, Record

SMOKE = dataset_settings("mni152-lesions", "smoke")
TINY = CohortSettings(n_subjects=3, tumor_fraction=0.67, slice_size=32, slices_per_subject=4)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[EmbeddedCohort, object]:
    folder = tmp_path_factory.mktemp("cache")
    return load_embedded_cohort(SMOKE, seed=0, cache_dir=folder, progress=False), folder


def _stack(cohort: EmbeddedCohort) -> np.ndarray:
    return np.stack([cohort.load_image(r) for r in cohort.records])


def test_same_seed_same_cohort_other_seed_differs(tmp_path):
    a = load_embedded_cohort(TINY, seed=0, cache_dir=tmp_path / "a", progress=False)
    b = load_embedded_cohort(TINY, seed=0, cache_dir=tmp_path / "b", progress=False)
    c = load_embedded_cohort(TINY, seed=1, cache_dir=tmp_path / "c", progress=False)
    assert a.fingerprint() == b.fingerprint()
    assert [r.id for r in a.records] == [r.id for r in b.records]
    np.testing.assert_array_equal(_stack(a), _stack(b))
    assert a.fingerprint() != c.fingerprint()
    assert GENERATOR_VERSION in a.root and "seed=0" in a.root


def test_cache_hit_is_fast_and_identical(smoke):
    cohort, folder = smoke
    assert len(list(folder.glob("*.npz"))) == 1
    assert not list(folder.glob("*.tmp")), "a temporary file was left behind"
    start = time.perf_counter()
    again = load_embedded_cohort(SMOKE, seed=0, cache_dir=folder, progress=False)
    assert time.perf_counter() - start < 2.0
    assert again.fingerprint() == cohort.fingerprint()
    np.testing.assert_array_equal(_stack(again), _stack(cohort))
    for r in cohort.records[::7]:
        np.testing.assert_array_equal(again.load_mask(r), cohort.load_mask(r))


def test_unreadable_cache_is_regenerated_with_a_notice(tmp_path):
    first = load_embedded_cohort(TINY, seed=3, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip file")
    again = load_embedded_cohort(TINY, seed=3, cache_dir=tmp_path, progress=False)
    assert again.fingerprint() == first.fingerprint()
    assert any("unreadable" in n for n in again.notices)
    third = load_embedded_cohort(TINY, seed=3, cache_dir=tmp_path, progress=False)
    assert not any("unreadable" in n for n in third.notices)


def test_unwritable_cache_still_gives_the_cohort_with_a_notice(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cohort = load_embedded_cohort(TINY, seed=0, cache_dir=blocker, progress=False)
    assert cohort.records
    assert any("could not write cache" in n for n in cohort.notices)


def test_both_labels_and_masks_agree(smoke):
    cohort, _ = smoke
    labels = {r.label for r in cohort.records}
    assert labels == {"tumor", "no_tumor"}
    for record in cohort.records:
        mask = cohort.load_mask(record)
        assert mask.dtype == bool and mask.shape == (SMOKE.slice_size, SMOKE.slice_size)
        if record.label == "tumor":
            assert mask.sum() > 0, record.id
        else:
            assert not mask.any(), record.id


def test_every_label_group_has_subjects_for_each_split(smoke):
    cohort, _ = smoke
    tumour_subjects = {r.subject for r in cohort.records if r.label == "tumor"}
    healthy_subjects = {r.subject for r in cohort.records} - tumour_subjects
    # 60/15/25 % by subject needs at least 3 subjects of each kind to put both labels in every split.
    assert len(tumour_subjects) >= 3 and len(healthy_subjects) >= 3
    # tumour subjects also contribute lesion-free slices
    assert any(r.label == "no_tumor" and r.subject in tumour_subjects for r in cohort.records)


def test_images_are_float_in_unit_range_and_records_are_complete(smoke):
    cohort, _ = smoke
    images = _stack(cohort)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.05  # not blank
    seen = set()
    for record, image in zip(cohort.records, images):
        assert record.id not in seen
        seen.add(record.id)
        assert record.id.startswith(record.subject + "/z")
        assert record.has_mask and record.given_split is None
        stored = np.round(image * 255).astype(np.uint8)
        assert hashlib.sha256(stored.tobytes()).hexdigest() == record.sha256
        assert len(record.phash) == 16 and int(record.phash, 16) >= 0
        meta = record.meta
        assert (meta["width"], meta["height"], meta["mode"], meta["channels"]) == (64, 64, "L", 1)
        assert meta["sequence"] in {"T1", "T2", "FLAIR"}
        assert abs(meta["mean_brightness"] - float(image.mean())) < 1e-3
    assert cohort.skipped == []


def test_sequences_are_balanced_within_each_label(smoke):
    cohort, _ = smoke
    by_subject = {r.subject: r.meta["sequence"] for r in cohort.records}
    tumour_subjects = {r.subject for r in cohort.records if r.label == "tumor"}
    for group in (tumour_subjects, set(by_subject) - tumour_subjects):
        counts = [sum(by_subject[s] == seq for s in group) for seq in ("T1", "T2", "FLAIR")]
        assert max(counts) - min(counts) <= 1, counts


def test_lesions_are_consistent_across_adjacent_slices(smoke):
    cohort, _ = smoke
    by_subject: dict[str, list[Record]] = {}
    for record in cohort.records:
        if record.label == "tumor":
            by_subject.setdefault(record.subject, []).append(record)
    pairs = 0
    for records in by_subject.values():
        records.sort(key=lambda r: r.meta["z"])
        for lower, upper in zip(records, records[1:]):
            a, b = cohort.load_mask(lower), cohort.load_mask(upper)
            assert (a & b).sum() > 0, (lower.id, upper.id)
            pairs += 1
    assert pairs >= 5


def test_lesion_contrast_is_a_difficulty_dial(tmp_path):
    bright = load_embedded_cohort(TINY, seed=0, cache_dir=tmp_path, progress=False)
    faint = load_embedded_cohort(TINY.model_copy(update=dict(lesion_contrast=0.0)), seed=0,
                                 cache_dir=tmp_path, progress=False)
    assert [r.id for r in faint.records] == [r.id for r in bright.records]
    inside, outside = [], []
    for r in bright.records:
        mask = bright.load_mask(r)
        np.testing.assert_array_equal(mask, faint.load_mask(r))
        diff = np.abs(bright.load_image(r) - faint.load_image(r))
        inside.extend(diff[mask])
        outside.extend(diff[~mask])
    assert inside, "TINY should contain tumour slices"
    assert np.mean(inside) > 3 * np.mean(outside) + 0.02


def test_generation_never_touches_the_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access during generation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    anatomy.load_template.cache_clear()
    cohort = load_embedded_cohort(TINY, seed=5, cache_dir=tmp_path, progress=False)
    assert cohort.records


def test_bad_settings_give_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="tumor_fraction"):
        load_embedded_cohort(TINY.model_copy(update=dict(tumor_fraction=1.5)), seed=0, cache_dir=tmp_path)
    with pytest.raises(DatasetError, match="lesion_radius_mm"):
        load_embedded_cohort(TINY.model_copy(update=dict(lesion_radius_mm=(10.0, 5.0))), seed=0, cache_dir=tmp_path)
    with pytest.raises(DatasetError, match="seed"):
        load_embedded_cohort(TINY, seed=-1, cache_dir=tmp_path)


def test_unknown_record_is_a_clear_error(smoke):
    cohort, _ = smoke
    with pytest.raises(DatasetError, match="not part of"):
        cohort.load_image(Record(id="sub-999/z000", label="tumor", subject="sub-999", sha256=""))


@pytest.mark.slow
def test_no_brightness_area_or_level_shortcut(tmp_path):
    settings = CohortSettings(n_subjects=30, slice_size=48, slices_per_subject=12)
    cohort = load_embedded_cohort(settings, seed=0, cache_dir=tmp_path, progress=False)
    label = np.array([r.label == "tumor" for r in cohort.records])
    assert 0.25 < label.mean() < 0.75
    images = _stack(cohort)
    features = {
        "mean_brightness": np.array([r.meta["mean_brightness"] for r in cohort.records]),
        "brain_area": (images > 0.08).sum(axis=(1, 2)),
        "z": np.array([r.meta["z"] for r in cohort.records]),
    }
    for name, values in features.items():
        auroc = roc_auc_score(label, values)
        assert 0.3 <= auroc <= 0.7, f"{name} predicts the label: AUROC {auroc:.3f}"
