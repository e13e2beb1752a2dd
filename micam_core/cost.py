"""What a request will cost before it runs: the extra forward passes of its methods, in passes and seconds.

Every layer a request can name has a computed cost or is refused: the channels come from the layers
found at load time (the picker's and every other module whose output is a map or a token grid, see
:func:`micam_core.tokens.remembered_layout`); any other name is refused with a :class:`LayerError`.
Nothing here runs the model except :func:`seconds_per_image` (a timing on the model's device).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .errors import LayerError, shorten
from .layers import get_module
from .models import LoadedModel
from .registry import REGISTRY
from .tokens import remembered_layout

_PROBE_BATCH = 16
_seconds_per_image: weakref.WeakKeyDictionary[torch.nn.Module, float] = weakref.WeakKeyDictionary()


def layer_channels(loaded: LoadedModel, layer: str | None) -> int:
    """Channels of ``layer`` (the default layer when ``None``); a :class:`LayerError` when it has no map.

    Known are the picker's layers and every module whose output was a map or a grid of patch tokens when
    the model was loaded (at the input size every request uses), however deep its name.
    """
    name = layer or loaded.default_layer
    known = next((info.channels for info in loaded.layers if info.name == name), None)
    if known is not None:
        return known
    layout = remembered_layout(loaded.model, name)
    if layout is not None:
        return layout.channels
    module = get_module(loaded.model, name)  # no such layer: a sentence naming near ones
    if isinstance(module, torch.nn.Identity):
        raise LayerError(f"The layer '{shorten(name)}' is an identity placeholder (it does nothing); "
                         "choose the layer before it or one of the listed layers.")
    raise LayerError(f"The layer '{shorten(name)}' gives no feature map or grid of patch tokens at this model's "
                     "input size, so it cannot be explained; choose one of the listed layers.")


def method_passes(method: str, channels: int, params: Mapping[str, Any] | None = None) -> int:
    """Extra forward passes ``method`` spends on one image at a layer of ``channels`` channels, with its
    parameters ``params`` (defaults for those not given; its record says)."""
    return REGISTRY[method].extra_passes(channels, params)


def extra_passes(loaded: LoadedModel, layer: str | None, methods: Iterable[str],
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """The extra forward passes the chosen methods add for one image (Score-CAM: one per channel, plus one).

    ``params``: per method id, the request's values of its parameters (SS-CAM's samples multiply its cost),
    as :meth:`micam_core.view.View.params` gives them. Never ``None``: a layer without a computed cost
    raises :class:`LayerError` (see :func:`layer_channels`).
    """
    needing = [m for m in methods if not REGISTRY[m].single_pass]
    if not needing:
        return 0
    channels = layer_channels(loaded, layer)
    return sum(method_passes(m, channels, (params or {}).get(m)) for m in needing)


def seconds_per_image(loaded: LoadedModel) -> float:
    """Measured seconds per image of a batched forward pass on the model's device (measured once)."""
    if loaded.model in _seconds_per_image:
        return _seconds_per_image[loaded.model]
    x = torch.zeros(_PROBE_BATCH, *loaded.data_config["input_size"], device=loaded.device)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        loaded.model(x)  # warm-up: the first call at a new shape is slow (kernel selection)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loaded.model(x)
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / _PROBE_BATCH
    _seconds_per_image[loaded.model] = seconds
    return seconds


def estimate_seconds(loaded: LoadedModel, layer: str | None, methods: Iterable[str],
                     params: Mapping[str, Mapping[str, Any]] | None = None) -> float:
    """Seconds the extra passes of ``methods`` will take here (a :class:`LayerError` for a layer without a map)."""
    passes = extra_passes(loaded, layer, methods, params)
    return passes * seconds_per_image(loaded) if passes else 0.0
