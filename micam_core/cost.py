"""What a request will cost before it runs: Score-CAM's masked passes, in passes and seconds."""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable

import torch

from .models import LoadedModel
from .registry import REGISTRY

_PROBE_BATCH = 16
_seconds_per_image: weakref.WeakKeyDictionary[torch.nn.Module, float] = weakref.WeakKeyDictionary()


def layer_channels(loaded: LoadedModel, layer: str | None) -> int | None:
    """Channels of ``layer`` (default layer when ``None``) if the model's layer list knows it."""
    name = layer or loaded.default_layer
    return next((info.channels for info in loaded.layers if info.name == name), None)


def extra_passes(loaded: LoadedModel, layer: str | None, methods: Iterable[str]) -> int | None:
    """Upper bound of the extra forward passes per image the chosen methods add (each method's record says)."""
    records = [REGISTRY[m] for m in methods]
    if all(r.single_pass for r in records):
        return 0
    channels = layer_channels(loaded, layer)
    passes = [r.extra_passes(channels) for r in records]
    return None if None in passes else sum(passes)


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


def estimate_seconds(loaded: LoadedModel, layer: str | None, methods: Iterable[str]) -> float | None:
    """Seconds the extra passes of ``methods`` will take here (``None`` when unknown)."""
    passes = extra_passes(loaded, layer, methods)
    if not passes:
        return 0.0 if passes == 0 else None
    return passes * seconds_per_image(loaded)
