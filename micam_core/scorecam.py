"""Score-CAM's channel weights: one masked forward pass per channel, batched.

As Wang et al. (2020) and pytorch-grad-cam: each channel is upsampled bilinearly (corners
aligned) to the input size, min-max scaled to [0, 1], multiplied into the normalised input, and
the target logit of that masked input is its score; the weights are the softmax of the scores.
Channels that are zero everywhere give the same all-zero input, so it is evaluated once.
The masked inputs are built chunk by chunk: memory stays at one chunk, never ``K x 3 x H x W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .capture import eval_mode

SCORECAM_CHUNK = 32
NORM_EPS = 1e-8  # as pytorch-grad-cam


def scorecam_weights(model: torch.nn.Module, batch: torch.Tensor, acts: torch.Tensor, targets: list[int],
                     chunk: int = SCORECAM_CHUNK) -> tuple[torch.Tensor, int]:
    """``B x K`` Score-CAM weights and the number of forward passes (images) it took."""
    weights, passes = [], 0
    for i, target in enumerate(targets):
        scores, n = _channel_scores(model, batch[i], acts[i], target, chunk)
        weights.append(torch.softmax(scores, dim=0))
        passes += n
    return torch.stack(weights).to(acts.dtype), passes


def scorecam_passes(acts: torch.Tensor) -> int:
    """Forward passes Score-CAM needs for ``K x h x w`` activations (one per live channel, one shared)."""
    live = int((acts.reshape(acts.shape[0], -1) != 0).any(1).sum())
    return live + int(live < acts.shape[0])


def _channel_scores(model: torch.nn.Module, image: torch.Tensor, acts: torch.Tensor, target: int,
                    chunk: int) -> tuple[torch.Tensor, int]:
    k = acts.shape[0]
    live = (acts.reshape(k, -1) != 0).any(1)
    live_idx = torch.nonzero(live).squeeze(1)
    scores = torch.empty(k, dtype=torch.float32, device=acts.device)
    passes = 0
    with torch.inference_mode(), eval_mode(model):
        if not bool(live.all()):  # dead channels: the input times zero
            scores[~live] = _logit(model, torch.zeros_like(image)[None], target)[0]
            passes += 1
        for start in range(0, len(live_idx), chunk):
            idx = live_idx[start:start + chunk]
            up = F.interpolate(acts[idx][None].float(), size=image.shape[-2:], mode="bilinear",
                               align_corners=True)[0]
            lo = up.amin(dim=(1, 2), keepdim=True)
            hi = up.amax(dim=(1, 2), keepdim=True)
            masks = (up - lo) / (hi - lo + NORM_EPS)
            masked = (image[None] * masks[:, None]).contiguous(memory_format=torch.channels_last)
            scores[idx] = _logit(model, masked.to(image.dtype), target)
            passes += len(idx)
    return scores, passes


def _logit(model: torch.nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    return out[:, target].float()
