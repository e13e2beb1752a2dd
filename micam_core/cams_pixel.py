"""Maps at input resolution (FullGrad, Guided Grad-CAM) and MI CAM on quantile bins (our extension).

FullGrad and Guided Grad-CAM return ``B x H x W`` maps: bilinear display upsampling to the input size
is then the identity. Equal to pytorch-grad-cam 1.5.7 (tests/test_cams_extra.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .maps import combine
from .mi import nearest_cell_index, xlogx_sum
from .registry import MapInputs, MapResult

SCALE_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def scale_each(maps: torch.Tensor) -> torch.Tensor:
    """Each ``h x w`` map of ``B x C x h x w`` shifted to min 0 and divided by ``1e-7 + max`` (pytorch-grad-cam)."""
    maps = maps - maps.amin(dim=(2, 3), keepdim=True)
    return maps / (SCALE_EPS + maps.amax(dim=(2, 3), keepdim=True))


def scaled_sum(magnitude: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``sum_k scale_each(scale_k * magnitude_k)`` for ``B x K x h x w`` magnitudes, in three passes over them:
    ``(s m - min) / (eps + s (max - min))`` summed is ``sum_k c_k m_k - sum_k c_k min_k``."""
    lo, hi = magnitude.amin(dim=(2, 3)), magnitude.amax(dim=(2, 3))  # B x K (no copy of channels-last grads)
    c = scale / (SCALE_EPS + scale * (hi - lo))
    return torch.einsum("bkhw,bk->bhw", magnitude, c) - (c * lo).sum(1)[:, None, None]


def fullgrad(x: MapInputs) -> MapResult:
    """FullGrad: ``sum_c s(|x_c dy/dx_c|) + sum_layers up(sum_k s(|b_k dy/dz_k|))``, ``s`` a per-map rescale.

    Upsampling is linear, so channels, and layers of one resolution, are summed first and upsampled once.
    """
    size = x.input_grad.shape[-2:]
    total = scale_each((x.input_grad * x.batch).abs()).sum(1)
    by_size: dict[tuple[int, int], torch.Tensor] = {}
    for bias, grad in x.bias_grads:
        layer = scaled_sum(grad.abs(), bias.abs())[:, None].float()
        key = tuple(layer.shape[-2:])
        by_size[key] = by_size[key] + layer if key in by_size else layer
    for layers in by_size.values():
        total = total + F.interpolate(layers, size=size, mode="bilinear", align_corners=False)[:, 0]
    return total, None


def guided_gradcam(x: MapInputs) -> MapResult:
    """Guided Grad-CAM: ``sum_c |G_c| * minmax(up(Grad-CAM))``, ``G`` the guided-backpropagation input gradient."""
    lowres = combine(x.grad_logit.mean(dim=(2, 3)), x.activations)
    up = F.interpolate(lowres[:, None].float(), size=x.guided_grad.shape[-2:], mode="bilinear",
                       align_corners=False)
    up = up - up.amin(dim=(2, 3), keepdim=True)
    up = up / up.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(up.dtype).tiny)
    return (x.guided_grad.abs() * up).sum(1), None


def quantile_edges(sorted_values: torch.Tensor, bins: int) -> torch.Tensor:
    """The ``i / bins`` quantiles (``0 < i < bins``) of each row of ascending ``sorted_values``, float64, as
    ``torch.quantile`` computes them (rank ``q (n - 1)``, linear interpolation between its neighbours)."""
    n = sorted_values.shape[-1]
    q = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=sorted_values.device)[1:-1]
    ranks = q * (n - 1)
    below, above = ranks.long(), ranks.ceil().long()
    v = sorted_values.to(torch.float64)
    return v[..., below].lerp(v[..., above], (ranks - below).expand(*v.shape[:-1], -1))


def quantile_bins(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index (0..bins-1) of each value of each row: edges at the row's ``i / bins`` quantiles
    (linear interpolation, as ``numpy.quantile``), a value equal to an edge goes to the upper bin."""
    if values.dtype == torch.uint8 and values.shape[0] == 1:  # an 8-bit image: sorted from its histogram
        cumulative = torch.bincount(values[0].long(), minlength=256).cumsum(0)
        ranks = torch.arange(values.shape[1], device=values.device)
        ordered = torch.searchsorted(cumulative, ranks, right=True)[None]
    else:  # sorting the float32 values orders them as their float64 copies would
        ordered = torch.sort(values, dim=-1).values
    edges = quantile_edges(ordered, bins).contiguous()
    return torch.searchsorted(edges, values.to(torch.float64).contiguous(), right=True)


def binned_mi(gray: torch.Tensor, acts: torch.Tensor, bins: int) -> torch.Tensor:
    """``K`` MI values (nats) between the grey image and each channel, both cut into ``bins`` quantile bins first.

    The plug-in MI of two variables with ``bins`` values each, from each channel's ``bins x bins`` joint
    table: one ``cells x bins`` table of grey-bin counts per feature cell (nearest upsampling sends each
    pixel to one cell), added up over the cells of each activation bin by one scatter.
    """
    k, h, w = acts.shape
    height, width = gray.shape
    n = height * width
    cell = nearest_cell_index(height, width, h, w, device=acts.device).reshape(-1)
    gray_bins = quantile_bins(gray.reshape(1, -1), bins)[0].to(acts.device)
    counts = torch.bincount(cell * bins + gray_bins, minlength=h * w * bins).reshape(h * w, bins).to(torch.float64)
    act_bins = quantile_bins(acts.reshape(k, -1), bins)  # K x cells
    joint = torch.zeros(k, bins, bins, dtype=torch.float64, device=acts.device).scatter_add_(
        1, act_bins[..., None].expand(-1, -1, bins), counts.expand(k, -1, -1))  # joint[k, bin of c, g] += counts[c, g]
    rows, grey = joint.sum(2), counts.sum(0)
    mi = (xlogx_sum(joint, (1, 2)) + math.log(n) * n - xlogx_sum(rows, 1) - xlogx_sum(grey, 0)) / n
    return mi.clamp_min(0.0)


def micam_binned(x: MapInputs, bins: int = 16) -> MapResult:
    """MI CAM with each channel and the grey image quantised to ``bins`` quantile bins before the MI."""
    acts = x.activations
    mi = torch.stack([binned_mi(torch.from_numpy(g).to(acts.device), acts[i], bins)
                      for i, g in enumerate(x.grays)]).to(acts.dtype)
    return combine(mi, acts), mi
