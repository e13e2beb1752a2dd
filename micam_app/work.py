"""The model work of the app: the model cache and the functions that run on the GPU when there is one.

On a ZeroGPU Space the work runs inside ``spaces.GPU``; elsewhere that decorator is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from micam_core import Explanation, Faithfulness, LoadedModel, MicamError, ModelCache, analyse, explain, policy
from micam_core.cost import extra_passes
from micam_core.errors import ModelLoadError
from micam_core.gpu import analyse_seconds, cpu_result, explain_seconds
from micam_core.hub import HUB_UNREACHABLE, hub_offline, precheck
from micam_core.models import normalize_spec

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
    """The model for ``spec`` from the module-level cache, under the server's policy.

    A Hub model that is not loaded yet is checked first (its config.json names an architecture timm
    knows, its weights are within the limit) so nothing is downloaded for a model we would refuse.
    """
    canonical = normalize_spec(spec)
    if canonical.startswith("hf-hub:") and canonical not in CACHE.specs() and not hub_offline():
        check = precheck(canonical[len("hf-hub:"):].partition("@")[0], policy.max_model_bytes())
        if not check.ok and check.message != HUB_UNREACHABLE:  # unreachable: the loader decides (cache)
            raise ModelLoadError(check.message)
    return policy.get_model(CACHE, canonical)


def check_cost(loaded: LoadedModel, layer: str | None, methods: tuple[str, ...]) -> None:
    """Refuse, before any pass, a request whose extra forward passes exceed the server's bound."""
    passes = extra_passes(loaded, layer, methods)
    limit = policy.max_extra_passes()
    if passes is not None and passes > limit:
        raise MicamError(f"Score-CAM would need {passes} forward passes on this layer; this server allows "
                         f"{limit} per request. Choose a layer with fewer channels or leave Score-CAM out.")


def explain_duration(spec: str, image: Any, layer: str | None, target: int | str | None, upsampling: str,
                     methods: tuple[str, ...]) -> int:
    """ZeroGPU duration for :func:`gpu_explain` (same parameters, as the ZeroGPU docs ask)."""
    loaded = load(spec)
    return explain_seconds(len(methods), loaded.num_bytes, extra_passes(loaded, layer, methods) or 0)


def analyse_duration(spec: str, exp: Explanation, threshold: float, fill: str, steps: int) -> int:
    """ZeroGPU duration for :func:`gpu_analyse`."""
    return analyse_seconds(len(exp.maps), int(steps), load(spec).num_bytes)


@gpu(duration=explain_duration)
@cpu_result
def gpu_explain(spec: str, image: Any, layer: str | None, target: int | str | None, upsampling: str,
                methods: tuple[str, ...]) -> Explanation:
    """Forward + partial backward pass (+ Score-CAM's passes): the chosen maps."""
    return explain(load(spec), image, target=target, layer=layer, methods=methods, upsampling=upsampling)


@gpu(duration=analyse_duration)
@cpu_result
def gpu_analyse(spec: str, exp: Explanation, threshold: float, fill: str, steps: int) -> Faithfulness:
    """Counterfactual keep/remove predictions and deletion/insertion curves for every map."""
    return analyse(load(spec), exp, threshold=threshold, fill=fill, steps=int(steps))
