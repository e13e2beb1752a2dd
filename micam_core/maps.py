"""Map arithmetic shared by every method: combining channels, upsampling, smoothing, scaling."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import MicamError
from .fields import UPSAMPLING

# The authors' smoothing: an 11 x 11 Gaussian kernel with sigma 7 at 224 px (scaled with size).
PAPER_KERNEL, PAPER_SIGMA, PAPER_SIZE = 11, 7.0, 224
PAPER_SMOOTHING = f"a Gaussian (kernel {PAPER_KERNEL}, sigma {PAPER_SIGMA:g} at {PAPER_SIZE} px)"  # in words


def combine(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)`` at feature resolution (upsampling is linear: upsample once, later)."""
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights.to(acts.dtype), acts))


def render_map(lowres: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Upsample a feature-resolution map to ``size`` (H, W) and min-max it to [0, 1].

    ``mode="paper"``: nearest upsampling, then the authors' Gaussian smoothing (:data:`PAPER_SMOOTHING`,
    scaled with the size, reflected borders). ``mode="bilinear"``: bilinear upsampling
    (half-pixel centres, as OpenCV and pytorch-grad-cam).
    """
    t = torch.as_tensor(np.asarray(lowres, dtype=np.float32))[None, None]
    if mode == "paper":
        up = gaussian_blur(F.interpolate(t, size=size, mode="nearest"), size)
    elif mode == "bilinear":
        up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    else:
        raise MicamError(f"Unknown upsampling '{mode}'; choose from {UPSAMPLING}.")
    return minmax(up[0, 0]).numpy()


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1]; a constant map becomes all zeros."""
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 0.0:
        return torch.zeros_like(x, dtype=torch.float32)
    return ((x - lo) / (hi - lo)).to(torch.float32)


def paper_kernel(size: tuple[int, int]) -> tuple[int, float]:
    """Kernel size (odd) and sigma of the paper's smoothing, scaled from 224 px to ``size``."""
    scale = min(size) / PAPER_SIZE
    ksize = max(1, int(round(PAPER_KERNEL * scale)) | 1)
    return ksize, PAPER_SIGMA * scale


def gaussian_blur(x: torch.Tensor, size: tuple[int, int], ksize: int | None = None,
                  sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of an ``N x 1 x H x W`` tensor with reflected borders (OpenCV's default).

    Kernel size and sigma default to the paper's smoothing scaled to ``size``.
    """
    if ksize is None or sigma is None:
        ksize, sigma = paper_kernel(size)
    if ksize < 3 or min(x.shape[-2:]) <= ksize // 2:
        return x
    half = ksize // 2
    coords = torch.arange(ksize, dtype=torch.float32) - half
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    x = F.pad(x, (half, half, half, half), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, ksize))
    return F.conv2d(x, kernel.view(1, 1, ksize, 1))


