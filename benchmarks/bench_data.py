"""Data pipeline throughput against a bare Pillow decode loop measured in the same run.

    python benchmarks/bench_data.py [--n 5000] [--size 256] [--volumes 40] [--workdir DIR] [--skip-embedded]

Generates N seeded brain-like PNGs (cached in --workdir), then times
(a) the baseline: open + load + convert("L") of every file with Pillow, one thread;
(b) the harness: FolderDataset scan (read, SHA-256, decode, pHash) + make_split + run_eda.
Prints images/s and the ratios of the scan and of (b) to (a) (target <= 2x). Then exports the quick
profile's embedded cohort of --volumes subjects as NIfTI volumes (cached in --workdir) and times
(c) the baseline: nibabel's plain load (``nib.load(path).get_fdata()``) of every image and mask file;
(d) the ``volumes`` source's first scan into a fresh cache, and (e) its cached scan, as ratios to (c).
Last, the embedded cohort with the quick profile into a fresh cache folder (target < 60 s) and the
cached call (target < 2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.config import dataset_settings, get_profile  # noqa: E402
from harness.data.folders import FolderDataset  # noqa: E402
from harness.data.splits import make_split  # noqa: E402


def brain_like(rng: np.random.Generator, size: int, tumor: bool) -> np.ndarray:
    """A noisy ellipse with a darker core, plus a bright blob for tumor images."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    cy, cx = 0.5 + rng.uniform(-0.05, 0.05, 2)
    ry, rx = rng.uniform(0.3, 0.42, 2)
    r2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    img = (r2 < 1) * (rng.uniform(90, 150) + 40 * np.cos(r2 * rng.uniform(6, 14)))
    img += rng.normal(0, 12, (size, size)) * (r2 < 1)
    if tumor:
        ty, tx = cy + rng.uniform(-0.15, 0.15), cx + rng.uniform(-0.15, 0.15)
        img += 80 * (((yy - ty) ** 2 + (xx - tx) ** 2) < rng.uniform(0.04, 0.1) ** 2)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(root: Path, n: int, size: int) -> list[Path]:
    """Write (or reuse) n PNGs, half under yes/ and half under no/."""
    done = root / ".complete"
    paths = [root / ("yes" if i % 2 else "no") / f"img{i:05d}.png" for i in range(n)]
    if done.exists():
        return paths
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths):
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(brain_like(rng, size, tumor=bool(i % 2))).save(p)
    done.write_text("ok")
    return paths


def bare_decode(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im.load()
            im.convert("L")
    return time.perf_counter() - start


def harness_pipeline(root: Path, out: Path) -> dict[str, float]:
    times: dict[str, float] = {}
    start = time.perf_counter()
    source = FolderDataset(root, progress=False)
    times["scan"] = time.perf_counter() - start
    start = time.perf_counter()
    split = make_split(source, 0, get_profile("quick").split)
    times["split"] = time.perf_counter() - start
    try:
        from harness.data.eda import run_eda
    except ImportError:
        print("  (harness.data.eda not importable: EDA not timed)")
    else:
        start = time.perf_counter()
        run_eda(source, split, out, progress=False)
        times["eda"] = time.perf_counter() - start
    return times


def export_cohort(root: Path, n: int) -> list[Path]:
    """Write (or reuse) the quick profile's embedded cohort of ``n`` subjects as generic NIfTI volumes."""
    from harness.data.embedded import load_embedded_cohort
    from harness.data.export import export_volumes

    if not (root / ".complete").exists():
        settings = dataset_settings("mni152-lesions", "quick", {"n_subjects": n})
        with tempfile.TemporaryDirectory() as cache:
            export_volumes(load_embedded_cohort(settings, 0, cache_dir=Path(cache), progress=False), "generic", root)
        (root / ".complete").write_text("ok")
    return sorted(root.rglob("*.nii.gz"))


def nibabel_load(paths: list[Path]) -> float:
    import nibabel as nib

    start = time.perf_counter()
    for p in paths:
        nib.load(p).get_fdata(dtype=np.float32)
    return time.perf_counter() - start


def volume_scans(root: Path) -> tuple[float, float, int]:
    """Seconds of the first scan (fresh cache) and the cached scan, and the slices found."""
    from harness.data.volumes import VolumeDataset, VolumeSettings

    settings = VolumeSettings(sequence="all")
    cache = Path(tempfile.mkdtemp(prefix="harness-bench-volumes-"))
    try:
        start = time.perf_counter()
        VolumeDataset(root, settings, progress=False, cache_dir=cache)
        first = time.perf_counter() - start
        start = time.perf_counter()
        source = VolumeDataset(root, settings, progress=False, cache_dir=cache)
        return first, time.perf_counter() - start, len(source.records)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def embedded(cache: Path) -> tuple[float, float]:
    from harness.data.embedded import load_embedded_cohort

    settings = dataset_settings("mni152-lesions", "quick")
    start = time.perf_counter()
    load_embedded_cohort(settings, 0, cache_dir=cache, progress=False)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    load_embedded_cohort(settings, 0, cache_dir=cache, progress=False)
    return fresh, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workdir", default=None, help="where the generated images are cached")
    parser.add_argument("--volumes", type=int, default=40, help="subjects of the exported NIfTI cohort (0: skip)")
    parser.add_argument("--skip-embedded", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HARNESS_NO_PROGRESS", "1")
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "harness-bench-data")
    root = workdir / f"pngs-n{args.n}-s{args.size}"
    print(f"images: {args.n} x {args.size}px PNG in {root}")
    paths = make_images(root, args.n, args.size)

    bare_decode(paths[: min(200, len(paths))])  # warm the page cache for both contenders
    bare = bare_decode(paths)
    with tempfile.TemporaryDirectory() as out:
        times = harness_pipeline(root, Path(out))
    total = sum(times.values())
    print(f"bare PIL decode      {bare:8.2f} s  {args.n / bare:8.0f} img/s  (baseline)")
    for name, t in times.items():
        print(f"harness {name:<12} {t:8.2f} s  {args.n / t:8.0f} img/s")
    print(f"harness scan alone: ratio {times['scan'] / bare:.2f}x the bare decode")
    print(f"harness total        {total:8.2f} s  {args.n / total:8.0f} img/s  "
          f"ratio {total / bare:.2f}x the bare decode (target <= 2x)")

    if args.volumes:
        volumes = export_cohort(workdir / f"volumes-n{args.volumes}", args.volumes)
        nibabel_load(volumes[:5])  # warm the page cache for every contender
        plain = nibabel_load(volumes)
        first, cached, slices = volume_scans(workdir / f"volumes-n{args.volumes}")
        print(f"volumes: {args.volumes} subjects, {len(volumes)} NIfTI files, {slices} slices")
        print(f"nibabel plain load   {plain:8.2f} s  (baseline)")
        print(f"volumes first scan   {first:8.2f} s  ratio {first / plain:.2f}x the plain load")
        print(f"volumes cached scan  {cached:8.2f} s  ratio {cached / plain:.2f}x the plain load")

    if not args.skip_embedded:
        cache = Path(tempfile.mkdtemp(prefix="harness-bench-cohort-"))
        try:
            fresh, cached = embedded(cache)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"embedded cohort (quick), fresh cache {fresh:8.2f} s (target < 60 s)")
        print(f"embedded cohort (quick), cached      {cached:8.2f} s (target < 2 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
