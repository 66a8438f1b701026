"""One virtual subject of the embedded cohort: anatomy, lesions, contrast and artefacts -> slices.

Everything is evaluated only at the points of the axial slices we keep (a fixed band of MNI
heights shared by every subject), never on a whole 3D volume: that keeps generation fast while
lesions, bias field and anatomy stay 3D-consistent across a subject's slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.data import anatomy, lesions, mri_artifacts, mri_contrast

if TYPE_CHECKING:
    from harness.data.embedded import CohortSettings

# Axial band (MNI z, mm) for every subject: from just below the lateral ventricles to the
# centrum semiovale, where the brain's cross-section is nearly constant. A shared band means the
# axial level (and with it brain area and brightness) cannot tell tumour from healthy slices.
BAND_MM = (-10.0, 36.0)
MNI_Z_OFFSET = 72  # MNI152 1 mm voxel index of z = 0 mm (the template's affine)
FOV_MM = 210.0  # square field of view; the brain is ~145 x 180 mm
SECOND_LESION_PROB = 0.35


@dataclass(frozen=True)
class SubjectSlices:
    images: np.ndarray  # uint8 (S, H, W)
    masks: np.ndarray  # bool (S, H, W), whole-tumour ground truth
    brain_area: np.ndarray  # int (S,): brain pixels per slice
    n_lesions: int


def slice_heights(n_slices: int) -> np.ndarray:
    """Evenly spaced MNI heights in the band; widened (centred) if that would put slices closer
    than 1 mm, so slice ids (whole-mm positions) stay unique."""
    lo, hi = BAND_MM
    if n_slices == 1:
        return np.array([(lo + hi) / 2], dtype=np.float32)
    spacing = max((hi - lo) / (n_slices - 1), 1.0)
    centre = (lo + hi) / 2
    half = spacing * (n_slices - 1) / 2
    return np.round(np.linspace(centre - half, centre + half, n_slices)).astype(np.float32)


def template_voxel_mm(slice_size: int) -> int:
    """Read coarse slices from the 2 mm (block-averaged) template to avoid aliasing."""
    return 2 if FOV_MM / slice_size >= 2.5 else 1


@dataclass(frozen=True)
class SubjectPlan:
    """What the cohort fixes for a subject before simulating it.

    The quantiles place the subject's head size and display brightness within their ranges (and
    the first lesion's height within the band); the cohort deals them evenly (stratified) within
    each label group, so that in a small cohort these traits cannot differ between tumour and
    healthy subjects, or pile up at one axial level, by chance.
    """

    subject: str
    tumour: bool
    sequence: str
    size_quantile: float
    brightness_quantile: float
    lesion_quantile: float


def simulate_subject(rng: np.random.Generator, plan: SubjectPlan, settings: CohortSettings,
                     z_mm: np.ndarray) -> SubjectSlices:
    """Slices at heights ``z_mm`` of one subject. The order is physical: anatomy is displaced by
    the lesions' mass effect before it is imaged, and the bias field multiplies the object before
    k-space effects and noise, as a coil and a scanner would."""
    template = anatomy.load_template(template_voxel_mm(settings.slice_size))
    grid = anatomy.slice_grid(settings.slice_size, FOV_MM, z_mm)
    lo, hi = grid.reshape(-1, 3).min(axis=0), grid.reshape(-1, 3).max(axis=0)
    pose = anatomy.random_pose(rng, lo, hi, plan.size_quantile)

    found = _place_lesions(rng, template, pose, grid, settings, plan.lesion_quantile) if plan.tumour else []
    source = grid
    for lesion in found:
        source = lesions.mass_effect(source, lesion)
    tissue = template.sample(pose.to_template(source))
    shape = lesions.combine([lesions.memberships(grid, les) for les in found]) if found else None

    texture = anatomy.random_smooth_field(rng, lo, hi, spacing=6.0, sigma=1.0, channels=2)(source)
    contrast = mri_contrast.random_contrast(rng, plan.sequence)
    image = mri_contrast.render(tissue, shape, contrast, settings.lesion_contrast, texture)

    acq = mri_artifacts.random_acquisition(rng, plan.brightness_quantile)
    image = image * mri_artifacts.bias_field((grid - anatomy.BRAIN_CENTRE_MM) / (FOV_MM / 2), acq.bias_coeffs)
    stored = mri_artifacts.display(mri_artifacts.acquire(image, acq, rng), acq)

    masks = mri_contrast.lesion_mask(tissue, shape) if shape is not None else np.zeros(stored.shape, bool)
    brain_area = (tissue["brain"] >= 0.5).sum(axis=(1, 2))
    return SubjectSlices(images=stored, masks=masks, brain_area=brain_area, n_lesions=len(found))


def _place_lesions(rng: np.random.Generator, template: anatomy.Template, pose: anatomy.SubjectPose,
                   grid: np.ndarray, settings: CohortSettings, height_quantile: float) -> list[lesions.Lesion]:
    """1-2 lesions centred in white matter; the first at ``height_quantile`` of the band, a second
    one at a uniformly drawn height.

    The height is chosen first and the in-plane position second, so lesion centres are uniform in
    z rather than following where white matter is most abundant.
    """
    probe = grid[:, ::4, ::4]
    wm = template.sample(pose.to_template(probe))["wm"]
    z_levels = grid[:, 0, 0, 2]
    r_min, r_max = settings.lesion_radius_mm
    count = 2 if rng.random() < SECOND_LESION_PROB else 1
    placed: list[lesions.Lesion] = []
    for n in range(count):
        quantile = height_quantile if n == 0 else rng.uniform()
        z = float(z_levels.min() + quantile * (z_levels.max() - z_levels.min()))
        level = int(np.argmin(np.abs(z_levels - z)))
        radius = rng.uniform(r_min, r_max)
        points = probe[level].reshape(-1, 3)
        ok = wm[level].reshape(-1) > 0.5
        for other in placed:
            ok &= np.linalg.norm(points - other.centre_mm, axis=1) > other.radius_mm + radius
        if not ok.any():
            ok = wm[level].reshape(-1) > 0.2
        if not ok.any():
            continue
        centre = points[rng.choice(np.flatnonzero(ok))].copy()
        centre[2] = z
        placed.append(lesions.random_lesion(rng, centre, radius))
    return placed
