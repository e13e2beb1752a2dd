"""Which layers of an image classifier can be explained, and which one to use by default.

CNNs: every module whose output is a ``K x h x w`` map; the default is the last map before pooling.
Token and channels-last models (ViT, DeiT, EVA, Swin, Mixer, LeViT, ...): every block or stage whose
output is a grid of patch tokens (see :mod:`micam_core.tokens`); the default is the last stage (timm's
``feature_info``) through which the class score still depends on the patch tokens. For class-token
pooled ViTs the last block's patch tokens get no gradient at all, so the default is that block's
``norm1`` (its output feeds the attention that writes the class token), as pytorch-grad-cam recommends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError, NotACNNError, shorten
from .tokens import Layout, infer_layout, model_hints, remember, to_map

log = logging.getLogger(__name__)

# Layers deeper than this many dots are left out of the picker (any name can still be passed).
_PICKER_DEPTH = 2
_CONTAINERS = (nn.Sequential, nn.ModuleList)


@dataclass(frozen=True)
class LayerInfo:
    """A module whose output is (or becomes, see :mod:`micam_core.tokens`) a ``K x h x w`` map."""

    name: str
    channels: int
    height: int
    width: int
    layout: str = "NCHW"  # "NCHW", "NHWC" (channels-last grid) or "NLC" (token sequence)
    prefix: int = 0  # class/distillation/register tokens dropped (NLC only)

    def describe(self) -> str:
        kind = {"NLC": " tokens", "NHWC": " channels-last"}.get(self.layout, "")
        return f"{self.name}  ({self.channels} x {self.height} x {self.width}{kind})"


def find_layers(model: nn.Module, input_size, device: torch.device) -> tuple[list[LayerInfo], str]:
    """Candidate layers (deepest first) and the default one.

    Runs one forward pass on a blank image with temporary hooks (plus, for token and channels-last
    models, one forward and backward pass on a fixed random image to find where the class score still
    depends on the patch tokens). Refuses, with :class:`NotACNNError` naming the architecture and the
    reason, models that are no image classifier or have no spatial or token grid at all.
    """
    shapes, out_shape = _output_shapes(model, input_size, device)
    name = type(model).__name__
    if len(out_shape) != 2 or getattr(model, "num_classes", None) == 0:
        raise NotACNNError(f"{name} is not an image classifier: its output is {tuple(out_shape)}, "
                           "not one score per class (B x classes).")
    features = _feature_shape(model, input_size, device)
    input_hw = (int(input_size[1]), int(input_size[2]))
    spatial = [(n, s) for n, s in shapes if len(s) == 4 and s[2] * s[3] > 1]
    matching = [n for n, s in spatial if tuple(s) == tuple(features)]
    nhwc = _features_are_nhwc(model, features)
    if len(features) == 4 and matching and not nhwc:
        return _cnn_layers(model, spatial, matching[-1])
    hints = {**model_hints(model), "nhwc_hint": nhwc or model_hints(model)["nhwc_hint"]}
    layouts = {n: lay for n, s in shapes if (lay := infer_layout(s, input_hw, **hints)) is not None}
    if not layouts:
        raise NotACNNError(
            f"{name} cannot be explained: none of its layers outputs a spatial feature map or a grid of "
            f"patch tokens (its features are {tuple(features[1:])}), so there is nothing to map onto the image.")
    remember(model, layouts, nhwc=hints["nhwc_hint"])
    order = list(layouts)
    candidates = _token_candidates(model, order)
    default = _default_token_layer(model, candidates, layouts, input_size, device)
    picker = [n for n in order if n.count(".") < _PICKER_DEPTH or n in candidates or n == default]
    infos = [_info(n, layouts[n]) for n in reversed(picker)]
    return infos, default


def _info(name: str, layout: Layout) -> LayerInfo:
    return LayerInfo(name, layout.channels, layout.height, layout.width, layout.kind, layout.prefix)


def _cnn_layers(model: nn.Module, spatial: list[tuple[str, tuple]], default: str) -> tuple[list[LayerInfo], str]:
    """CNNs: every module with a ``K x h x w`` output; default the last one equal to the final features."""
    picker = [n for n, _ in spatial if n.count(".") < _PICKER_DEPTH or n == default]
    infos = {n: LayerInfo(n, s[1], s[2], s[3]) for n, s in spatial}
    remember(model, {n: Layout("NCHW", tuple(s[1:]), s[1], s[2], s[3]) for n, s in spatial}, nhwc=False)
    ordered = list(dict.fromkeys(reversed(picker)))
    return [infos[n] for n in ordered], default


def _features_are_nhwc(model: nn.Module, features: tuple) -> bool:
    num_features = getattr(model, "num_features", None)
    return bool(len(features) == 4 and num_features and features[1] != num_features
                and features[-1] == num_features)


def _token_candidates(model: nn.Module, order: list[str]) -> list[str]:
    """Blocks and stages with a grid output, in the order they finish: children of containers
    (``blocks.3``, ``stages.2``, ``blocks.3.1``) and the modules timm lists in ``feature_info``."""
    modules = dict(model.named_modules())
    featured = {str(f.get("module", "")) for f in getattr(model, "feature_info", None) or [] if isinstance(f, dict)}
    out = []
    for name in order:
        parent = modules.get(name.rpartition(".")[0]) if "." in name else None
        if name in featured or (isinstance(parent, _CONTAINERS) and name.count(".") <= _PICKER_DEPTH):
            out.append(name)
    return out


def _default_token_layer(model: nn.Module, candidates: list[str], layouts: dict[str, Layout],
                         input_size, device: torch.device) -> str:
    """The last block/stage whose patch tokens still reach the class score (``norm1`` of a dead last block)."""
    featured = [f.get("module") for f in getattr(model, "feature_info", None) or [] if isinstance(f, dict)]
    preferred = [n for n in reversed(featured) if n in layouts][:1]
    order = list(dict.fromkeys(preferred + list(reversed(candidates)) + list(reversed(layouts))))
    probe = order[:8] + [f"{n}.norm1" for n in order[:8] if f"{n}.norm1" in layouts]
    alive = _alive_layers(model, probe, layouts, input_size, device)
    if not any(alive.values()):  # e.g. a zero-initialised head: no layer can be told apart
        return order[0]
    for name in order:
        if alive.get(name, True):
            return name
        if alive.get(f"{name}.norm1"):
            return f"{name}.norm1"
    raise LayerError(f"No layer of {type(model).__name__} passes a gradient from the class score to its "
                     "patch tokens.")


def _alive_layers(model: nn.Module, names: list[str], layouts: dict[str, Layout],
                  input_size, device: torch.device) -> dict[str, bool]:
    """Whether the top class score has a non-zero gradient on each layer's grid (one pass, fixed input)."""
    names = list(dict.fromkeys(names))
    outputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: outputs.setdefault(n, out)) for n in names]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, *input_size, generator=generator).to(device).requires_grad_(True)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            used = [n for n in names if n in outputs and outputs[n].requires_grad]
            grads = torch.autograd.grad(logits[0].max(), [outputs[n] for n in used], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    return {n: g is not None and bool(to_map(g, layouts[n]).ne(0).any()) for n, g in zip(used, grads)}


def _blank(input_size, device: torch.device) -> torch.Tensor:
    c, h, w = input_size
    return torch.zeros(1, c, h, w, device=device)


def _output_shapes(model: nn.Module, input_size, device: torch.device) -> tuple[list[tuple[str, tuple]], tuple]:
    """Output shape of every (non-Identity) module, in the order the modules finish, and the model's."""
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
            out = model(_blank(input_size, device))
    finally:
        for handle in handles:
            handle.remove()
    out = out[0] if isinstance(out, (tuple, list)) else out
    return list(seen.items()), tuple(out.shape)


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
