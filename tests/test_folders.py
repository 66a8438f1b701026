"""Folder datasets and image decoding: Kaggle layouts, label aliases, every kind of bad file."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_factory import brain_slice, make_training_testing, make_yes_no, save
from harness.data import imageio
from harness.data.folders import FolderDataset, FolderSettings, label_of
from harness.data.imageio import DecodeError, decode_bytes, decode_file
from harness.data.types import DatasetError

os.environ.setdefault("HARNESS_NO_PROGRESS", "1")


def scan(root: Path) -> FolderDataset:
    return FolderDataset(root, progress=False, workers=2)


def skipped(ds: FolderDataset) -> dict[str, str]:
    return {s.path: s.reason for s in ds.skipped}


# -- layouts ---------------------------------------------------------------------------------

def test_yes_no_layout_with_mixed_sizes_and_modes(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "chak", n=4)
    save(root / "yes" / "rgb.jpg", np.stack([brain_slice(91, 50, 70, tumor=True)] * 3, -1))
    save(root / "yes" / "rgba.png", brain_slice(92, 80, 60, tumor=True), mode="RGBA")
    save(root / "no" / "pal.png", brain_slice(93, 40, 40), mode="P")
    save(root / "no" / "la.png", brain_slice(94), mode="LA")
    ds = scan(root)
    assert len(ds.records) == 12 and not ds.skipped
    by_id = {r.id: r for r in ds.records}
    assert by_id["yes/rgb.jpg"].label == "tumor" and by_id["no/pal.png"].label == "no_tumor"
    assert by_id["yes/rgb.jpg"].meta["channels"] == 3 and by_id["yes/rgb.jpg"].meta["format"] == "JPEG"
    assert (by_id["yes/rgba.png"].meta["width"], by_id["yes/rgba.png"].meta["height"]) == (60, 80)
    assert by_id["no/pal.png"].meta["mode"] == "P"
    for r in ds.records:
        img = ds.load_image(r)
        assert img.dtype == np.float32 and img.ndim == 2 and 0 <= img.min() and img.max() <= 1
        assert len(r.sha256) == 64 and len(r.phash) == 16 and r.subject == r.id
        assert r.given_split is None and not r.has_mask
    assert ds.fingerprint() == scan(root).fingerprint()


def test_training_testing_layout_keeps_testing(tmp_path: Path) -> None:
    root = make_training_testing(tmp_path / "nick")
    ds = scan(root)
    assert len(ds.records) == 24
    for r in ds.records:
        assert r.label == ("no_tumor" if "/notumor/" in r.id else "tumor")
        assert r.given_split == ("test" if r.id.startswith("Testing/") else None)


def test_br35h_pred_folder_is_ignored_with_notice(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "br35h", n=3)
    for i in range(2):
        save(root / "pred" / f"pred{i}.jpg", brain_slice(300 + i))
    ds = scan(root)
    assert len(ds.records) == 6 and not ds.skipped
    assert any("pred/" in n and "2 files" in n for n in ds.notices)


@pytest.mark.parametrize("name,label", [
    ("yes", "tumor"), ("YES", "tumor"), ("Tumour", "tumor"), ("glioma_tumor", "tumor"),
    ("Pituitary", "tumor"), ("no tumor", "no_tumor"), ("no-tumor", "no_tumor"),
    ("No_Tumor", "no_tumor"), ("notumor", "no_tumor"), ("Healthy", "no_tumor"), ("normal", "no_tumor"),
    ("images", None), ("pred", None),
])
def test_label_aliases(name: str, label: str | None) -> None:
    assert label_of(("data", name), FolderSettings().label_table()) == label


def test_nearest_label_folder_wins(tmp_path: Path) -> None:
    assert label_of(("no", "yes", "sub"), FolderSettings().label_table()) == "tumor"
    root = tmp_path / "nested"
    save(root / "Yes" / "scan 1" / "a.png", brain_slice(1, tumor=True))
    save(root / "No Tumor" / "b.png", brain_slice(2))
    ds = scan(root)
    assert {r.id: r.label for r in ds.records} == {"Yes/scan 1/a.png": "tumor", "No Tumor/b.png": "no_tumor"}


def test_non_ascii_names(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "uni", n=1)
    save(root / "yes" / "tümör_β.png", brain_slice(7, tumor=True))
    save(root / "Normal" / "Ö scans" / "正常.png", brain_slice(8))
    ds = scan(root)
    ids = {r.id: r for r in ds.records}
    assert "yes/tümör_β.png" in ids and ids["Normal/Ö scans/正常.png"].label == "no_tumor"
    assert ds.load_image(ids["yes/tümör_β.png"]).shape == (64, 64)


# -- bad input -------------------------------------------------------------------------------

def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "bad", n=3)
    (root / "no" / "empty.png").write_bytes(b"")
    (root / "no" / "text.png").write_text("not an image at all")
    (root / "no" / "notes.txt").write_text("hello")
    good_png = (root / "yes" / "Y0.png").read_bytes()
    (root / "yes" / "trunc.png").write_bytes(good_png[: len(good_png) // 2])
    buf = io.BytesIO()
    Image.fromarray(brain_slice(5, 128, 128)).save(buf, format="JPEG", quality=95)
    (root / "yes" / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    save(root / "misc" / "x.png", brain_slice(6))
    for hidden in (".DS_Store", "Thumbs.db", "desktop.ini", "._Y0.png"):
        (root / "yes" / hidden).write_bytes(b"\x00\x05junk")
    save(root / ".hidden_dir" / "yes" / "h.png", brain_slice(7))
    ds = scan(root)
    reasons = skipped(ds)
    assert reasons["no/empty.png"] == "empty file (0 bytes)"
    assert reasons["no/text.png"].startswith("not a recognised image")
    assert reasons["no/notes.txt"] == "not an image file (.txt)"
    assert reasons["yes/trunc.png"].startswith(("truncated", "corrupt"))
    assert reasons["yes/trunc.jpg"].startswith("truncated")
    assert reasons["misc/x.png"].startswith("no label folder")
    assert not any("DS_Store" in p or "Thumbs" in p or "._" in p or "hidden" in p for p in reasons)
    assert any("hidden or system" in n and n.split()[1] == "5" for n in ds.notices)
    assert len(ds.records) == 6


def test_nonexistent_and_file_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan(tmp_path / "nope")
    f = tmp_path / "file.png"
    save(f, brain_slice(1))
    with pytest.raises(DatasetError, match="not a directory"):
        scan(f)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no usable images.*0 file"):
        scan(tmp_path / "empty")


def test_unknown_folder_names_say_why(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "unk", n=2, yes="cats", no="dogs")
    with pytest.raises(DatasetError, match=r"no usable images.*4 file\(s\) skipped.*no label folder \(4\)"):
        scan(root)


def test_only_one_label(tmp_path: Path) -> None:
    root = tmp_path / "one"
    for i in range(3):
        save(root / "glioma" / f"{i}.png", brain_slice(i, tumor=True))
    with pytest.raises(DatasetError, match=r"only one label found \('tumor', from folder\(s\) glioma\).*no/"):
        scan(root)


def test_dicom_without_pydicom_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if it were not installed
    root = make_yes_no(tmp_path / "dcm", n=2)
    (root / "yes" / "scan.dcm").write_bytes(b"\x00" * 200)
    assert skipped(scan(root))["yes/scan.dcm"].startswith("pydicom not installed")


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0) -> Path:
    """A minimal, valid MR DICOM file of uint16 ``pixels`` ((H, W) or (frames, H, W)), written
    with pydicom as a scanner export would be."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_slices_decode_with_rescale_and_photometry(tmp_path: Path) -> None:
    pixels = brain_slice(7, 48, 40).astype(np.uint16) * 16  # 12-bit values, as MR stores them
    expected = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    plain = decode_file(write_dicom(tmp_path / "a.dcm", pixels, slope=2.0, intercept=-100.0))
    np.testing.assert_allclose(plain.image, expected, atol=1e-6)  # a linear rescale min-maxes away
    assert plain.meta["format"] == "DICOM" and (plain.meta["width"], plain.meta["height"]) == (40, 48)
    inverted = decode_file(write_dicom(tmp_path / "b.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inverted.image, 1.0 - expected, atol=1e-6)
    frames = np.stack([pixels // 4, pixels, pixels // 2])
    np.testing.assert_allclose(decode_file(write_dicom(tmp_path / "c.dcm", frames)).image, expected, atol=1e-6)


def test_dicom_folder_scans_and_corrupt_dicom_is_skipped(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "dcm", n=2)
    write_dicom(root / "yes" / "scan.dcm", brain_slice(3, tumor=True).astype(np.uint16) * 16)
    (root / "no" / "broken.dcm").write_bytes(b"DICM" + b"\x01" * 300)
    ds = scan(root)
    assert "yes/scan.dcm" in {r.id for r in ds.records}
    assert skipped(ds)["no/broken.dcm"].startswith("corrupt or unsupported DICOM")


# -- decoding --------------------------------------------------------------------------------

def png_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_sixteen_bit_png_scaled_by_dtype_range() -> None:
    arr = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    image, meta = decode_bytes(png_bytes(Image.fromarray(arr)))
    assert meta["mode"] == "I;16"
    np.testing.assert_allclose(image, arr / 65535, atol=1e-6)


def test_int_and_float_tiffs() -> None:
    ints = np.array([[0, 40000]], dtype=np.int32)
    image, _ = decode_bytes(png_bytes(Image.fromarray(ints, mode="I"), "TIFF"))
    np.testing.assert_allclose(image, ints / 65535, atol=1e-6)
    floats = np.array([[-2.0, 0.0, 6.0]], dtype=np.float32)
    image, meta = decode_bytes(png_bytes(Image.fromarray(floats, mode="F"), "TIFF"))
    assert meta["mode"] == "F"
    np.testing.assert_allclose(image, [[0.0, 0.25, 1.0]], atol=1e-6)


def test_alpha_composited_on_black() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[0, 0, 3] = 255  # opaque white; the rest transparent white
    image, meta = decode_bytes(png_bytes(Image.fromarray(rgba, mode="RGBA")))
    assert meta["channels"] == 4
    np.testing.assert_allclose(image, [[1, 0], [0, 0]], atol=1e-6)
    la = np.array([[[200, 255], [200, 0]]], dtype=np.uint8)
    image, _ = decode_bytes(png_bytes(Image.fromarray(la, mode="LA")))
    np.testing.assert_allclose(image, [[200 / 255, 0]], atol=1e-6)


def test_palette_with_transparency() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0
    image, _ = decode_bytes(png_bytes(im))
    np.testing.assert_allclose(image, [[1.0, 1.0]], atol=1e-6)
    im.info["transparency"] = 1  # white made transparent -> composited on black
    image, _ = decode_bytes(png_bytes(im))
    np.testing.assert_allclose(image, [[0.0, 0.0]], atol=1e-6)


def test_cmyk_jpeg_to_luminance() -> None:
    white = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    black = Image.new("CMYK", (16, 16), (0, 0, 0, 255))
    img_w, meta = decode_bytes(png_bytes(white, "JPEG"))
    img_b, _ = decode_bytes(png_bytes(black, "JPEG"))
    assert meta["mode"] == "CMYK" and meta["channels"] == 4
    assert img_w.mean() > 0.97 and img_b.mean() < 0.03


def test_very_large_image_is_decoded_reduced(tmp_path: Path) -> None:
    big = np.zeros((8000, 8000), dtype=np.uint8)
    big[2000:6000, 2000:6000] = 255
    path = save(tmp_path / "big.png", big)
    decoded = decode_file(path)
    assert (decoded.meta["width"], decoded.meta["height"]) == (8000, 8000)
    assert max(decoded.image.shape) <= imageio.MAX_SIDE
    assert decoded.image.mean() == pytest.approx(0.25, abs=0.01)


def test_decompression_bomb_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path / "bomb.png", np.zeros((100, 100), dtype=np.uint8))
    monkeypatch.setattr(imageio, "MAX_PIXELS", 5000)
    with pytest.raises(DecodeError, match="too large: 100x100 pixels"):
        decode_file(path)


def test_phash_and_sha_identify_content(tmp_path: Path) -> None:
    a = save(tmp_path / "a.png", brain_slice(1))
    b = save(tmp_path / "b.png", brain_slice(1))
    c = save(tmp_path / "c.png", brain_slice(2))
    da, db, dc = decode_file(a), decode_file(b), decode_file(c)
    assert da.sha256 == db.sha256 != dc.sha256
    assert imageio.perceptual_hash(da.image) == imageio.perceptual_hash(db.image)
    assert imageio.perceptual_hash(da.image) != imageio.perceptual_hash(dc.image)
    assert da.meta["file_size"] == a.stat().st_size
    assert da.meta["mean_brightness"] == pytest.approx(float(brain_slice(1).mean() / 255), abs=1e-5)


# -- masks -----------------------------------------------------------------------------------

def test_masks_folder_beside_images(tmp_path: Path) -> None:
    root = make_yes_no(tmp_path / "m", n=2)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:20, 10:30] = 255
    save(root / "masks" / "yes" / "Y0.png", mask)  # same relative path
    save(root / "masks" / "Y1_mask.png", mask[:32, :32])  # same stem, other size
    ds = scan(root)
    assert len(ds.records) == 4 and not ds.skipped  # masks are not images
    by_id = {r.id: r for r in ds.records}
    assert by_id["yes/Y0.png"].has_mask and by_id["yes/Y1.png"].has_mask
    assert not by_id["no/N0.png"].has_mask and ds.load_mask(by_id["no/N0.png"]) is None
    m0 = ds.load_mask(by_id["yes/Y0.png"])
    assert m0.dtype == bool and m0.sum() == 200
    assert ds.load_mask(by_id["yes/Y1.png"]).shape == (64, 64)


def test_very_large_jpeg_uses_draft(tmp_path: Path) -> None:
    big = np.full((3000, 5000), 128, dtype=np.uint8)
    path = save(tmp_path / "big.jpg", big)
    decoded = decode_file(path, phash=True)
    assert (decoded.meta["width"], decoded.meta["height"]) == (5000, 3000)
    assert max(decoded.image.shape) <= imageio.MAX_SIDE and len(decoded.phash) == 16
    assert decoded.image.mean() == pytest.approx(128 / 255, abs=0.02)
