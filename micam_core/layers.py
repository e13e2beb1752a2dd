"""Which layers of a CNN can be explained, and which one to use by default."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError, NotACNNError, shorten

# Layers deeper than this many dots are left out of the picker (any name can still be passed).
_PICKER_DEPTH = 2


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is a ``K x h x w`` feature map."""

    name: str
    channels: int
    height: int
    width: int

    def describe(self) -> str:
        return f"{self.name}  ({self.channels} x {self.height} x {self.width})"


def find_layers(model: nn.Module, input_size, device: torch.device) -> tuple[list[LayerInfo], str]:
    """Candidate layers (deepest first) and the default one: the last spatial map before pooling.

    Runs one forward pass on a blank image with temporary hooks. Refuses models whose features
    are tokens or channels-last maps (vision transformers and friends) with :class:`NotACNNError`.
    """
    shapes = _output_shapes(model, input_size, device)
    spatial = [(name, shape) for name, shape in shapes
               if len(shape) == 4 and shape[2] * shape[3] > 1]
    features = _feature_shape(model, input_size, device)
    name = type(model).__name__
    if len(features) != 4:
        raise NotACNNError(
            f"{name} is not a CNN: its features are {len(features) - 1}-D tokens {tuple(features[1:])}, "
            "not a K x h x w feature map (this is typical of vision transformers). "
            "MI CAM needs a convolutional layer; choose a CNN such as ResNet, ConvNeXt or EfficientNet.")
    num_features = getattr(model, "num_features", None)
    if num_features and features[1] != num_features and features[-1] == num_features:
        raise NotACNNError(
            f"{name} produces channels-last token grids (B x H x W x C), as Swin-like transformers do; "
            "MI CAM needs a convolutional feature map. Choose a CNN.")
    matching = [n for n, s in spatial if tuple(s) == tuple(features)]
    if not matching:
        raise NotACNNError(f"{name} has no module whose output is its final feature map {tuple(features[1:])}.")
    default = matching[-1]  # outer modules fire after inner ones: the last is the whole stage
    picker = [n for n, _ in spatial if n.count(".") < _PICKER_DEPTH or n == default]
    infos = {n: LayerInfo(n, s[1], s[2], s[3]) for n, s in spatial}
    ordered = list(dict.fromkeys(reversed(picker)))
    return [infos[n] for n in ordered], default


def _blank(input_size, device: torch.device) -> torch.Tensor:
    c, h, w = input_size
    return torch.zeros(1, c, h, w, device=device)


def _output_shapes(model: nn.Module, input_size, device: torch.device) -> list[tuple[str, tuple]]:
    """Output shape of every (non-Identity) module, in the order the modules finish."""
    seen: dict[str, tuple] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if name not in seen and isinstance(output, torch.Tensor):
                seen[name] = tuple(output.shape)
        return hook

    for name, module in model.named_modules():
        if name and not isinstance(module, nn.Identity):
            handles.append(module.register_forward_hook(make_hook(name)))
    try:
        with torch.no_grad():
            model(_blank(input_size, device))
    finally:
        for handle in handles:
            handle.remove()
    return list(seen.items())


def _feature_shape(model: nn.Module, input_size, device: torch.device) -> tuple:
    with torch.no_grad():
        if hasattr(model, "forward_features"):
            out = model.forward_features(_blank(input_size, device))
        else:
            out = model(_blank(input_size, device))
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return tuple(out.shape)


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``, or a :class:`LayerError` listing near names."""
    if name:
        try:
            return model.get_submodule(name)
        except AttributeError:
            pass
    import difflib

    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=3) if len(name) <= 200 else []
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise LayerError(f"The model has no layer named '{shorten(name)}'.{hint}")
