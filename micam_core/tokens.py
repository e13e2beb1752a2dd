"""Layer outputs of any layout -> ``B x K x h x w`` maps: CNN maps, channels-last grids, token sequences.

A :class:`Layout` says how one layer's raw output is laid out:

* ``"NCHW"``: a CNN feature map, used as is;
* ``"NHWC"``: a channels-last grid (timm Swin and others with ``output_fmt="NHWC"``): permuted;
* ``"NLC"``: a token sequence ``B x N x C`` (ViT, DeiT, EVA, Mixer, ...): the first ``prefix`` tokens
  (class, distillation, register tokens) are dropped and the rest reshaped to the ``h x w`` patch grid.

:func:`to_map` is a reshape, slice and permute only, so the gradient of the map is the same function of
the gradient of the raw output: the capture applies it to both. Layouts are decided once per model at
load time (:func:`remember`) and otherwise inferred from the output shape, the input size and the model.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError

LAYOUTS = ("NCHW", "NHWC", "NLC")
_MAX_PREFIX = 16  # class + distillation + register tokens never exceed this in timm
_ASPECT_TOLERANCE = 1.5  # a grid's aspect may differ from the input's by this factor (padding, rounding)

_remembered: weakref.WeakKeyDictionary[nn.Module, dict[str, Layout]] = weakref.WeakKeyDictionary()
_nhwc_models: weakref.WeakSet[nn.Module] = weakref.WeakSet()


@dataclass(frozen=True)
class Layout:
    """How a raw layer output of shape ``shape`` becomes a ``B x channels x height x width`` map."""

    kind: str
    shape: tuple[int, ...]  # raw output shape without the batch dimension
    channels: int
    height: int
    width: int
    prefix: int = 0  # leading non-patch tokens dropped (NLC only)

    def describe(self) -> str:
        if self.kind == "NLC":
            extra = f", {self.prefix} prefix token{'s' * (self.prefix != 1)} dropped" if self.prefix else ""
            return f"{self.channels} x {self.height} x {self.width} tokens{extra}"
        if self.kind == "NHWC":
            return f"{self.channels} x {self.height} x {self.width} channels-last"
        return f"{self.channels} x {self.height} x {self.width}"


def to_map(x: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The ``B x K x h x w`` map of a raw output ``x`` (or of its gradient): reshape/slice/permute only."""
    if layout.kind == "NCHW":
        return x
    if layout.kind == "NHWC":
        return x.permute(0, 3, 1, 2)
    patches = x[:, layout.prefix:, :]
    return patches.reshape(x.shape[0], layout.height, layout.width, layout.channels).permute(0, 3, 1, 2)


def infer_layout(shape: tuple[int, ...], input_hw: tuple[int, int], *, prefix_hint: int = 0,
                 grid_hint: tuple[int, int] | None = None, nhwc_hint: bool = False) -> Layout | None:
    """The layout of a raw output ``shape`` (batch first), or ``None`` when it is no spatial grid.

    ``prefix_hint``: the model's ``num_prefix_tokens``; ``grid_hint``: its patch grid; ``nhwc_hint``:
    the model's grids are channels-last (decides the rare shapes that read either way).
    """
    shape = tuple(int(s) for s in shape[1:])
    if len(shape) == 3:
        return _layout_4d(shape, input_hw, nhwc_hint)
    if len(shape) == 2:
        return _layout_tokens(shape, input_hw, prefix_hint, grid_hint)
    return None


def _plausible_grid(h: int, w: int, input_hw: tuple[int, int]) -> bool:
    """``h x w`` (more than one cell) could be a downsampled grid of the input."""
    height, width = input_hw
    if h * w <= 1 or h > height or w > width:
        return False
    aspect = (height / h) / (width / w)
    return 1 / _ASPECT_TOLERANCE <= aspect <= _ASPECT_TOLERANCE


def _layout_4d(shape: tuple[int, ...], input_hw: tuple[int, int], nhwc_hint: bool) -> Layout | None:
    a, b, c = shape
    nchw = _plausible_grid(b, c, input_hw)
    nhwc = _plausible_grid(a, b, input_hw)
    if nhwc and (nhwc_hint or not nchw):
        return Layout("NHWC", shape, c, a, b)
    if nchw:
        return Layout("NCHW", shape, a, b, c)
    return None


def grid_for(count: int, input_hw: tuple[int, int], grid_hint: tuple[int, int] | None = None
             ) -> tuple[int, int] | None:
    """The ``h x w`` grid of ``count`` patch tokens for an input of ``input_hw`` (any stride, any rounding)."""
    if grid_hint and grid_hint[0] * grid_hint[1] == count:
        return int(grid_hint[0]), int(grid_hint[1])
    height, width = input_hw
    for stride in range(1, max(height, width) + 1):
        for h, w in ((math.ceil(height / stride), math.ceil(width / stride)), (height // stride, width // stride)):
            if h * w == count:
                return h, w
    side = math.isqrt(count)
    return (side, side) if side * side == count and height == width else None


def _layout_tokens(shape: tuple[int, ...], input_hw: tuple[int, int], prefix_hint: int,
                   grid_hint: tuple[int, int] | None) -> Layout | None:
    tokens, channels = shape
    for prefix in dict.fromkeys([prefix_hint, 0, *range(1, _MAX_PREFIX + 1)]):
        count = tokens - prefix
        grid = grid_for(count, input_hw, grid_hint) if count > 1 else None
        if grid and _plausible_grid(*grid, input_hw):
            return Layout("NLC", shape, channels, grid[0], grid[1], prefix)
    return None


def model_hints(model: nn.Module) -> dict:
    """What the model says about its tokens: prefix count, patch grid, channels-last grids."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    fmt = str(getattr(model, "output_fmt", "") or "")
    return {
        "prefix_hint": int(getattr(model, "num_prefix_tokens", 0) or 0),
        "grid_hint": tuple(grid) if grid is not None and len(grid) == 2 else None,
        "nhwc_hint": model in _nhwc_models or fmt.upper() == "NHWC",
    }


def remember(model: nn.Module, layouts: dict[str, Layout], nhwc: bool) -> None:
    """Record the layouts decided at load time, so every capture reads the layer the same way."""
    _remembered[model] = dict(layouts)
    if nhwc:
        _nhwc_models.add(model)


def remembered_layout(model: nn.Module, layer: str) -> Layout | None:
    """The layout of ``layer`` decided when ``model`` was loaded (``None`` when it gave no map then)."""
    return _remembered.get(model, {}).get(layer)


def layout_of(model: nn.Module, layer: str, shape: tuple[int, ...], input_hw: tuple[int, int]) -> Layout:
    """The layout of ``layer``'s raw output ``shape``: remembered at load time, else inferred."""
    known = _remembered.get(model, {}).get(layer)
    if known is not None and known.shape == tuple(shape[1:]):
        return known
    layout = infer_layout(shape, input_hw, **model_hints(model))
    if layout is None:
        raise LayerError(f"The chosen layer's output is {tuple(shape)}: neither a B x K x h x w feature map, "
                         "a channels-last grid nor a sequence of patch tokens, so it has no spatial map.")
    return layout
