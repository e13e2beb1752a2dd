"""RefineCAM: Grad-CAM++ maps of several layers multiplied, as pytorch-grad-cam 1.5.7's ``RefineCAM``.

The chosen layer is the deepest; :func:`refine_layers` adds the shallower ones from the model's layer
list, each at a finer grid than the one before (or, on models whose layers share one grid, such as
ViTs, the layers just before). One forward pass with recording switched on from the shallowest layer,
and one backward pass from the target logit down to it, give every layer's activations and gradients
(:func:`capture_layers`). Each layer's Grad-CAM++ map is ReLU'd, min-max scaled (``x / (max + 1e-7)``
after subtracting the minimum), upsampled bilinearly to the input size; the product of the layers'
maps is the map (pytorch-grad-cam's order). torchcam's ``RefineCAM`` multiplies at the finest layer's
grid instead, and its Grad-CAM++ skips the normalisation of alpha (it divides a copy made by boolean
indexing), so its maps differ; see README.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .cams import gradcampp_weights
from .capture import eval_mode
from .layers import get_module
from .registry import MapInputs, MapResult
from .tokens import layout_of, to_map

if TYPE_CHECKING:
    from .models import LoadedModel

SCALE_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def refine_layers(loaded: LoadedModel, layer: str, count: int) -> list[str]:
    """``layer`` and up to ``count - 1`` shallower layers of the picker's list, deepest first."""
    infos = list(loaded.layers)
    names = [info.name for info in infos]
    if layer not in names:
        return [layer]
    start = names.index(layer)
    chosen = [infos[start]]
    for info in infos[start + 1:]:  # the deepest layer of each finer grid
        if len(chosen) < count and info.height * info.width > chosen[-1].height * chosen[-1].width:
            chosen.append(info)
    for info in infos[start + 1:]:  # models with one grid throughout (ViTs): the layers just before
        if len(chosen) < count and info not in chosen and (info.height, info.width) == (infos[start].height,
                                                                                        infos[start].width):
            chosen.append(info)
    return [info.name for info in chosen]


def why_not(loaded: LoadedModel, layer: str) -> str | None:
    """RefineCAM needs a shallower layer below the chosen one."""
    if len(refine_layers(loaded, layer, 2)) < 2:
        return (f"it multiplies the maps of several layers, and '{layer}' has no shallower layer with a map "
                "in this model's layer list; choose a deeper layer.")
    return None


class _Taps:
    """Forward hooks on several layers: the first to run becomes a leaf and switches recording on."""

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.outputs: dict[str, torch.Tensor] = {}

    def hook(self, name: str):
        def tap(_module, _inputs, output):
            if threading.get_ident() != self.owner or name in self.outputs or not isinstance(output, torch.Tensor):
                return None
            if not self.outputs:
                torch.set_grad_enabled(True)  # restored by the caller's no_grad() on exit
                output = output.detach().requires_grad_(True)
            self.outputs[name] = output
            return output * 1.0  # a new tensor, so in-place operations after the layer stay legal
        return tap


def capture_layers(model: torch.nn.Module, layers: list[str], batch: torch.Tensor,
                   targets: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(activations, d y_c / dA)`` of each layer, ``B x K x h x w`` each, from one forward and backward pass."""
    taps = _Taps()
    with torch.inference_mode(False):
        handles = [get_module(model, name).register_forward_hook(taps.hook(name)) for name in layers]
        try:
            with torch.no_grad(), eval_mode(model):
                out = model(batch)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                rows = torch.arange(batch.shape[0], device=logits.device)
                score = logits[rows, torch.tensor(targets, device=logits.device)].sum()
                with torch.enable_grad():
                    used = [taps.outputs[n] for n in layers]
                    grads = torch.autograd.grad(score, used, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
    hw = tuple(batch.shape[-2:])
    result = []
    for name, act, grad in zip(layers, used, grads):
        layout = layout_of(model, name, tuple(act.shape), hw)
        grad = torch.zeros_like(act) if grad is None else grad
        result.append((to_map(act.detach(), layout), to_map(grad.detach(), layout)))
    return result


def _scaled(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pytorch-grad-cam's scale_cam_image per image: ``(x - min) / (max + 1e-7)``, then bilinear to ``size``."""
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + SCALE_EPS)
    return F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def refinecam(x: MapInputs, layers: int) -> MapResult:
    """The product of the layers' scaled Grad-CAM++ maps, at the input size (``B x H x W``)."""
    names = refine_layers(x.loaded, x.layer, layers)
    size = tuple(x.batch.shape[-2:])
    x.extra_passes += len(x.targets)
    product = None
    for acts, grads in capture_layers(x.model, names, x.batch, x.targets):
        w = gradcampp_weights(acts, grads)
        cam = torch.relu(torch.einsum("bk,bkhw->bhw", w, acts))
        scaled = _scaled(cam, size)
        scaled = _scaled(scaled, size)  # pytorch-grad-cam scales once per layer and once more when aggregating
        product = scaled if product is None else product * scaled
    return product, None

