"""ZeroGPU support: how long to ask for, and results that survive the trip back from the GPU worker.

On a ZeroGPU Space, functions decorated with ``spaces.GPU`` run in a worker process that holds a
GPU; their arguments and results are pickled across that process boundary. ``spaces.GPU`` takes
``duration`` in seconds, or (documented) a callable with the decorated function's own parameters
that returns the seconds to ask for: shorter requests are queued with higher priority. This module
gives such estimators and helpers that make results CPU-only (no CUDA tensor may cross back).
Nothing here imports ``spaces``; elsewhere it is plain Python.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")

MIN_SECONDS, MAX_SECONDS = 10, 120
BASE_SECONDS = 6.0  # worker start, moving the model to the GPU, the first CUDA kernels
SECONDS_PER_IMAGE = 0.004  # one forward pass of a ~100 MB CNN on a 224 px image, batched, on an A100-class GPU
SECONDS_PER_GB_IMAGE = 0.03  # extra per image per GB of weights
SAFETY = 2.0
BASELINE_MAPS = 2  # the random and centred maps analysed next to the methods
FIXED_IMAGES_PER_MAP = 4  # keep, remove, saliency x image, the paper's baseline


def forward_images(n_maps: int, steps: int) -> int:
    """Images classified by the counterfactual analysis of ``n_maps`` maps (curves with ``steps`` steps)."""
    return max(0, int(n_maps)) * (FIXED_IMAGES_PER_MAP + 2 * (max(0, int(steps)) + 1))


def request_seconds(images: int, model_bytes: int = 100 * 2**20, *, minimum: int = MIN_SECONDS,
                     maximum: int = MAX_SECONDS) -> int:
    """GPU seconds to request for classifying ``images`` images with a model of ``model_bytes`` of weights.

    A safety factor covers slower GPUs and queues; the result is rounded up to 5 s and kept within
    ``[minimum, maximum]``.
    """
    gigabytes = max(0, model_bytes) / 2**30
    seconds = BASE_SECONDS + max(0, images) * (SECONDS_PER_IMAGE + SECONDS_PER_GB_IMAGE * gigabytes)
    seconds = 5 * math.ceil(SAFETY * seconds / 5)
    return int(min(max(seconds, minimum), maximum))


def explain_seconds(n_methods: int = 3, model_bytes: int = 100 * 2**20, extra_passes: int = 0) -> int:
    """Duration for one explanation: one forward and one partial backward pass shared by all methods, plus
    ``extra_passes`` masked forward passes (Score-CAM: one per channel, see ``micam_core.cost.extra_passes``)."""
    return request_seconds(2 + max(0, int(n_methods)) + max(0, int(extra_passes or 0)), model_bytes)


def analyse_seconds(n_methods: int = 3, steps: int = 32, model_bytes: int = 100 * 2**20,
                    baselines: bool = True) -> int:
    """Duration for the counterfactual analysis of ``n_methods`` maps (plus the baselines)."""
    maps = max(0, int(n_methods)) + (BASELINE_MAPS if baselines else 0)
    return request_seconds(forward_images(maps, steps), model_bytes)


# --- results that may cross a process boundary ---------------------------------------------------------
def to_cpu(obj: T) -> T:
    """``obj`` with every tensor inside (dicts, lists, tuples, dataclasses) detached and moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return type(obj)((k, to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(to_cpu(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {f.name: to_cpu(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
        return dataclasses.replace(obj, **changes)
    return obj


def device_tensors(obj: Any, path: str = "result", _seen: set[int] | None = None) -> list[str]:
    """Where ``obj`` holds tensors that are not on the CPU (e.g. ``result.maps['micam']: cuda:0``)."""
    seen = _seen if _seen is not None else set()
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, np.ndarray, type(None))):
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [] if obj.device.type == "cpu" else [f"{path}: {obj.device}"]
    if isinstance(obj, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple, set)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif dataclasses.is_dataclass(obj):
        items = [(f"{path}.{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    else:
        return []
    found: list[str] = []
    for where, value in items:
        found += device_tensors(value, where, seen)
    return found


def cpu_result(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator (inside ``spaces.GPU``): the function's result with every tensor moved to the CPU."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return to_cpu(fn(*args, **kwargs))

    return wrapper
