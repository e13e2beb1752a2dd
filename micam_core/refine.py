"""RefineCAM: Grad-CAM++ maps of several layers multiplied, as pytorch-grad-cam 1.5.7's ``RefineCAM``.

The chosen layer is the deepest; :func:`refine_layers` adds the shallower ones from the model's layer
list, each at a finer grid than the one before (or, on models whose layers share one grid, such as
ViTs, the layers just before). The shared pass gives every layer's activations and gradients (the
capture's ``layers`` request: recording switched on from the shallowest layer, and one backward pass
from the target logit down to it). Each layer's Grad-CAM++ map is ReLU'd, min-max scaled (``x / (max + 1e-7)``
after subtracting the minimum), upsampled bilinearly to the input size; the product of the layers'
maps is the map (pytorch-grad-cam's order). torchcam's ``RefineCAM`` multiplies at the finest layer's
grid instead, and its Grad-CAM++ skips the normalisation of alpha (it divides a copy made by boolean
indexing), so its maps differ; see README.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .cams import gradcampp_weights
from .registry import MapInputs, MapResult

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


def _scaled(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pytorch-grad-cam's scale_cam_image per image: ``(x - min) / (max + 1e-7)``, then bilinear to ``size``."""
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + SCALE_EPS)
    return F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def refinecam(x: MapInputs, layers: int) -> MapResult:
    """The product of the layers' scaled Grad-CAM++ maps, at the input size (``B x H x W``)."""
    names = refine_layers(x.loaded, x.layer, layers)
    size = tuple(x.batch.shape[-2:])
    product = None
    for acts, grads in [(x.activations, x.grad_logit), *(x.layer_maps[n] for n in names[1:])]:
        w = gradcampp_weights(acts, grads)
        cam = torch.relu(torch.einsum("bk,bkhw->bhw", w, acts))
        scaled = _scaled(cam, size)
        scaled = _scaled(scaled, size)  # pytorch-grad-cam scales once per layer and once more when aggregating
        product = scaled if product is None else product * scaled
    return product, None

