"""Decode one image file into a grayscale float32 (H, W) array in [0, 1], with the facts the EDA
and the shortcut audit need (native size, mode, channels, format, file size, brightness).

Every failure is a :class:`DecodeError` whose message is the skip reason shown to the user, so
callers can record it and move on instead of crashing on a bad file.

Decisions, kept here so they are documented once:

* Colour is converted to luminance (ITU-R 601 weights, Pillow's ``convert("L")``); alpha is
  composited on black, because MRI backgrounds are black; CMYK goes through RGB first.
* 16-bit images (PNG/TIFF ``I;16*``) are scaled by their dtype range (65535); 32-bit integer
  ``I`` images the same when their values fit 16 bits, else min-max; float ``F`` images are
  kept when already in [0, 1], else min-max.
* Images over :data:`MAX_PIXELS` (Pillow's decompression-bomb limit) are skipped, never
  decoded. Images whose longer side exceeds :data:`MAX_SIDE` are decoded at a reduced scale
  (JPEG: ``Image.draft`` during decoding; others: ``Image.reduce`` after it) so memory stays
  bounded; ``meta`` still reports the native width and height. Every model in the harness works
  at 256 px or less, so nothing is lost.
* Truncated files are detected by forcing ``load()`` (``LOAD_TRUNCATED_IMAGES`` stays off).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

PIL_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm"})
IMAGE_EXTENSIONS = PIL_EXTENSIONS | DICOM_EXTENSIONS
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_SIDE = 2048
_PHASH_GRID = 32  # imagehash.phash resizes to hash_size * highfreq_factor = 8 * 4 pixels
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class DecodeError(Exception):
    """A file that cannot be used; the message is the one-line skip reason."""


@dataclass
class Decoded:
    """A decoded image and the facts about its file."""

    image: np.ndarray  # float32 (H, W) in [0, 1]
    meta: dict[str, Any]
    sha256: str
    phash: str = ""  # filled when asked for (:func:`decode_file` with ``phash=True``)


def decode_file(path: str | Path, phash: bool = False) -> Decoded:
    """Read ``path`` once, hash its bytes and decode it (and pHash it when ``phash``); raise
    :class:`DecodeError` with a reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}") from None
    if not data:
        raise DecodeError("empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    gray: Image.Image | None = None
    if suffix in DICOM_EXTENSIONS:
        image, meta = _decode_dicom(data)
    else:
        image, meta, gray = _decode_pil(data)
    meta["file_size"] = len(data)
    return Decoded(image=image, meta=meta, sha256=digest,
                   phash=perceptual_hash(image, gray) if phash else "")


def decode_bytes(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode image bytes with Pillow; see the module docstring for the conversions."""
    image, meta, _ = _decode_pil(data)
    return image, meta


def _decode_pil(data: bytes) -> tuple[np.ndarray, dict[str, Any], Image.Image | None]:
    """Also returns the Pillow image when it already is 8-bit grayscale, so the pHash can skip
    a float -> uint8 round trip (the result is the same)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise DecodeError(f"too large: {width}x{height} pixels exceeds the limit of "
                                  f"{MAX_PIXELS} (possible decompression bomb)")
            mode, fmt, channels = im.mode, im.format or "", len(im.getbands())
            if max(width, height) > MAX_SIDE and fmt == "JPEG":
                factor = _reduce_factor(width, height)
                im.draft(None, (width // factor, height // factor))
            im.load()
            if max(im.size) > MAX_SIDE:
                im = _shrink(im)
            if fmt in ("JPEG", "TIFF", "MPO") or "exif" in im.info:
                ImageOps.exif_transpose(im, in_place=True)
            image = to_gray_float(im)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"too large (possible decompression bomb): {exc}") from None
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image (cannot identify the file's format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower():
            raise DecodeError(f"truncated file ({text})") from None
        raise DecodeError(f"corrupt or unsupported image ({type(exc).__name__}: {text})") from None
    meta = {
        "width": width, "height": height, "mode": mode, "channels": channels, "format": fmt,
        "mean_brightness": float(image.mean()) if image.size else 0.0,
    }
    return image, meta, (im if im.mode == "L" else None)


def _reduce_factor(width: int, height: int) -> int:
    """Smallest integer factor that brings the longer side to at most :data:`MAX_SIDE`."""
    return -(-max(width, height) // MAX_SIDE)


def _shrink(im: Image.Image) -> Image.Image:
    """Box-reduce a big image by an integer factor; modes ``reduce`` lacks are widened first."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "L")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode.startswith("I;16"):
        im = im.convert("I")
    return im.reduce(_reduce_factor(*im.size))


def to_gray_float(im: Image.Image) -> np.ndarray:
    """Pillow image (any mode) -> float32 (H, W) in [0, 1]."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.float32) * np.float32(1 / 255)
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32) * np.float32(1 / 65535)
    if mode == "I":
        arr = np.asarray(im)
        if arr.size and arr.min() >= 0 and arr.max() <= 65535:
            return arr.astype(np.float32) * np.float32(1 / 65535)
        return _minmax(arr.astype(np.float32))
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            return np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0)
        return _minmax(np.nan_to_num(arr, nan=0.0))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "L")
        return to_gray_float(im)
    if mode in ("PA", "La"):
        return to_gray_float(im.convert("RGBA" if mode == "PA" else "LA"))
    if mode == "LA":
        arr = np.asarray(im, dtype=np.float32) * np.float32(1 / 255)
        return arr[..., 0] * arr[..., 1]
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(im.convert("RGBA"), dtype=np.float32) * np.float32(1 / 255)
        return (arr[..., :3] @ _LUMA) * arr[..., 3]
    if mode in ("RGB", "YCbCr", "1"):
        return to_gray_float(im.convert("L"))
    if mode in ("CMYK", "LAB", "HSV", "RGBX"):
        return to_gray_float(im.convert("RGB").convert("L"))
    raise DecodeError(f"unsupported image mode {mode!r}")


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros_like(arr, dtype=np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def _decode_dicom(data: bytes) -> tuple[np.ndarray, dict[str, Any]]:
    """DICOM through the optional ``pydicom``: rescale slope/intercept, then min-max (stored bit
    depths vary, so the dtype range says little), MONOCHROME1 inverted."""
    try:
        import pydicom
    except ImportError:
        raise DecodeError("pydicom not installed (pip install pydicom to use .dcm files)") from None
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        arr = ds.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for bad files; all mean "unusable"
        raise DecodeError(f"corrupt or unsupported DICOM ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3] @ _LUMA
        channels = 3
    elif arr.ndim == 3:
        arr = arr[arr.shape[0] // 2]  # multi-frame: the middle frame
        channels = 1
    else:
        channels = 1
    if arr.ndim != 2:
        raise DecodeError(f"unsupported DICOM pixel shape {tuple(arr.shape)}")
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    image = _minmax(arr)
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        image = 1.0 - image
    if max(image.shape) > MAX_SIDE:
        f = _reduce_factor(image.shape[1], image.shape[0])
        image = np.ascontiguousarray(image[::f, ::f])
    meta = {
        "width": int(arr.shape[1]), "height": int(arr.shape[0]),
        "mode": str(getattr(ds, "PhotometricInterpretation", "DICOM")), "channels": channels,
        "format": "DICOM", "mean_brightness": float(image.mean()),
    }
    return image, meta


def perceptual_hash(image: np.ndarray, gray: Image.Image | None = None) -> str:
    """64-bit pHash (16 hex digits) of a float image in [0, 1] (or of its 8-bit grayscale Pillow
    image ``gray`` when the caller has it), via ``imagehash.phash``.

    The image is first box-reduced by an integer factor that keeps at least three times the
    hash's 32 px grid (Pillow's ``reducing_gap=3`` rule): the Lanczos resize inside ``phash``
    was most of the scan's time, and the hash bits barely change."""
    if gray is None:
        gray = Image.fromarray(np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    factor = min(gray.size) // (3 * _PHASH_GRID)
    if factor > 1:
        gray = gray.reduce(factor)
    return str(imagehash.phash(gray, hash_size=8, highfreq_factor=_PHASH_GRID // 8))
