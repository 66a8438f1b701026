"""Multi-octave 2D simplex noise in torch, vectorised over a batch of fields.

AnoDDPM (Wyatt et al., CVPR-W 2022) replaces the Gaussian noise of a DDPM by fractal simplex
noise: a sum of ``octaves`` simplex layers, the first sampled at pixel coordinates divided by
``frequency``, each next one at twice its spatial frequency and ``persistence`` times its
amplitude. Its power sits at low spatial frequencies, so a noised slice loses lesion-sized
structure, which Gaussian noise of the same variance does not destroy at moderate timesteps.

Written here rather than taken from ``opensimplex`` (0.4.5.1): without numba its array
functions loop in Python, 4.0 s for one batch of 16 fields of 64 px with 6 octaves on this
2-core CPU, many times the cost of the training step it would feed; this version makes the same
batch in 0.05 s on one thread (0.025 s with the quick profiles' 4 octaves; docs/protocol.md,
issue 24).

Each field has its own permutation table and per-octave offsets drawn from the caller's
generator, so a field is a function of that generator's state alone. Fields are normalised to
zero mean and unit variance, the variance the diffusion schedule assumes of its noise.
"""

from __future__ import annotations

import math

import torch

_F2 = 0.5 * (math.sqrt(3.0) - 1.0)  # skews the square grid onto the simplex (triangle) grid
_G2 = (3.0 - math.sqrt(3.0)) / 6.0  # and back
# gradient directions of the 2D simplex corners (the 12 of 3D simplex noise projected to 2D, deduplicated)
_GRAD_X = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 0.0, 0.0])
_GRAD_Y = torch.tensor([1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 1.0, -1.0])


def _simplex(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Simplex noise in [-1, 1] at coordinates ``x``, ``y`` (n, p) with permutation tables
    ``perm`` (n, 512): each row is one field, evaluated at its own p points."""
    s = (x + y) * _F2
    i, j = torch.floor(x + s), torch.floor(y + s)
    t = (i + j) * _G2
    x0, y0 = x - (i - t), y - (j - t)  # offset from the cell's first corner
    upper = x0 > y0  # which of the cell's two triangles holds the point
    i1, j1 = upper.to(x.dtype), (~upper).to(x.dtype)
    ii, jj = i.long() & 255, j.long() & 255

    def corner(dx: torch.Tensor, dy: torch.Tensor, di: torch.Tensor | int, dj: torch.Tensor | int) -> torch.Tensor:
        inner = torch.gather(perm, 1, jj + (dj if isinstance(dj, int) else dj.long()))
        h = torch.gather(perm, 1, ii + (di if isinstance(di, int) else di.long()) + inner) % len(_GRAD_X)
        falloff = (0.5 - dx * dx - dy * dy).clamp(min=0).square().square()
        return falloff * (torch.take(_GRAD_X, h) * dx + torch.take(_GRAD_Y, h) * dy)

    total = (corner(x0, y0, 0, 0) + corner(x0 - i1 + _G2, y0 - j1 + _G2, i1, j1)
             + corner(x0 - 1 + 2 * _G2, y0 - 1 + 2 * _G2, 1, 1))
    return 70.0 * total  # scales the sum of the three corners into about [-1, 1]


def simplex_noise(n: int, height: int, width: int, generator: torch.Generator, *, octaves: int = 6,
                  frequency: float = 64.0, persistence: float = 0.8) -> torch.Tensor:
    """``n`` fields (n, 1, height, width) of fractal simplex noise, each with zero mean and unit
    variance; ``frequency`` is the first octave's coordinate divisor in pixels (AnoDDPM: 64 at
    256 px), each later octave halves it and multiplies the amplitude by ``persistence``."""
    if octaves < 1 or frequency <= 0 or not 0 < persistence <= 1:
        raise ValueError(f"simplex noise needs octaves >= 1, frequency > 0 and 0 < persistence <= 1; got "
                         f"{octaves}, {frequency}, {persistence}")
    perm = torch.stack([torch.randperm(256, generator=generator) for _ in range(n)])
    perm = torch.cat([perm, perm], dim=1)  # lookups of index + 255 stay in range
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                                torch.arange(width, dtype=torch.float32), indexing="ij")
    rows, cols = rows.reshape(1, -1), cols.reshape(1, -1)
    field = torch.zeros(n, height * width, dtype=torch.float32)
    amplitude, divisor = 1.0, float(frequency)
    for _ in range(octaves):
        offset = torch.rand(n, 2, generator=generator, dtype=torch.float32) * 256  # decorrelates the octaves
        field += amplitude * _simplex(cols / divisor + offset[:, :1], rows / divisor + offset[:, 1:], perm)
        amplitude, divisor = amplitude * persistence, divisor / 2
    field = field - field.mean(dim=1, keepdim=True)
    field = field / field.std(dim=1, keepdim=True).clamp(min=1e-12)
    return field.reshape(n, 1, height, width).float()
