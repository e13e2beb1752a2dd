"""Noisy linear imputation (Rong et al., ICML 2022, "ROAD"), many masks at once.

Each missing pixel becomes the weighted mean of its in-image 8 neighbours (1/6 for the four edge
neighbours, 1/12 for the four corners), missing neighbours included: one sparse linear system per
mask, ``s_i x_i - sum_j w_ij x_j = sum_k w_ik v_k`` over missing ``i`` (``j`` missing, ``k`` known,
``s_i`` the sum of the in-image weights). It is what pytorch-grad-cam 1.5.7's
``NoisyLinearImputer`` solves with one ``scipy.sparse.linalg.spsolve`` per mask; then it adds
``noise * N(0, 1)`` to every imputed value.

Here all masks and colour channels are solved together on the full pixel grid by conjugate
gradients preconditioned with a geometric multigrid V-cycle (bilinear prolongation, its transpose
as restriction, damped Jacobi smoothing, the same stencil rediscretised on each coarser grid, a
coarse cell being unknown when all four of its children are). The system is symmetric positive
definite and the preconditioner symmetric, so this is plain PCG; it stops when every system's
residual is below ``tol`` times the norm of its right-hand side (:data:`TOLERANCE`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

EDGE, CORNER = 1.0 / 6.0, 1.0 / 12.0
TOLERANCE = 1e-6  # relative residual of every system (2-norm), checked after each PCG step
MAX_ITERATIONS = 200
JACOBI_OMEGA = 0.8
COARSEST = 12  # stop coarsening below this many pixels a side
COARSE_SWEEPS = 30
SWEEPS = 2  # Jacobi sweeps before and after each coarse-grid correction


class _Grid:
    """Values on an ``H x W`` grid stored flat with a zero border: ``N x C x (H + 2)(W + 2)``, contiguous.

    The 8 neighbours of flat cell ``i`` are ``i +- 1``, ``i +- R`` and ``i +- R +- 1`` (``R = W + 2``), so
    the stencil is five adds of contiguous slices; the border keeps out-of-image neighbours at zero.
    """

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w, self.row = h, w, w + 2
        self.length = (h + 2) * (w + 2)

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (1, 1, 1, 1)).flatten(-2)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.h + 2, self.w + 2))[..., 1:-1, 1:-1]

    def neighbour_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_o w_o x[i + o]`` over the 8 neighbours (edge 1/6, corner 1/12); zero on the border."""
        r, n = self.row, self.length
        vertical = x[..., : n - 2 * r] + x[..., 2 * r:]  # at cells r .. n - r - 1
        inner = slice(r + 1, n - r - 1)
        edges = vertical[..., 1:-1] + x[..., r: n - r - 2] + x[..., r + 2: n - r]
        corners = vertical[..., :-2] + vertical[..., 2:]
        out = torch.zeros_like(x)
        out[..., inner] = torch.add(corners, edges, alpha=2.0).mul_(CORNER)
        return out


def neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """The stencil on an ``... x H x W`` tensor (out-of-image neighbours count as absent)."""
    grid = _Grid(*x.shape[-2:])
    return grid.image(grid.neighbour_sum(grid.flat(x)))


def _restrict_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Adjoint of :func:`_prolong_1d` along ``dim`` (-1 or -2; length halves): weights 1/4, 3/4, 3/4, 1/4."""
    pairs = x.unflatten(dim, (x.shape[dim] // 2, 2))  # ... x n x 2 (x W when dim is -2)
    even, odd = pairs.select(dim, 0), pairs.select(dim, 1)
    out = (even + odd).mul_(0.75)
    n = out.shape[dim]
    out.narrow(dim, 1, n - 1).add_(odd.narrow(dim, 0, n - 1), alpha=0.25)  # from the fine cell 2j - 1
    out.narrow(dim, 0, n - 1).add_(even.narrow(dim, 1, n - 1), alpha=0.25)  # from the fine cell 2j + 2
    return out


def _prolong_1d(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Linear interpolation of cell-centred values to twice the cells along ``dim`` (-1 or -2; zero outside)."""
    n = x.shape[dim]
    even, odd = x * 0.75, x * 0.75  # fine cells 2j and 2j + 1
    even.narrow(dim, 1, n - 1).add_(x.narrow(dim, 0, n - 1), alpha=0.25)
    odd.narrow(dim, 0, n - 1).add_(x.narrow(dim, 1, n - 1), alpha=0.25)
    return torch.stack((even, odd), dim=dim).flatten(dim - 1, dim) if dim == -1 else \
        torch.stack((even, odd), dim=-2).flatten(-3, -2)


def restrict(x: torch.Tensor) -> torch.Tensor:
    """Bilinear restriction (the transpose of :func:`prolong`) of ``... x H x W`` to ``H/2 x W/2``."""
    return _restrict_1d(_restrict_1d(x, -1), -2)


def prolong(x: torch.Tensor) -> torch.Tensor:
    """Bilinear prolongation of cell-centred ``... x h x w`` values to ``2h x 2w`` (zero beyond the border)."""
    return _prolong_1d(_prolong_1d(x, -1), -2)


@dataclass
class _Level:
    grid: _Grid
    unknown: torch.Tensor  # N x 1 x L (flat), 1.0 where the value is solved for, 0 on the border
    s: torch.Tensor  # 1 x 1 x L: sum of in-image neighbour weights
    relax: torch.Tensor  # N x 1 x L: JACOBI_OMEGA / s on unknown cells, else 0

    @classmethod
    def build(cls, unknown: torch.Tensor) -> _Level:
        """``unknown``: ``N x 1 x H x W``."""
        grid = _Grid(*unknown.shape[-2:])
        flat = grid.flat(unknown)
        ones = grid.flat(torch.ones((1, 1, grid.h, grid.w), dtype=unknown.dtype, device=unknown.device))
        s = grid.neighbour_sum(ones) + (1.0 - ones)  # 1 on the border (never used: unknown is 0 there)
        return cls(grid, flat, s, JACOBI_OMEGA * flat / s)


class _Solver:
    """The multigrid hierarchy of one batch of masks and the operators on it."""

    def __init__(self, unknown: torch.Tensor) -> None:
        """``unknown``: ``N x 1 x H x W`` float32; the outer iteration runs in float64 on level 0."""
        images = [unknown]
        while min(images[-1].shape[-2:]) >= 2 * COARSEST and all(n % 2 == 0 for n in images[-1].shape[-2:]):
            images.append(-F.max_pool2d(-images[-1], 2))  # unknown only if all four children are
        self.levels = [_Level.build(u) for u in images]
        top = self.levels[0]
        self.s64, self.unknown64 = top.s.double(), top.unknown.double()

    def apply64(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` on level 0 in float64 (the outer iteration)."""
        return (self.s64 * x - self.levels[0].grid.neighbour_sum(x)) * self.unknown64

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        """One float32 V-cycle on a float64 residual."""
        return self.vcycle(r.float()).double()

    def apply(self, x: torch.Tensor, level: int = 0) -> torch.Tensor:
        """``A x`` on the unknown cells (``x`` flat, zero on known cells)."""
        lv = self.levels[level]
        return (lv.s * x - lv.grid.neighbour_sum(x)) * lv.unknown

    def _smooth(self, x: torch.Tensor, r: torch.Tensor, level: int, sweeps: int) -> torch.Tensor:
        lv = self.levels[level]
        for _ in range(sweeps):
            x = x + lv.relax * (r - self.apply(x, level))
        return x

    def vcycle(self, r: torch.Tensor, level: int = 0) -> torch.Tensor:
        """An approximate ``A^-1 r`` by one V-cycle from zero (symmetric: usable as a PCG preconditioner)."""
        if level == len(self.levels) - 1:
            return self._smooth(self.levels[level].relax * r, r, level, COARSE_SWEEPS - 1)
        fine, coarse = self.levels[level], self.levels[level + 1]
        x = fine.relax * r  # the first Jacobi sweep from zero
        x = self._smooth(x, r, level, SWEEPS - 1)
        down = restrict(fine.grid.image(r - self.apply(x, level)))
        e = coarse.grid.image(self.vcycle(coarse.grid.flat(down) * coarse.unknown, level + 1))
        x = x + fine.grid.flat(prolong(e)) * fine.unknown
        return self._smooth(x, r, level, SWEEPS)


def solve(image: torch.Tensor, missing: torch.Tensor, tol: float = TOLERANCE,
          max_iterations: int = MAX_ITERATIONS) -> torch.Tensor:
    """The noise-free imputation of ``image`` (``C x H x W``) for each mask of ``missing`` (``N x H x W`` bool).

    Returns ``N x C x H x W`` float64: the image where known, the solution where missing. The
    iteration runs in float64, its multigrid preconditioner in float32.
    """
    image = image.to(torch.float64)
    unknown = missing.to(torch.float32).unsqueeze(1)
    solver = _Solver(unknown)
    grid = solver.levels[0].grid
    known = image.unsqueeze(0) * (1.0 - unknown.double())
    # Right-hand side: the known neighbours' weighted sum at each unknown cell.
    b = grid.neighbour_sum(grid.flat(known)) * solver.unknown64
    x = _pcg(solver, b, tol, max_iterations)
    return known + grid.image(x)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(dim=-1, keepdim=True)


def _pcg(solver: _Solver, b: torch.Tensor, tol: float, max_iterations: int) -> torch.Tensor:
    """Preconditioned conjugate gradients, one independent system per (mask, channel)."""
    x = torch.zeros_like(b)
    r = b.clone()
    goal = tol * _dot(b, b).sqrt()
    z = solver.precondition(r)
    p, rz = z, _dot(r, z)
    for iteration in range(1, max_iterations + 1):
        q = solver.apply64(p)
        alpha = rz / _dot(p, q).clamp_min(torch.finfo(b.dtype).tiny)
        x = x + alpha * p
        r = r - alpha * q
        if bool((_dot(r, r).sqrt() <= goal).all()):
            log.debug("imputation converged in %d PCG steps", iteration)
            return x
        z = solver.precondition(r)
        rz_new = _dot(r, z)
        p = z + (rz_new / rz.clamp_min(torch.finfo(b.dtype).tiny)) * p
        rz = rz_new
    log.warning("imputation stopped after %d PCG steps above the tolerance %g", max_iterations, tol)
    return x
