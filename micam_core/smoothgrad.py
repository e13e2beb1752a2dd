"""SmoothGrad-CAM++ (Omeiza et al. 2019, arXiv:1908.01224), as torchcam 0.5's ``SmoothGradCAMpp``.

``N`` noisy copies of the input (``X + noise``, noise ``N(0, std^2)`` per input value) go through one
batched capture (forward, and backward from the target logit to the layer only). With ``g`` the
gradient ``d y_c / dA`` of each copy, ``D2 = mean(g^2)`` and ``D3 = mean(g^3)`` over the copies:
``alpha = D2 / (2 D2 + sum_ab A_ab D3 + 1e-8)`` (``A`` the clean activations), ``w_k = sum_ij alpha
ReLU(g_N)`` and the map ``ReLU(sum_k w_k A'_k)``. As torchcam does, ``g_N`` and ``A'`` are the *last*
noisy copy's gradient and activations. The noise comes from a generator seeded with ``seed``, drawn in
torchcam's order (copy, image, channel, pixel): torchcam after ``torch.manual_seed(seed)`` draws the same.
"""

from __future__ import annotations

import torch

from .capture import capture

SMOOTHGRAD_EPS = 1e-8  # torchcam's


def noisy_batches(batch: torch.Tensor, samples: int, std: float, seed: int) -> torch.Tensor:
    """``samples * B`` noisy copies of ``batch``, copy-major (torchcam's draw order)."""
    generator = torch.Generator().manual_seed(int(seed))
    noise = [torch.normal(0.0, float(std), tuple(batch.shape), generator=generator) for _ in range(samples)]
    return torch.cat([batch + n.to(batch.device, batch.dtype) for n in noise])


def smoothgradcampp(model: torch.nn.Module, layer: str, batch: torch.Tensor, acts: torch.Tensor,
                    targets: list[int], samples: int, std: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B x h x w ReLU'd map, B x K weights)`` of SmoothGrad-CAM++ for ``B`` images."""
    b = batch.shape[0]
    cap = capture(model, layer, noisy_batches(batch, samples, std, seed), lambda _: targets * samples,
                  want_logit_grad=True, want_prob_grad=False)
    grads = cap.grad_logit.float().reshape(samples, b, *cap.grad_logit.shape[1:])
    d2, d3 = grads.pow(2).mean(0), grads.pow(3).mean(0)
    alpha = d2 / (2 * d2 + (d3 * acts.float()).sum(dim=(2, 3), keepdim=True) + SMOOTHGRAD_EPS)
    weights = (alpha * torch.relu(grads[-1])).sum(dim=(2, 3))
    last = cap.activations[-b:]
    cam = torch.relu(torch.einsum("bk,bkhw->bhw", weights.to(last.dtype), last))
    return cam, weights.to(acts.dtype)
