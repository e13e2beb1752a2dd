"""Noisy linear imputation (Rong et al., ICML 2022, "ROAD"): one exact sparse Cholesky solve per mask.

Each missing pixel becomes the weighted mean of its in-image 8 neighbours (1/6 for the four edge
neighbours, 1/12 for the four corners), missing neighbours included: one sparse linear system per
mask, ``s_i x_i - sum_j w_ij x_j = sum_k w_ik v_k`` over missing ``i`` (``j`` missing, ``k`` known,
``s_i`` the sum of the in-image weights). It is what pytorch-grad-cam 1.5.7's
``NoisyLinearImputer`` solves with one ``scipy.sparse.linalg.spsolve`` per mask; the noise is added
by the caller (:func:`micam_core.road.impute_many`).

The matrix is the weighted graph Laplacian of the pixel grid restricted to the missing pixels
(Dirichlet at the known ones): symmetric positive definite whenever some pixel is known. It is
factorised by CHOLMOD's supernodal Cholesky (through cvxopt), ordered by a nested dissection of the
whole pixel grid computed once per image size (restricted to each mask's pixels it stays a good
ordering, and CHOLMOD is told to use it instead of searching for one); the three colour channels are
three right-hand sides of the same factor. The grid's matrix entries are also computed once per size,
so building a mask's system is a few boolean gathers. With no pixel known every constant solves the
system; the minimum-norm solution, 0, is returned.

CHOLMOD's options and workspace are process-wide in cvxopt: every call here holds one lock, so
concurrent analyses (app threads, :func:`micam_core.road.pipelined`) never share them mid-solve.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .errors import MicamError

log = logging.getLogger(__name__)

EDGE, CORNER = 1.0 / 6.0, 1.0 / 12.0
# The 8 neighbour offsets (dy, dx) and weights; the first four point forward in raster order.
FORWARD = (((0, 1), EDGE), ((1, -1), CORNER), ((1, 0), EDGE), ((1, 1), CORNER))
LEAF = 4  # nested dissection stops at blocks of at most LEAF x LEAF pixels
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

    The entries are the lower triangle of the full grid's matrix, one per (column ``first``, row
    ``second >= first``) in column-major order: ``s_i`` on the diagonal, ``-w`` for each neighbour pair.
    A mask's matrix is the entries whose two pixels are both missing; its right-hand side comes from the
    pairs with exactly one missing pixel.
    """

    order: np.ndarray  # the H*W raster indices in nested-dissection order
    first: np.ndarray
    second: np.ndarray
    value: np.ndarray


@lru_cache(maxsize=8)
def _stencil(h: int, w: int) -> _Stencil:
    out: list[np.ndarray] = []
    _dissect(h, w, 0, 0, w, out)
    index = np.arange(h * w).reshape(h, w)
    firsts, seconds, weights = [], [], []
    for (dy, dx), wt in FORWARD:
        src = index[: h - dy, max(0, -dx): w - max(0, dx)].ravel()
        firsts.append(src)
        seconds.append(src + dy * w + dx)
        weights.append(np.full(src.size, wt))
    first, second, weight = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights)
    total = np.bincount(first, weight, h * w) + np.bincount(second, weight, h * w)
    first, second = np.concatenate((first, index.ravel())), np.concatenate((second, index.ravel()))
    value = np.concatenate((-weight, total))
    column_major = np.lexsort((second, first))
    return _Stencil(np.concatenate(out), first[column_major], second[column_major], value[column_major])


def _solve_one(stencil: _Stencil, missing: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The values at the missing pixels (``n x C``, raster order) of one flat ``missing`` mask.

    ``pixels``: ``C x H*W``.
    """
    import cvxopt
    from cvxopt import cholmod

    unknown = np.flatnonzero(missing)
    n = unknown.size
    if n == 0 or n == missing.size:  # nothing to solve; or nothing known: every constant solves it, 0 is the
        return np.zeros((n, pixels.shape[0]))  # minimum-norm one
    position = np.full(missing.size, -1, dtype=np.int64)
    position[unknown] = np.arange(n)
    a, b = missing[stencil.first], missing[stencil.second]
    both, one = a & b, a ^ b
    matrix = cvxopt.spmatrix(cvxopt.matrix(stencil.value[both]), cvxopt.matrix(position[stencil.second[both]]),
                             cvxopt.matrix(position[stencil.first[both]]), (n, n))
    # Right-hand side: w times the known end of every pair with one missing end, added at the missing end.
    ends, weights = np.stack((stencil.first[one], stencil.second[one])), -stencil.value[one]
    first_missing = a[one]
    at = position[np.where(first_missing, ends[0], ends[1])]
    known = np.where(first_missing, ends[1], ends[0])
    rhs = np.stack([np.bincount(at, weights * channel[known], n) for channel in pixels], axis=1)
    perm = cvxopt.matrix(position[stencil.order[missing[stencil.order]]], tc="i")
    rhs = cvxopt.matrix(rhs)
    factor = cholmod.symbolic(matrix, p=perm)
    cholmod.numeric(matrix, factor)
    cholmod.solve(factor, rhs)
    return np.asarray(rhs)


def solve(image: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    """The noise-free imputation of ``image`` (``C x H x W``) for each mask of ``missing`` (``N x H x W`` bool).

    Returns ``N x C x H x W`` float64 on the image's device: the image where known, the solution where
    missing (exact up to rounding: a direct solve).
    """
    try:
        import cvxopt.cholmod
    except ImportError as exc:  # a declared dependency; say so instead of a traceback
        raise MicamError("ROAD's imputation needs the cvxopt package (pip install cvxopt).") from exc
    pixels = image.detach().to("cpu", torch.float64).numpy()
    masks = missing.detach().cpu().numpy().astype(bool)
    c, h, w = pixels.shape
    stencil = _stencil(h, w)
    out = np.repeat(pixels[None], len(masks), axis=0)
    with _LOCK:
        saved = dict(cvxopt.cholmod.options)
        cvxopt.cholmod.options.update(_CHOLMOD)
        try:
            for k, mask in enumerate(masks):
                flat = mask.ravel()
                out[k].reshape(c, -1)[:, flat] = _solve_one(stencil, flat, pixels.reshape(c, -1)).T
        finally:
            cvxopt.cholmod.options.clear()
            cvxopt.cholmod.options.update(saved)
    return torch.from_numpy(out).to(image.device)
