"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), as pytorch-grad-cam 1.5.7's ``AblationCAM``.

Channel ``k``'s weight is the relative drop of the target logit when channel ``k`` of the target
layer's output is ablated: ``w_k = (y_c - y_c^{-k}) / y_c``; the map is ``ReLU(sum_k w_k A_k)``.
(Where the logit is exactly 0 the drop itself is the weight; pytorch-grad-cam divides by zero.)
Ablating sets the channel to 0 when the layer's smallest output is 0 (after a ReLU), else to that
minimum minus 1e7 (pytorch-grad-cam's choice for layers with negative values; it lowers the value by
a further 1e7 for each earlier copy in a batch, which the next normalisation layer makes invisible).
Token layers are ablated on every token, the class token included, as pytorch-grad-cam's ViT layer.

The ablated outputs go only through the layers after the target layer, ``ABLATION_CHUNK`` channels
per pass (:func:`micam_core.afterlayer.run_after`); the first pass also carries the un-ablated output,
whose score must equal the shared capture's. With zero ablation a channel that is zero everywhere is
left unchanged, so its weight is exactly 0 without a pass (dead-channel skipping).
"""

from __future__ import annotations

import torch

from .afterlayer import layer_output, run_after
from .tokens import layout_of

ABLATION_CHUNK = 32  # pytorch-grad-cam's default batch_size
ABLATION_VALUE = 1e7


def ablated_copies(output: torch.Tensor, channels: torch.Tensor, dim: int, value: float,
                   keep_first: bool = False) -> torch.Tensor:
    """Copies of the ``1 x ...`` output, copy ``i`` with channel ``channels[i]`` (along ``dim``) set to
    ``value``; with ``keep_first``, the output itself comes first."""
    k = output.shape[dim]
    onehot = torch.nn.functional.one_hot(channels, k).to(torch.bool)
    if keep_first:
        onehot = torch.cat([torch.zeros_like(onehot[:1]), onehot])
    shape = [onehot.shape[0]] + [1] * (output.ndim - 1)
    shape[dim % output.ndim] = k
    fill = torch.as_tensor(value, dtype=output.dtype, device=output.device)
    return torch.where(onehot.reshape(shape), fill, output.expand(onehot.shape[0], *output.shape[1:]))


def ablation_weights(model: torch.nn.Module, layer: str, batch: torch.Tensor, logits: torch.Tensor,
                     targets: list[int], chunk: int = ABLATION_CHUNK) -> tuple[torch.Tensor, int]:
    """``B x K`` Ablation-CAM weights and the number of images the extra passes took."""
    rows, passes = [], 0
    for i, target in enumerate(targets):
        score = float(logits[i, target])
        ablated, n = _ablated_scores(model, layer, batch[i], target, score, chunk)
        drop = score - ablated
        rows.append(drop / score if score != 0 else drop)  # a zero logit (zero-initialised head): the drop itself
        passes += n
    return torch.stack(rows), passes


def _ablated_scores(model: torch.nn.Module, layer: str, image: torch.Tensor, target: int, score: float,
                    chunk: int) -> tuple[torch.Tensor, int]:
    """Target logit with each channel ablated (``K``; skipped channels keep ``score``), and the passes taken."""
    output = layer_output(model, layer, image)
    layout = layout_of(model, layer, tuple(output.shape), tuple(image.shape[-2:]))
    dim = 1 if layout.kind == "NCHW" else output.ndim - 1
    lowest = float(output.min())
    value = 0.0 if lowest == 0 else lowest - ABLATION_VALUE
    k = output.shape[dim]
    others = [d for d in range(output.ndim) if d != dim]
    live = output.abs().amax(dim=others[1:]).reshape(k) > 0 if value == 0 else torch.ones(k, dtype=torch.bool)
    todo = torch.nonzero(live.to(output.device)).squeeze(1)
    scores = torch.full((k,), score, dtype=torch.float32, device=output.device)
    passes = 0
    for start in range(0, len(todo), chunk):
        idx = todo[start:start + chunk]
        check = start == 0
        n = len(idx) + int(check)
        out = run_after(model, layer, image, lambda o, idx=idx, check=check: ablated_copies(
            o, idx, dim, value, keep_first=check), n, expected=(0, target, score) if check else None)
        scores[idx] = out[int(check):, target].float()
        passes += n
    return scores, passes
