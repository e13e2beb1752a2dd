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
three right-hand sides of the same factor. The stencil pairs and weights are also computed once per
size, so building a mask's system is a few boolean gathers.
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
OFFSETS = FORWARD + tuple(((-dy, -dx), w) for (dy, dx), w in FORWARD)
LEAF = 4  # nested dissection stops at blocks of at most LEAF x LEAF pixels
_CHOLMOD = {"supernodal": 2, "nmethods": 1, "postorder": True}  # supernodal; only the ordering given
_LOCK = threading.Lock()  # cvxopt's CHOLMOD options are one process-wide dict


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
    """What every mask of one ``h x w`` size shares: the ordering, the neighbour pairs and the weights."""

    order: np.ndarray  # the H*W raster indices in nested-dissection order
    first: np.ndarray  # neighbour pairs (first < second in raster order), one per in-image pair
    second: np.ndarray
    weight: np.ndarray  # w of each pair
    total: np.ndarray  # s_i: the sum of pixel i's in-image neighbour weights


@lru_cache(maxsize=8)
def _stencil(h: int, w: int) -> _Stencil:
    out: list[np.ndarray] = []
    _dissect(h, w, 0, 0, w, out)
    index = np.arange(h * w).reshape(h, w)
    firsts, seconds, weights = [], [], []
    for (dy, dx), wt in FORWARD:
        src = index[: h - dy, max(0, -dx): w - max(0, dx)]
        firsts.append(src.ravel())
        seconds.append(src.ravel() + dy * w + dx)
        weights.append(np.full(src.size, wt))
    first, second, weight = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(weights)
    total = np.bincount(first, weight, h * w) + np.bincount(second, weight, h * w)
    return _Stencil(np.concatenate(out), first, second, weight, total)


def neighbour_sum(x: np.ndarray) -> np.ndarray:
    """``sum_o w_o x[i + o]`` over the 8 in-image neighbours of each pixel of ``... x H x W``."""
    h, w = x.shape[-2:]
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    out = np.zeros_like(x)
    for (dy, dx), wt in OFFSETS:
        out += wt * padded[..., 1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]
    return out


def _solve_one(stencil: _Stencil, missing: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The values at the missing pixels (``n x C``, raster order) of one flat ``missing`` mask.

    ``rhs``: ``H*W x C``, the known neighbours' weighted sums at every pixel.
    """
    import cvxopt
    from cvxopt import cholmod

    unknown = np.flatnonzero(missing)
    n = unknown.size
    if n == missing.size:  # nothing known: every constant solves it; the minimum-norm one is 0
        return np.zeros((n, rhs.shape[1]))
    position = np.full(missing.size, -1, dtype=np.int64)
    position[unknown] = np.arange(n)
    pair = missing[stencil.first] & missing[stencil.second]
    rows = np.concatenate((position[stencil.second[pair]], np.arange(n)))  # lower triangle: row > column
    cols = np.concatenate((position[stencil.first[pair]], np.arange(n)))
    vals = np.concatenate((-stencil.weight[pair], stencil.total[unknown]))
    matrix = cvxopt.spmatrix(cvxopt.matrix(vals), cvxopt.matrix(rows), cvxopt.matrix(cols), (n, n))
    perm = cvxopt.matrix(position[stencil.order[missing[stencil.order]]], tc="i")
    b = cvxopt.matrix(np.asfortranarray(rhs[unknown]))
    factor = cholmod.symbolic(matrix, p=perm)
    cholmod.numeric(matrix, factor)
    cholmod.solve(factor, b)
    return np.asarray(b)


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
                known = pixels * ~mask
                rhs = neighbour_sum(known).reshape(c, -1).T
                values = _solve_one(stencil, mask.ravel(), rhs)
                out[k].reshape(c, -1)[:, mask.ravel()] = values.T
        finally:
            cvxopt.cholmod.options.clear()
            cvxopt.cholmod.options.update(saved)
    return torch.from_numpy(out).to(image.device)
