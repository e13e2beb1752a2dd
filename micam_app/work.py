"""The model work of the app: the model cache and the functions that run on the GPU when there is one.

On a ZeroGPU Space the work runs inside ``spaces.GPU``; elsewhere that decorator is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from micam_core import Explanation, Faithfulness, LoadedModel, MicamError, ModelCache, analyse, explain, policy
from micam_core.cost import extra_passes

log = logging.getLogger("micam_app")

CACHE = ModelCache(max_models=3)


def _no_gpu(fn: Callable | None = None, **_kwargs: Any) -> Callable:
    return fn if fn is not None else (lambda f: f)


try:
    import spaces  # type: ignore[import-not-found]

    gpu = spaces.GPU
except Exception:  # not on a Space (or `spaces` unusable here): run on whatever torch finds
    gpu = _no_gpu


def load(spec: str) -> LoadedModel:
    """The model for ``spec`` from the module-level cache, under the server's policy."""
    return policy.get_model(CACHE, spec)


def check_cost(loaded: LoadedModel, layer: str | None, methods: tuple[str, ...]) -> None:
    """Refuse, before any pass, a request whose extra forward passes exceed the server's bound."""
    passes = extra_passes(loaded, layer, methods)
    limit = policy.max_extra_passes()
    if passes is not None and passes > limit:
        raise MicamError(f"Score-CAM would need {passes} forward passes on this layer; this server allows "
                         f"{limit} per request. Choose a layer with fewer channels or leave Score-CAM out.")


@gpu(duration=60)
def gpu_explain(spec: str, image: Any, layer: str | None, target: int | str | None, upsampling: str,
                methods: tuple[str, ...]) -> Explanation:
    """Forward + partial backward pass (+ Score-CAM's passes): the chosen maps."""
    return explain(load(spec), image, target=target, layer=layer, methods=methods, upsampling=upsampling)


@gpu(duration=120)
def gpu_analyse(spec: str, exp: Explanation, threshold: float, fill: str, steps: int) -> Faithfulness:
    """Counterfactual keep/remove predictions and deletion/insertion curves for every map."""
    return analyse(load(spec), exp, threshold=threshold, fill=fill, steps=int(steps))
