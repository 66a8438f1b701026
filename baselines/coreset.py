"""PatchCore's memory-bank tools: seeded random projections, greedy (k-center) coreset
subsampling, and chunked nearest-neighbour distances.

Why a module of its own: these are plain geometry on feature matrices, testable on a 2-D toy
without a backbone, and the expensive parts of PatchCore on a CPU (Roth et al. 2022, Sec. 3.2:
the coreset keeps the points that cover the feature space, so the nearest-neighbour search runs
against a few percent of the patches with little loss).
"""

from __future__ import annotations

import torch

__all__ = ["greedy_coreset", "nearest_neighbours", "random_projection"]

# bytes of one (queries x bank) distance block; keeps cdist's working memory bounded
_BLOCK_BYTES = 64 * 2**20


def random_projection(dim_in: int, dim_out: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A seeded Gaussian (dim_in, dim_out) matrix scaled by 1/sqrt(dim_out), which preserves
    distances in expectation (Johnson-Lindenstrauss), as the paper's coreset projection."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randn(dim_in, dim_out, generator=g) / dim_out**0.5).to(device)


def greedy_coreset(features: torch.Tensor, n: int, seed: int, projection_dim: int | None = 128) -> torch.Tensor:
    """Indices of ``n`` rows of ``features`` (N, D) chosen by k-center greedy: start from a
    seeded random row, then repeatedly add the row farthest from everything chosen so far.

    Distances are measured after a seeded random projection to ``projection_dim`` (None, or a
    dimension at least D: the features as they are), which is how the paper makes the selection
    affordable. The indices come back in the order they were picked.
    """
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"greedy_coreset needs a non-empty (N, D) matrix, got {tuple(features.shape)}")
    total = len(features)
    n = max(1, min(int(n), total))
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        x = x @ random_projection(x.shape[1], projection_dim, seed + 1, x.device)
    g = torch.Generator().manual_seed(int(seed))
    first = int(torch.randint(total, (1,), generator=g))
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = first
    sq_norms = (x * x).sum(1)
    nearest = _squared_distances(x, sq_norms, first)
    for i in range(1, n):
        pick = int(torch.argmax(nearest))
        chosen[i] = pick
        torch.minimum(nearest, _squared_distances(x, sq_norms, pick), out=nearest)
    return chosen


def _squared_distances(x: torch.Tensor, sq_norms: torch.Tensor, index: int) -> torch.Tensor:
    """Squared distance of every row of ``x`` to row ``index`` (clamped at 0 against rounding)."""
    centre = x[index]
    return (sq_norms - 2 * (x @ centre) + sq_norms[index]).clamp_min_(0)


def nearest_neighbours(queries: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``queries`` (Q, D), the Euclidean distance to its nearest row of ``bank``
    (M, D) and that row's index; torch.cdist over query chunks so memory stays bounded."""
    if len(bank) == 0:
        raise ValueError("nearest_neighbours: the memory bank is empty")
    chunk = max(1, _BLOCK_BYTES // (4 * len(bank)))
    dists, idx = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk].float(), bank.float())
        best = d.min(dim=1)
        dists.append(best.values)
        idx.append(best.indices)
    if not dists:
        return torch.zeros(0, device=bank.device), torch.zeros(0, dtype=torch.long, device=bank.device)
    return torch.cat(dists), torch.cat(idx)
