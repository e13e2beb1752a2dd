"""Exact, vectorised mutual information between a grey image and feature channels.

``MI_k`` is the plug-in mutual information (nats) between the 8-bit luma ``g`` (``H x W``) and
channel ``k`` nearest-upsampled to ``H x W``, where every distinct value is its own category:
the same number as ``sklearn.metrics.mutual_info_score(g.ravel(), A_k^.ravel())``.

Nearest upsampling maps each pixel to one feature cell, so channel ``k`` only decides how the
cells are grouped (cells with equal values share a category). Everything follows from one
``cells x 256`` table of grey-level counts per cell:

    MI = (sum_{l,v} M_lv log M_lv + n log n - sum_l a_l log a_l - sum_v b_v log b_v) / n

with ``M`` the contingency table (groups x grey levels), ``a`` its row sums, ``b`` the grey
histogram. A group of one cell contributes that cell's precomputed row; only groups of tied
cells (all-zero cells after ReLU, ReLU6-clipped cells, ...) need their rows summed, which is one
matrix product per chunk of channels. Nothing of size ``K x H x W`` is ever built.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

GREY_LEVELS = 256
# Bound on the entries of the tied-group contingency block built at once (float64).
_MAX_BLOCK_ENTRIES = 4_000_000


def nearest_cell_index(height: int, width: int, h: int, w: int, device=None) -> torch.Tensor:
    """Feature-cell index (row-major in ``h x w``) of every pixel of an ``height x width`` image.

    Uses ``torch.nn.functional.interpolate(mode="nearest")`` itself so the mapping is exactly
    PyTorch's nearest upsampling, including sizes where ``height`` is not a multiple of ``h``.
    """
    cells = torch.arange(h * w, dtype=torch.float32, device=device).reshape(1, 1, h, w)
    up = F.interpolate(cells, size=(height, width), mode="nearest")
    return up.reshape(height, width).to(torch.int64)


def xlogx_sum(counts: torch.Tensor, dim) -> torch.Tensor:
    """``sum c log c`` along ``dim`` of integer-valued counts, in float64 (``0 log 0 = 1 log 1 = 0``: the
    logarithm of ``max(c, 1)`` needs no special case, and costs half of ``torch.xlogy``)."""
    c = counts.to(torch.float64)
    return (c * c.clamp_min(1.0).log()).sum(dim)


def _group_ids(acts: torch.Tensor) -> torch.Tensor:
    """Per channel, the index of each cell's distinct value (0..groups-1), in cell order."""
    sorted_vals, order = torch.sort(acts, dim=1, stable=True)
    is_new = torch.ones_like(sorted_vals, dtype=torch.bool)
    is_new[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    ids_sorted = torch.cumsum(is_new, dim=1) - 1
    return torch.empty_like(ids_sorted).scatter_(1, order, ids_sorted)


def _tied_groups_xlogx(flat: torch.Tensor, group_cells: torch.Tensor, counts: torch.Tensor,
                       channels: int, n: int) -> torch.Tensor:
    """``sum M log M`` per channel over the groups of two or more tied cells.

    ``flat`` holds each (channel, cell)'s global group id (``channel * cells + group``) and
    ``group_cells`` the number of cells in each global group. Counts are summed in float32, exact while
    they stay below 2**24 pixels (checked; float64 beyond).
    """
    cells = counts.shape[0]
    out = torch.zeros(channels, dtype=torch.float64, device=flat.device)
    tied_group = group_cells > 1
    num_tied = int(tied_group.sum())
    if num_tied == 0:
        return out
    compact = torch.cumsum(tied_group, 0) - 1  # dense ids of the tied groups
    tied_entry = tied_group[flat]
    rows = compact[flat[tied_entry]]
    cols = torch.arange(cells, device=flat.device).repeat(channels)[tied_entry]
    group_channel = torch.nonzero(tied_group).squeeze(1) // cells
    per_block = max(1, _MAX_BLOCK_ENTRIES // GREY_LEVELS)
    exact = torch.float32 if n < 2**24 else torch.float64
    counts = counts.to(exact)
    for start in range(0, num_tied, per_block):  # blocks of groups bound memory; usually one block
        stop = min(start + per_block, num_tied)
        sel = (rows >= start) & (rows < stop)
        membership = torch.zeros(stop - start, cells, dtype=exact, device=flat.device)
        membership[rows[sel] - start, cols[sel]] = 1.0
        table = membership @ counts  # merged grey-level counts of each tied group
        out.index_add_(0, group_channel[start:stop], xlogx_sum(table, 1))
    return out


def mutual_information(gray_u8: np.ndarray | torch.Tensor, activations) -> np.ndarray:
    """MI (nats) between ``gray_u8`` (``H x W`` uint8) and each channel of ``activations``.

    ``activations`` is ``K x h x w`` (NumPy or torch); returns ``K`` float64 values equal to
    ``mutual_info_score(gray.ravel(), nearest_upsampled_channel.ravel())`` for each channel.
    """
    acts = torch.as_tensor(activations)
    gray = torch.as_tensor(np.asarray(gray_u8) if not isinstance(gray_u8, torch.Tensor) else gray_u8)
    _validate(gray, acts)
    return mutual_information_torch(gray.to(acts.device), acts.detach()).cpu().numpy()


def _validate(gray: torch.Tensor, acts: torch.Tensor) -> None:
    if gray.ndim != 2 or gray.dtype != torch.uint8:
        raise ValueError(f"gray_u8 must be a 2-D uint8 array, got {tuple(gray.shape)} {gray.dtype}")
    if acts.ndim != 3:
        raise ValueError(f"activations must be K x h x w, got shape {tuple(acts.shape)}")
    if not acts.is_floating_point() and acts.dtype not in (torch.int32, torch.int64, torch.uint8):
        raise ValueError(f"activations must be numeric, got {acts.dtype}")
    if acts.is_floating_point() and not bool(torch.isfinite(acts).all()):
        raise ValueError("activations contain NaN or infinity")
    if acts.shape[1] > gray.shape[0] or acts.shape[2] > gray.shape[1]:
        raise ValueError("activations must not be larger than the image (upsampling only)")


def mutual_information_torch(gray: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """Tensor version of :func:`mutual_information` (no validation); returns float64 ``K``."""
    height, width = gray.shape
    channels, h, w = acts.shape
    n = height * width
    cell = nearest_cell_index(height, width, h, w, device=gray.device).reshape(-1)
    levels = gray.reshape(-1).to(torch.int64)
    counts = torch.bincount(cell * GREY_LEVELS + levels, minlength=h * w * GREY_LEVELS)
    counts = counts.reshape(h * w, GREY_LEVELS).to(torch.float64)
    grey_hist = counts.sum(0)
    if int((grey_hist > 0).sum()) <= 1:
        return torch.zeros(channels, dtype=torch.float64, device=acts.device)

    group = _group_ids(acts.reshape(channels, h * w))
    cell_pixels = counts.sum(1)
    offsets = torch.arange(channels, device=acts.device).unsqueeze(1) * (h * w)
    flat = (group + offsets).reshape(-1)
    group_cells = torch.bincount(flat, minlength=channels * h * w)
    group_pixels = torch.bincount(flat, weights=cell_pixels.repeat(channels), minlength=channels * h * w)
    tied = (group_cells[flat] > 1).reshape(channels, h * w)

    cell_xlogx = xlogx_sum(counts, 1)
    single_part = (cell_xlogx.unsqueeze(0) * (~tied)).sum(1)
    joint = single_part + _tied_groups_xlogx(flat, group_cells, counts, channels, n)
    rows = xlogx_sum(group_pixels.reshape(channels, h * w), 1)
    mi = (joint + n * math.log(n) - rows - xlogx_sum(grey_hist, 0)) / n
    one_group = group.max(dim=1).values == 0
    return torch.where(one_group, torch.zeros_like(mi), mi.clamp_min(0.0))
