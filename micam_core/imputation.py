"""Noisy linear imputation (Rong et al., ICML 2022, "ROAD"): one exact sparse direct solve per mask.

Each missing pixel becomes the weighted mean of its in-image 8 neighbours (1/6 for the four edge
neighbours, 1/12 for the four corners), missing neighbours included: one sparse linear system per
mask, ``s_i x_i - sum_j w_ij x_j = sum_k w_ik v_k`` over missing ``i`` (``j`` missing, ``k`` known,
``s_i`` the sum of the in-image weights). It is what pytorch-grad-cam 1.5.7's
``NoisyLinearImputer`` solves with one ``scipy.sparse.linalg.spsolve`` per mask; the noise is added
by the caller (:func:`micam_core.road.impute_many`).

The matrix is the weighted graph Laplacian of the pixel grid restricted to the missing pixels
(Dirichlet at the known ones): symmetric positive definite whenever some pixel is known. Its unknowns
are numbered by a nested dissection of the whole pixel grid, computed once per image size (restricted
to each mask's pixels it stays a good elimination order), and the matrix is factorised in that order,
the three colour channels being three right-hand sides of one factor. The grid's matrix entries are
also computed once per size, already in that numbering, so building a mask's system is a few boolean
gathers. With no pixel known every constant solves the system; the minimum-norm solution, 0, is returned.

Two solvers, the same numbers (to rounding), one chosen by :func:`backend`:

- ``"superlu"`` (the default; BSD, scipy): SuperLU's LU without column reordering and with diagonal
  pivots (the matrix is SPD).
- ``"cholmod"`` (used when the optional ``cvxopt`` package is installed: ``pip install micam-core[road-fast]``;
  GPL-3, like CHOLMOD's supernodal module): CHOLMOD's supernodal Cholesky, three to five times as fast
  as SuperLU here. It reads only the lower triangle, so its systems are gathered from the grid's lower
  entries (:func:`_lower`). It is called through ``ctypes`` (:mod:`micam_core.cholmod_lib`: numpy arrays
  read in place, the GIL let go, one workspace per call). Where that library cannot be used, cvxopt's
  own module runs instead; its options and workspace are process-wide, so every such call holds one lock.

SuperLU and CHOLMOD through ``ctypes`` let go of the GIL while they work; cvxopt's module holds it
(measured: a Python thread beside it gets about a sixth of its time), so :func:`releases_gil` tells
:func:`micam_core.road.queue_road` whether imputing in a worker thread overlaps the forward passes or
only stalls them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import torch

from . import cholmod_lib
from .errors import MicamError

log = logging.getLogger(__name__)

EDGE, CORNER = 1.0 / 6.0, 1.0 / 12.0
# The 8 neighbour offsets (dy, dx) and weights; the first four point forward in raster order.
FORWARD = (((0, 1), EDGE), ((1, -1), CORNER), ((1, 0), EDGE), ((1, 1), CORNER))
LEAF = 4  # nested dissection stops at blocks of at most LEAF x LEAF pixels
BACKENDS = ("superlu", "cholmod")
_CHOLMOD = {"supernodal": 2, "nmethods": 1, "postorder": True}  # supernodal; only the ordering given
_LOCK = threading.Lock()  # cvxopt's CHOLMOD options and workspace are process-wide


def _dissect(h: int, w: int, y0: int, x0: int, width: int, out: list[np.ndarray]) -> None:
    """Append the raster indices of the block ``[y0, y0 + h) x [x0, x0 + w)`` in nested-dissection order.

    A one-pixel line across the longer side separates the two halves for the 8-neighbour stencil
    (diagonal neighbours cross it too); the halves come first, the line last.
    """
    if h * w <= LEAF * LEAF or min(h, w) < 3:
        out.append(((y0 + np.arange(h))[:, None] * width + x0 + np.arange(w)[None, :]).ravel())
    elif h >= w:
        m = h // 2
        _dissect(m, w, y0, x0, width, out)
        _dissect(h - m - 1, w, y0 + m + 1, x0, width, out)
        out.append((y0 + m) * width + x0 + np.arange(w))
    else:
        m = w // 2
        _dissect(h, m, y0, x0, width, out)
        _dissect(h, w - m - 1, y0, x0 + m + 1, width, out)
        out.append((y0 + np.arange(h)) * width + x0 + m)


@dataclass(frozen=True)
class _Stencil:
    """What every mask of one ``h x w`` size shares: the ordering and the matrix entries of the whole grid.

    Pixels are numbered by their place in ``order``. The entries are the full grid's symmetric matrix,
    one per (``column``, ``row``) in column-major order: ``s_i`` on the diagonal, ``-w`` for each
    neighbour pair (both ways). A mask's matrix is the entries whose two pixels are both missing, still
    column-major once its missing pixels are renumbered in the same order.
    """

    order: np.ndarray  # the H*W raster indices in nested-dissection order
    column: np.ndarray
    row: np.ndarray
    value: np.ndarray
    lower: np.ndarray  # bool: the entry lies on or below the diagonal (CHOLMOD reads only those)


@lru_cache(maxsize=8)
def _stencil(h: int, w: int) -> _Stencil:
    out: list[np.ndarray] = []
    _dissect(h, w, 0, 0, w, out)
    order = np.concatenate(out)
    place = np.empty(h * w, dtype=np.int64)
    place[order] = np.arange(h * w)
    index = np.arange(h * w).reshape(h, w)
    firsts, seconds, weights = [], [], []
    for (dy, dx), wt in FORWARD:
        src = index[: h - dy, max(0, -dx): w - max(0, dx)].ravel()
        firsts.append(src)
        seconds.append(src + dy * w + dx)
        weights.append(np.full(src.size, wt))
    first, second, weight = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights)
    total = np.bincount(first, weight, h * w) + np.bincount(second, weight, h * w)
    column = place[np.concatenate((first, second, index.ravel()))]
    row = place[np.concatenate((second, first, index.ravel()))]
    value = np.concatenate((-weight, -weight, total))
    column_major = np.lexsort((row, column))
    column, row = column[column_major], row[column_major]
    return _Stencil(order, column, row, value[column_major], row >= column)


@lru_cache(maxsize=8)
def _lower(h: int, w: int) -> _Stencil:
    """:func:`_stencil`'s entries on or below the diagonal only (half the gathers per mask for CHOLMOD)."""
    full = _stencil(h, w)
    keep = full.lower
    return _Stencil(full.order, full.column[keep], full.row[keep], full.value[keep], full.lower[keep])


@dataclass(frozen=True)
class _System:
    """One mask's ``n x n`` system, unknowns in nested-dissection order: CSC entries and ``n x C`` right-hand side."""

    n: int
    indptr: np.ndarray
    row: np.ndarray
    column: np.ndarray
    value: np.ndarray
    rhs: np.ndarray


def _system(stencil: _Stencil, missing: np.ndarray, pixels: np.ndarray) -> _System:
    """The system of ``missing`` (flat, in the stencil's order) for ``pixels`` (``C x H*W``, same order)."""
    n = int(missing.sum())
    rank = np.cumsum(missing) - 1  # each missing pixel's unknown
    a, b = missing[stencil.column], missing[stencil.row]
    both = a & b
    column, row = rank[stencil.column[both]], rank[stencil.row[both]]
    indptr = np.concatenate(([0], np.cumsum(np.bincount(column, minlength=n))))
    # Right-hand side: w times the known end of every pair with one missing end, added at the missing end
    # (a lower-only stencil holds each pair once: both directions are read from it).
    edge = a != b if stencil.lower.all() else a & ~b
    at = np.where(a[edge], stencil.column[edge], stencil.row[edge])
    known = np.where(a[edge], stencil.row[edge], stencil.column[edge])
    at, weights = rank[at], -stencil.value[edge]
    rhs = np.stack([np.bincount(at, weights * channel[known], n) for channel in pixels], axis=1)
    return _System(n, indptr, row, column, stencil.value[both], rhs)


def _superlu(system: _System) -> np.ndarray:
    """SuperLU (scipy) on the pre-ordered system: no column permutation, diagonal pivots (SPD)."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    n = system.n
    matrix = csc_matrix((system.value, system.row, system.indptr), shape=(n, n))
    factor = splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return factor.solve(system.rhs)


def _cholmod(system: _System) -> np.ndarray:
    """CHOLMOD's supernodal Cholesky (cvxopt) of the lower triangle, in the system's own order."""
    import cvxopt
    from cvxopt import cholmod

    n = system.n
    matrix = cvxopt.spmatrix(cvxopt.matrix(system.value), cvxopt.matrix(system.row), cvxopt.matrix(system.column),
                             (n, n))
    rhs = cvxopt.matrix(system.rhs)
    factor = cholmod.symbolic(matrix, p=cvxopt.matrix(np.arange(n), tc="i"))
    cholmod.numeric(matrix, factor)
    cholmod.solve(factor, rhs)
    return np.asarray(rhs)


def _cholmod_ctypes(session: cholmod_lib.Session, system: _System) -> np.ndarray:
    """CHOLMOD through ``ctypes`` (the GIL let go), on the lower triangle in the system's own order."""
    return session.solve(system.n, system.indptr, system.row, system.value, system.rhs)


@lru_cache(maxsize=1)
def has_cholmod() -> bool:
    """Whether the optional cvxopt package (CHOLMOD; GPL-3) can be imported."""
    try:
        import cvxopt.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def backend(requested: str | None = None) -> str:
    """The solver to use: ``requested``, or CHOLMOD where cvxopt is installed and SuperLU otherwise."""
    if requested is None:
        requested = "cholmod" if has_cholmod() else "superlu"
    elif requested not in BACKENDS:
        raise MicamError(f"Unknown imputation solver {requested!r}; choose one of {', '.join(BACKENDS)}.")
    elif requested == "cholmod" and not has_cholmod():
        raise MicamError("The cholmod solver needs the optional cvxopt package (pip install micam-core[road-fast]).")
    log.debug("ROAD imputation solver: %s", requested)
    return requested


def releases_gil(requested: str | None = None) -> bool:
    """Whether the solver :func:`backend` picks for ``requested`` lets go of the GIL while it works."""
    return backend(requested) == "superlu" or cholmod_lib.available()


def _solve_all(masks: np.ndarray, pixels: np.ndarray, out: np.ndarray, solver: Callable[[_System], np.ndarray],
               stencil: _Stencil) -> None:
    """Fill ``out`` (``N x C x H*W``) at each flat mask of ``masks`` (``N x H*W``) with ``solver``'s solution."""
    ordered = pixels.reshape(pixels.shape[0], -1)[:, stencil.order]
    for k, mask in enumerate(masks):
        missing = mask.ravel()[stencil.order]
        n = int(missing.sum())
        if n in (0, missing.size):  # nothing to solve; or nothing known: every constant solves it, 0 is the
            out[k][:, stencil.order[missing]] = 0.0  # minimum-norm one
            continue
        out[k][:, stencil.order[missing]] = solver(_system(stencil, missing, ordered)).T


def solve(image: torch.Tensor, missing: torch.Tensor, solver: str | None = None) -> torch.Tensor:
    """The noise-free imputation of ``image`` (``C x H x W``) for each mask of ``missing`` (``N x H x W`` bool).

    Returns ``N x C x H x W`` float64 on the image's device: the image where known, the solution where
    missing (exact up to rounding: a direct solve). ``solver``: one of :data:`BACKENDS` (None: :func:`backend`).
    """
    chosen = backend(solver)
    pixels = image.detach().to("cpu", torch.float64).numpy()
    masks = missing.detach().cpu().numpy().astype(bool)
    out = np.repeat(pixels[None], len(masks), axis=0).reshape(len(masks), pixels.shape[0], -1)
    if chosen == "superlu":
        _solve_all(masks, pixels, out, _superlu, _stencil(*pixels.shape[1:]))
    elif cholmod_lib.available():
        with cholmod_lib.Session() as session:
            _solve_all(masks, pixels, out, partial(_cholmod_ctypes, session), _lower(*pixels.shape[1:]))
    else:
        from cvxopt import cholmod

        with _LOCK:
            saved = dict(cholmod.options)
            cholmod.options.update(_CHOLMOD)
            try:
                _solve_all(masks, pixels, out, _cholmod, _lower(*pixels.shape[1:]))
            finally:
                cholmod.options.clear()
                cholmod.options.update(saved)
    return torch.from_numpy(out.reshape(len(masks), *pixels.shape)).to(image.device)
