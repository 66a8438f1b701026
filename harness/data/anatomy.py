"""MNI152 2009 anatomy for the embedded cohort, and the spatial maps that turn it into subjects.

The template and its grey/white-matter maps ship inside the ``nilearn`` wheel, so loading them
never touches the network. A virtual subject is a smooth random deformation plus a small affine
of that anatomy; we only ever evaluate it at the points of the slices we keep, which is why
generation is fast (no full 3D volume is resampled).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Centre of the brain's bounding box in MNI mm: rotations pivot here and slices are centred on it.
BRAIN_CENTRE_MM = np.array([0.0, -17.0, 13.0], dtype=np.float32)


@dataclass(frozen=True)
class Template:
    """Tissue probability maps on a regular grid, with the mm -> voxel map."""

    gm: np.ndarray
    wm: np.ndarray
    brain: np.ndarray
    mm_to_voxel: np.ndarray  # 4x4

    def sample(self, points_mm: np.ndarray) -> dict[str, np.ndarray]:
        """Linear interpolation of GM, WM, CSF and brain at ``points_mm`` (..., 3).

        CSF is the brain mask minus GM minus WM: the template has no CSF map of its own, and
        this also gives the bright (T2) / dark (T1, FLAIR) rim of fluid around the cortex.
        """
        shape = points_mm.shape[:-1]
        flat = points_mm.reshape(-1, 3).astype(np.float64)
        vox = (flat @ self.mm_to_voxel[:3, :3].T + self.mm_to_voxel[:3, 3]).T
        out = {}
        for name in ("gm", "wm", "brain"):
            values = ndimage.map_coordinates(getattr(self, name), vox, order=1, mode="constant", cval=0.0)
            out[name] = values.reshape(shape).astype(np.float32)
        out["csf"] = np.clip(out["brain"] - out["gm"] - out["wm"], 0.0, 1.0)
        return out


@functools.lru_cache(maxsize=2)
def load_template(voxel_mm: int) -> Template:
    """The template at 1 mm, or block-averaged to 2 mm (anti-aliased) for coarse slices."""
    if voxel_mm not in (1, 2):
        raise ValueError(f"template voxel size must be 1 or 2 mm, got {voxel_mm}")
    from nilearn import datasets  # heavy import; only needed when generating

    t1 = datasets.load_mni152_template(resolution=1)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(), dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(), dtype=np.float32)
    voxel_to_mm = np.asarray(t1.affine, dtype=np.float64)
    if voxel_mm == 2:
        gm, wm, brain = (_block_mean(a) for a in (gm, wm, brain))
        # 2 mm voxel i covers 1 mm voxels 2i and 2i+1, centred at 2i + 0.5.
        voxel_to_mm = voxel_to_mm @ np.array(
            [[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5], [0, 0, 0, 1]], dtype=np.float64
        )
    return Template(gm=gm, wm=wm, brain=brain, mm_to_voxel=np.linalg.inv(voxel_to_mm))


def _block_mean(volume: np.ndarray) -> np.ndarray:
    x, y, z = (s // 2 * 2 for s in volume.shape)
    v = volume[:x, :y, :z]
    return v.reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5)).astype(np.float32)


def slice_grid(size: int, fov_mm: float, z_mm: np.ndarray) -> np.ndarray:
    """Subject-space points (S, size, size, 3) of axial slices at heights ``z_mm``.

    Radiological display: row 0 is anterior, column 0 is the subject's right.
    """
    pixel = fov_mm / size
    offsets = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * pixel
    ys = BRAIN_CENTRE_MM[1] - offsets  # rows: anterior -> posterior
    xs = BRAIN_CENTRE_MM[0] - offsets  # columns: right -> left (MNI +x is the subject's right)
    zz, yy, xx = np.meshgrid(np.asarray(z_mm, dtype=np.float32), ys, xs, indexing="ij")
    return np.stack([xx, yy, zz], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class SmoothField:
    """A random field on a lattice, read by linear interpolation (cheap at many points)."""

    origin: np.ndarray  # mm of lattice point (0, 0, 0)
    spacing: float
    values: np.ndarray  # (C, nx, ny, nz)

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        shape = points_mm.shape[:-1]
        idx = ((points_mm.reshape(-1, 3) - self.origin) / self.spacing).T.astype(np.float64)
        channels = [
            ndimage.map_coordinates(v, idx, order=1, mode="nearest").reshape(shape)
            for v in self.values
        ]
        return np.stack(channels, axis=-1).astype(np.float32)


def random_smooth_field(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, spacing: float,
                        sigma: float, channels: int, refine: int = 1) -> SmoothField:
    """A field over the box [lo, hi] (mm) with N(0, sigma) control values ``spacing`` mm apart.

    With ``refine`` > 1 the control values are first spline-interpolated (cubic) onto a lattice
    ``refine`` times finer, so the field is smooth rather than piecewise linear, while reading
    it at each point still costs only a linear interpolation.
    """
    lo = np.asarray(lo, dtype=np.float32) - spacing
    counts = np.ceil((np.asarray(hi, dtype=np.float32) + spacing - lo) / spacing).astype(int) + 1
    values = rng.normal(0.0, sigma, size=(channels, *counts)).astype(np.float32)
    if refine > 1:
        fine = [(n - 1) * refine + 1 for n in counts]
        values = np.stack([
            ndimage.zoom(v, [(f - 1) / (n - 1) for f, n in zip(fine, counts)], order=3, mode="nearest",
                         grid_mode=False)
            for v in values
        ])
    return SmoothField(origin=lo, spacing=float(spacing) / refine, values=values.astype(np.float32))


@dataclass(frozen=True)
class SubjectPose:
    """How a virtual subject's head sits in the scanner, relative to the template."""

    linear: np.ndarray  # 3x3: rotation times per-axis scale
    shift_mm: np.ndarray  # (3,)
    warp: SmoothField  # 3-channel displacement (mm) in subject space

    def to_template(self, points_mm: np.ndarray) -> np.ndarray:
        """Map subject-space points to template mm (where to read the anatomy)."""
        displaced = points_mm + self.warp(points_mm)
        centred = displaced - BRAIN_CENTRE_MM
        return (centred @ self.linear.T + BRAIN_CENTRE_MM + self.shift_mm).astype(np.float32)


def random_pose(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, size_quantile: float) -> SubjectPose:
    """Small head rotation (a few degrees), head size, +-4 mm shift, and a smooth warp of ~2.5 mm
    at 30 mm scale: enough that no two subjects share anatomy pixel for pixel.

    Head size is 0.92-1.08 of the template at ``size_quantile`` (given by the caller so that both
    label groups cover the same sizes), times a +-3 % per-axis jitter.
    """
    yaw, pitch, roll = np.deg2rad(rng.uniform([-6, -4, -4], [6, 4, 4]))
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    ry = np.array([[np.cos(roll), 0, np.sin(roll)], [0, 1, 0], [-np.sin(roll), 0, np.cos(roll)]])
    size = (0.92 + 0.16 * size_quantile) * rng.uniform(0.97, 1.03, size=3)
    scale = np.diag(1.0 / size)  # a bigger head reads the template closer to its centre
    linear = (rz @ rx @ ry @ scale).astype(np.float32)
    shift = rng.uniform(-4.0, 4.0, size=3).astype(np.float32)
    warp = random_smooth_field(rng, lo, hi, spacing=30.0, sigma=2.5, channels=3, refine=6)
    return SubjectPose(linear=linear, shift_mm=shift, warp=warp)
