"""Brain-tumour lesions built in 3D: necrotic core, enhancing rim, surrounding oedema, mass effect.

A lesion lives in subject space (mm), so every axial slice through it agrees with its
neighbours. Its outline is a sphere whose radius varies smoothly with direction (an irregular
blob, not a ball), and the oedema reaches further than the tumour with its own irregular outline.
Mass effect is a radial displacement: tissue that the tumour would occupy is pushed outwards,
fading with distance, and the map is monotone in radius so the anatomy never folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EDGE_MM = 1.5  # width of the soft (partial-volume) boundary of each compartment


@dataclass(frozen=True)
class Lesion:
    centre_mm: np.ndarray  # (3,) subject space
    radius_mm: float  # outer radius of the enhancing rim (the tumour)
    core_fraction: float  # necrotic core radius / tumour radius
    oedema_factor: float  # oedema outer radius / tumour radius
    push: float  # fraction of the radius by which tissue at the tumour's edge is displaced
    decay_mm: float  # how fast the mass effect fades outside the tumour
    tumour_waves: np.ndarray  # (K, 4): direction (3) and phase (1) of the outline's wobble
    oedema_waves: np.ndarray  # (K, 4)
    wobble: float  # relative amplitude of the outline's wobble


def random_lesion(rng: np.random.Generator, centre_mm: np.ndarray, radius_mm: float) -> Lesion:
    """Shape parameters for one lesion: typical glioblastoma proportions, drawn per lesion."""

    def waves() -> np.ndarray:
        directions = rng.normal(size=(4, 3))
        directions *= rng.uniform(1.0, 2.5, size=(4, 1)) / np.linalg.norm(directions, axis=1, keepdims=True)
        return np.concatenate([directions, rng.uniform(0, 2 * np.pi, size=(4, 1))], axis=1)

    return Lesion(
        centre_mm=np.asarray(centre_mm, dtype=np.float32),
        radius_mm=float(radius_mm),
        core_fraction=float(rng.uniform(0.35, 0.7)),
        oedema_factor=float(rng.uniform(1.3, 1.8)),
        push=float(rng.uniform(0.2, 0.45)),
        decay_mm=float(radius_mm * rng.uniform(0.6, 1.0)),
        tumour_waves=waves().astype(np.float32),
        oedema_waves=waves().astype(np.float32),
        wobble=float(rng.uniform(0.08, 0.18)),
    )


def _polar(points_mm: np.ndarray, lesion: Lesion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offset = points_mm - lesion.centre_mm
    r = np.sqrt(np.sum(offset * offset, axis=-1))
    unit = offset / np.maximum(r, 1e-6)[..., None]
    return offset, r, unit


def _outline(unit: np.ndarray, waves: np.ndarray, wobble: float) -> np.ndarray:
    """Radius multiplier by direction: 1 + a smooth sum of sinusoids on the unit sphere."""
    phase = unit @ waves[:, :3].T + waves[:, 3]
    return 1.0 + wobble * np.sin(phase).mean(axis=-1) * 2.0


def mass_effect(points_mm: np.ndarray, lesion: Lesion) -> np.ndarray:
    """Where in the lesion-free anatomy each subject-space point should be read from.

    Inside the tumour the radius shrinks by ``1 - push``; outside, the shift ``push * R`` fades
    as exp(-(r - R) / decay). Both pieces increase with r, so the map is one-to-one.
    """
    offset, r, unit = _polar(points_mm, lesion)
    big_r = lesion.radius_mm
    inside = r * (1.0 - lesion.push)
    outside = r - lesion.push * big_r * np.exp(-np.maximum(r - big_r, 0.0) / lesion.decay_mm)
    source_r = np.where(r < big_r, inside, outside)
    return (lesion.centre_mm + unit * source_r[..., None]).astype(np.float32)


def _soft_inside(r: np.ndarray, radius: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - (r - radius) / EDGE_MM, 0.0, 1.0).astype(np.float32)


def memberships(points_mm: np.ndarray, lesion: Lesion) -> dict[str, np.ndarray]:
    """Soft memberships in [0, 1] of the nested compartments: core within tumour within oedema."""
    _, r, unit = _polar(points_mm, lesion)
    tumour_r = lesion.radius_mm * _outline(unit, lesion.tumour_waves, lesion.wobble)
    oedema_r = lesion.radius_mm * lesion.oedema_factor * _outline(unit, lesion.oedema_waves, 2 * lesion.wobble)
    oedema_r = np.maximum(oedema_r, tumour_r + EDGE_MM)
    return {
        "core": _soft_inside(r, tumour_r * lesion.core_fraction),
        "tumour": _soft_inside(r, tumour_r),
        "oedema": _soft_inside(r, oedema_r),
    }


def combine(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Union of several lesions' memberships (max per compartment)."""
    out = {key: parts[0][key].copy() for key in parts[0]}
    for part in parts[1:]:
        for key in out:
            np.maximum(out[key], part[key], out=out[key])
    return out
