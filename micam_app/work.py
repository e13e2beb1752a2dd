"""The model work of the app: the model cache and the functions that run on the GPU when there is one.

On a ZeroGPU Space the work runs inside ``spaces.GPU``; elsewhere that decorator is a no-op.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from micam_core import (
    REGISTRY,
    Explanation,
    Faithfulness,
    LoadedModel,
    MicamError,
    ModelCache,
    analyse,
    explain,
    policy,
)
from micam_core.analysis import KeepRemove, Stage, assemble, keep_remove, score_map
from micam_core.cost import extra_passes
from micam_core.counterfactual import BASELINES, CurveEnds
from micam_core.errors import ModelLoadError
from micam_core.gpu import analyse_seconds, cpu_result, explain_seconds, forward_images, request_seconds
from micam_core.hub import HUB_UNREACHABLE, hub_offline, precheck
from micam_core.models import normalize_spec
from micam_core.protocols import get_protocol
from micam_core.view import View

log = logging.getLogger("micam_app")

CACHE = ModelCache(max_models=3)


class ExampleCache:
    """Results for the bundled example photos, filled lazily on first request (no GPU time after that).

    Keyed by the example, the model and every setting the result depends on; bounded (least recently
    used dropped), about 2 MB an entry. Uploaded images are never cached.
    """

    def __init__(self, max_items: int = 48) -> None:
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable | None, compute: Callable[[], Any]) -> Any:
        cached = self.peek(key)
        if cached is not None:
            return cached
        value = compute()
        self.put(key, value)
        return value

    def peek(self, key: Hashable | None) -> Any:
        """The stored value for ``key``, or ``None``."""
        if key is None or self.max_items <= 0:
            return None
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Hashable | None, value: Any) -> None:
        if key is None or self.max_items <= 0:
            return
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


EXAMPLE_CACHE = ExampleCache()


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


def is_loaded(spec: str) -> bool:
    """Whether :func:`load` has ``spec`` in its cache (False for a spec it would refuse)."""
    try:
        return normalize_spec(spec) in CACHE.specs()
    except MicamError:
        return False


def check_cost(loaded: LoadedModel, layer: str | None, methods: tuple[str, ...],
               params: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Refuse, before any pass, a request whose extra forward passes exceed the server's bound.

    Every layer has a computed cost or is refused (:func:`micam_core.cost.extra_passes` never says "unknown");
    ``params`` (``View.params()``) count too: SS-CAM's samples multiply its passes.
    """
    passes = extra_passes(loaded, layer, methods, params)
    limit = policy.max_extra_passes()
    if passes > limit:
        costly = ", ".join(REGISTRY[m].label for m in methods if not REGISTRY[m].single_pass)
        raise MicamError(f"{costly} would need {passes} extra forward passes on this layer; this server allows "
                         f"{limit} per request. Choose a layer with fewer channels or leave {costly} out.")


def explain_duration(view: View, image: Any) -> int:
    """ZeroGPU duration for :func:`gpu_explain` (same parameters, as the ZeroGPU docs ask)."""
    loaded = load(view.model)
    try:
        passes = extra_passes(loaded, view.layer, view.methods, view.params())
    except MicamError:  # refused inside gpu_explain at once: the shortest duration
        passes = 0
    return explain_seconds(len(view.methods), loaded.num_bytes, min(passes, policy.max_extra_passes()))


def analyse_duration(view: View, exp: Explanation) -> int:
    """ZeroGPU duration for :func:`gpu_analyse` (ROAD's imputations counted as about 40 more steps)."""
    extra = 40 if get_protocol(view.protocol).has("road") else 0
    return analyse_seconds(len(exp.maps), view.steps + extra, load(view.model).num_bytes)


# The GPU functions take the view (picklable, as ZeroGPU needs) and find the model in this process's cache.
@gpu(duration=explain_duration)
@cpu_result
def gpu_explain(view: View, image: Any) -> Explanation:
    """Forward + partial backward pass (+ Score-CAM's passes): the chosen maps (the cost bound checked first)."""
    loaded = load(view.model)
    check_cost(loaded, view.layer, view.methods, view.params())
    return explain(loaded, image, target=view.target, layer=view.layer, methods=view.methods,
                   upsampling=view.upsampling, params=view.params())


@gpu(duration=analyse_duration)
@cpu_result
def gpu_analyse(view: View, exp: Explanation) -> Faithfulness:
    """Counterfactual keep/remove predictions and the protocol's curves (deletion/insertion, ROAD) for every map."""
    return analyse(load(view.model), exp, **view.stage("counterfactual"))


def cache_key(kind: str, loaded: LoadedModel, view: View) -> Hashable | None:
    """The :data:`EXAMPLE_CACHE` key of ``view`` (``None``: not an example): everything the numbers depend on."""
    if view.example is None:
        return None
    return (kind, view.example, loaded.spec, loaded.revision, view.layer, str(view.target),
            tuple(view.computed().items()))


def explain_view(loaded: LoadedModel, image: Any, view: View) -> Explanation:
    """:func:`gpu_explain` for ``loaded`` (``view.model``), from :data:`EXAMPLE_CACHE` for a bundled example."""
    check_cost(loaded, view.layer, view.methods, view.params())
    view = view.replace(model=loaded.spec)
    return EXAMPLE_CACHE.get_or_compute(cache_key("explain", loaded, view), lambda: gpu_explain(view, image))


def analyse_view(loaded: LoadedModel, exp: Explanation, view: View) -> Faithfulness:
    """:func:`gpu_analyse` of ``exp``, from :data:`EXAMPLE_CACHE` when the explanation is of a bundled example."""
    view = analysed_view(loaded, exp, view)
    return EXAMPLE_CACHE.get_or_compute(cache_key("analyse", loaded, view), lambda: gpu_analyse(view, exp))


def analysed_view(loaded: LoadedModel, exp: Explanation, view: View) -> View:
    """``view`` with the explanation's own layer, target, methods and upsampling (``view`` may say "auto"),
    as the cache key holds them."""
    return view.replace(model=loaded.spec, layer=exp.layer, target=exp.target, methods=exp.methods,
                        upsampling=exp.upsampling)


# --- the counterfactual panel in stages: keep/remove of every method first, then one map at a time ---------
def keep_remove_duration(view: View, exp: Explanation) -> int:
    return request_seconds(2 * len(exp.maps), load(view.model).num_bytes)


def score_duration(view: View, exp: Explanation, name: str, kept: KeepRemove | None, ends: CurveEnds | None) -> int:
    return request_seconds(forward_images(1, view.steps), load(view.model).num_bytes)


@gpu(duration=keep_remove_duration)
@cpu_result
def gpu_keep_remove(view: View, exp: Explanation) -> Stage:
    """Keep and remove images of every method's map, classified in one batch."""
    return keep_remove(load(view.model), exp, **view.stage("counterfactual"))


@gpu(duration=score_duration)
@cpu_result
def gpu_score(view: View, exp: Explanation, name: str, kept: KeepRemove | None, ends: CurveEnds | None) -> Stage:
    """One map's metrics and the protocol's curves (and its keep/remove pair when not given)."""
    return score_map(load(view.model), exp, name, kept, ends=ends, **view.stage("counterfactual"))


@dataclass
class Partial:
    """The counterfactual panel so far: keep/remove pairs, the maps scored, and the finished analysis."""

    kept: dict[str, Any] = field(default_factory=dict)  # name -> KeepRemove (or a MethodResult, which has its fields)
    scored: dict[str, Any] = field(default_factory=dict)  # name -> MethodResult
    total: int = 0  # maps to score (methods and baselines)
    faith: Faithfulness | None = None
    forward_seconds: float = 0.0  # time inside the model's forward calls so far


_EARLY = ThreadPoolExecutor(max_workers=4, thread_name_prefix="micam-keep-remove")


@dataclass
class Early:
    """An explanation's keep/remove stage, started in the background while its maps travel to the page."""

    view: View
    stage: Future

    def take(self, view: View) -> Stage | None:
        """The stage (or its error) when it was started for ``view``'s counterfactual settings, else ``None``."""
        same = (view.model, view.stage("counterfactual")) == (self.view.model, self.view.stage("counterfactual"))
        return self.stage.result() if same else None


def start_keep_remove(loaded: LoadedModel, exp: Explanation, view: View) -> Early | None:
    """Start :func:`gpu_keep_remove` for ``view`` in the background, for :func:`analyse_stages` to take
    (``None`` when the example cache holds the analysis). The request's context goes along (ZeroGPU reads it)."""
    view = analysed_view(loaded, exp, view)
    if EXAMPLE_CACHE.peek(cache_key("analyse", loaded, view)) is not None:
        return None
    return Early(view, _EARLY.submit(contextvars.copy_context().run, gpu_keep_remove, view, exp))


def analyse_stages(loaded: LoadedModel, exp: Explanation, view: View,
                   early: Early | None = None) -> Iterator[Partial]:
    """:func:`analyse_view` as it fills in: after the keep/remove pairs, after each map, and at the end
    (``early``: the keep/remove stage already started, taken when its settings are ``view``'s).

    A bundled example's finished analysis comes from :data:`EXAMPLE_CACHE` in one step, and is stored there.
    """
    view = analysed_view(loaded, exp, view)
    names = [*exp.maps, *BASELINES]
    key = cache_key("analyse", loaded, view)
    cached = EXAMPLE_CACHE.peek(key)
    if cached is not None:
        kept = {m: cached.results[m] for m in exp.maps}  # a MethodResult holds its keep/remove pair too
        yield Partial(kept=kept, scored=dict(cached.results), total=len(names), faith=cached)
        return
    first = early.take(view) if early is not None else None
    if first is None:
        first = gpu_keep_remove(view, exp)
    part = Partial(kept=dict(first.kept), total=len(names), forward_seconds=first.forward_seconds)
    yield part
    stages, ends = [first], None
    for name in names:
        stage = gpu_score(view, exp, name, first.kept.get(name), ends)
        stages.append(stage)
        ends = stage.ends
        part.scored.update(stage.results)
        part.forward_seconds += stage.forward_seconds
        yield part
    part.faith = assemble(exp, stages, **view.stage("counterfactual"))
    EXAMPLE_CACHE.put(key, part.faith)
    yield part
