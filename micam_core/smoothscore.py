"""SS-CAM and IS-CAM channel weights, as torchcam 0.5's ``SSCAM`` and ``ISCAM``: masked forward passes.

Both start as torchcam's Score-CAM: each channel is min-max scaled to [0, 1] at feature resolution
(``(A_k - min) / (max - min + 1e-8)``) and upsampled bilinearly (half-pixel centres) to the input
size, giving a mask ``M_k``; the weights are ``softmax_k`` of a mean target logit over ``N`` masked
inputs, and the map is ``ReLU(sum_k w_k A_k)``. (torchcam subtracts the unmasked logit first: a
constant per image, which the softmax ignores.)

* SS-CAM (Wang et al. 2020, arXiv:2006.14255): input ``(M_k + noise) * X``, noise ``N(0, std^2)`` drawn
  per pixel and sample. The draws come from a generator seeded with ``seed``, in torchcam's order
  (sample, image, channel, pixel), so torchcam after ``torch.manual_seed(seed)`` sees the same noise.
* IS-CAM (Naidu et al. 2020, arXiv:2010.03023): input ``c_i * M_k * X`` with ``c_i = sum_{j<=i} j / N``.
  Constant channels give an all-zero input for every ``i``: evaluated once (dead-channel skipping).

Masked inputs are built ``chunk`` at a time: memory stays at one chunk, never ``K x 3 x H x W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .capture import eval_mode

MASK_CHUNK = 32  # torchcam's default batch_size
NORM_EPS = 1e-8  # torchcam's
_NOISE_BLOCK = 16  # torch's CPU normal sampler fills blocks of 16: chunks of a multiple draw the same stream


def feature_masks(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``K x H x W`` masks of one image's ``K x h x w`` activations (torchcam's normalise, then upsample)."""
    lo = acts.amin(dim=(1, 2), keepdim=True)
    scaled = acts - lo
    scaled = scaled / (scaled.amax(dim=(1, 2), keepdim=True) + NORM_EPS)
    return F.interpolate(scaled[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def _target_logits(model: torch.nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    out = model(x.contiguous(memory_format=torch.channels_last))
    out = out[0] if isinstance(out, (tuple, list)) else out
    return out[:, target].float()


def iscam_weights(model: torch.nn.Module, batch: torch.Tensor, acts: torch.Tensor, targets: list[int],
                  samples: int, chunk: int = MASK_CHUNK) -> tuple[torch.Tensor, int]:
    """``B x K`` IS-CAM weights and the number of forward passes (images) they took."""
    coeffs = (torch.cumsum(torch.arange(1, samples + 1, dtype=torch.float32), 0) / samples).to(acts.device)
    weights, passes = [], 0
    with torch.inference_mode(), eval_mode(model):
        for image, a, target in zip(batch, acts, targets):
            masks = feature_masks(a, tuple(image.shape[-2:]))
            live = masks.flatten(1).amax(1) > 0
            total = torch.zeros(a.shape[0], dtype=torch.float32, device=a.device)
            if not bool(live.all()):  # constant channels: an all-zero input, whatever the coefficient
                total[~live] = samples * _target_logits(model, torch.zeros_like(image)[None], target)[0]
                passes += 1
            pairs = torch.cartesian_prod(torch.arange(samples, device=a.device), torch.nonzero(live).squeeze(1))
            for start in range(0, len(pairs), chunk):
                s, k = pairs[start:start + chunk].reshape(-1, 2).unbind(1)
                x = coeffs[s, None, None, None] * (masks[k, None] * image[None].float())
                total.index_add_(0, k, _target_logits(model, x.to(image.dtype), target))
                passes += len(k)
            weights.append(torch.softmax(total / samples, dim=0))
    return torch.stack(weights).to(acts.dtype), passes


def sscam_weights(model: torch.nn.Module, batch: torch.Tensor, acts: torch.Tensor, targets: list[int],
                  samples: int, std: float, seed: int, chunk: int = MASK_CHUNK) -> tuple[torch.Tensor, int]:
    """``B x K`` SS-CAM weights (noise seeded with ``seed``) and the number of forward passes they took."""
    generator = torch.Generator().manual_seed(int(seed))
    size = tuple(batch.shape[-2:])
    k = acts.shape[1]
    step = chunk if (size[0] * size[1]) % _NOISE_BLOCK == 0 else k  # else one draw per image, as torchcam
    totals = torch.zeros(acts.shape[:2], dtype=torch.float32, device=acts.device)
    with torch.inference_mode(), eval_mode(model):
        masks = [feature_masks(a, size) for a in acts]
        for _ in range(samples):  # torchcam's draw order: sample, image, channel, pixel
            for i, (image, target) in enumerate(zip(batch, targets)):
                for start in range(0, k, step):
                    stop = min(start + step, k)
                    noise = torch.normal(0.0, float(std), (stop - start, *size), generator=generator)
                    noisy = masks[i][start:stop] + noise.to(acts.device)
                    for lo in range(0, stop - start, chunk):
                        x = noisy[lo:lo + chunk, None] * image[None].float()
                        totals[i, start + lo:start + lo + len(x)] += _target_logits(model, x.to(image.dtype), target)
    return torch.softmax(totals / samples, dim=1).to(acts.dtype), samples * k * len(targets)
