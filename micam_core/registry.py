"""The method registry: every explanation method is one :class:`Method` record, added with :func:`register`.

A record says what the method needs from the shared capture, how it turns the captured tensors
into a map at feature resolution, how the map is upsampled for display, what extra passes it
costs and which parameters it takes (see :class:`Method`). The library, the command line, the
report, the renderer, the metrics and the app iterate over :data:`REGISTRY` and ask the record.

Adding a method is one ``register(Method(id=..., label=..., ...))`` call in a module of records
(the built-in ones are in :mod:`micam_core.cams`; a new module gets one import line at the bottom
of this file), plus its tests. Activations are always captured;
Grad-CAM++'s higher-order terms are derived from ``d y_c / dA`` (the exponential-score closed
form), so it needs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .errors import shorten
from .fields import Param, Setting, SettingError
from .lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import torch
else:  # records are read by `--help` and the settings; torch loads when a map is first computed
    torch = LazyModule("torch")

if TYPE_CHECKING:
    from .models import LoadedModel

# What a method may ask of the shared capture (see capture.py for the extras "hvp", "bias_grads", "guided";
# "layers" and "attention" name modules, which the record's ``taps`` gives).
NEEDS = frozenset({"grad_logit", "grad_prob", "mi", "hvp", "bias_grads", "guided", "layers", "attention"})
# Needs whose backward pass goes below the target layer (the rest stop at it, see Method.at_layer).
BELOW_LAYER = frozenset({"bias_grads", "guided", "layers", "attention"})
# The kinds the method selector groups methods by, in the order it shows them (id -> heading).
FAMILIES: dict[str, str] = {
    "gradient": "Gradient-weighted",
    "free": "Gradient-free",
    "perturbation": "Perturbation (extra passes)",
    "multilayer": "Multi-layer",
    "transformer": "Transformer-only",
}


@dataclass
class MapInputs:
    """What the shared capture gives every method (batch-first, detached)."""

    activations: torch.Tensor  # B x K x h x w
    grays: list[np.ndarray]  # 8-bit luma of each model-input crop (H x W)
    targets: list[int]
    grad_logit: torch.Tensor | None = None
    grad_prob: torch.Tensor | None = None
    batch: torch.Tensor | None = None  # normalised model input, for methods with extra passes
    model: torch.nn.Module | None = None
    extra_passes: int = field(default=0)
    logits: torch.Tensor | None = None  # B x classes of the shared pass
    layer: str = ""  # the target layer's module name
    loaded: LoadedModel | None = None  # the model's record (its layer list, data config)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # gradients of methods' own objectives, by id
    hvp: torch.Tensor | None = None  # H A for the target logit (ShapleyCAM)
    input_grad: torch.Tensor | None = None  # d y_c / d input (FullGrad)
    guided_grad: torch.Tensor | None = None  # guided-backpropagation input gradient (Guided Grad-CAM)
    bias_grads: list | None = None  # (bias, d y_c / d output) of every bias layer (FullGrad)
    layer_maps: dict = field(default_factory=dict)  # shallower layer -> (A, d y_c / dA), B x K x h x w (RefineCAM)
    attention: dict = field(default_factory=dict)  # block -> (d s^l_c / d P^l, token layout) (LeGrad)
    mask_chunk: int | None = None  # most masked inputs per batched extra pass (None: each method's own default)

    def chunk(self, default: int) -> int:
        """Inputs per batched extra pass: the method's ``default``, or fewer where :attr:`mask_chunk` says."""
        return max(1, min(default, self.mask_chunk)) if self.mask_chunk else default

    @cached_property
    def mi(self) -> torch.Tensor:
        """``B x K`` mutual information (nats), computed once however many methods use it."""
        from .mi import mutual_information_torch

        acts = self.activations
        return torch.stack([
            mutual_information_torch(torch.from_numpy(g).to(acts.device), acts[i])
            for i, g in enumerate(self.grays)  # one call per image, all channels at once
        ]).to(acts.dtype)


MapResult = tuple["torch.Tensor", "torch.Tensor | None"]  # (ReLU'd B x h x w map, B x K weights or None)


@dataclass(frozen=True, kw_only=True)
class Method:
    """One explanation method, built with keywords and added with :func:`register`.

    ``id``: short lowercase id used by URLs, the command line and the API (unique: a duplicate raises).
    ``label``: the name people read. ``class_specific``: whether the target class enters the map.
    ``compute``: ``compute(inputs: MapInputs, **params) -> (B x h x w ReLU'd map, B x K weights or None)``,
    the map at feature resolution; it receives the values of ``params`` as keywords.
    ``needs``: what ``compute`` reads from the shared capture besides activations: ``"grad_logit"``
    (``d y_c / dA``), ``"grad_prob"`` (``d p_c / dA``), ``"mi"`` (MI of every channel with the grey image),
    ``"hvp"`` (``H A`` of the target logit), ``"bias_grads"`` (input and bias-layer gradients: the pass then
    records the graph from the input), ``"guided"`` (guided-backpropagation input gradient), ``"layers"``
    (activations and ``d y_c / dA`` of the shallower layers ``taps`` names) and ``"attention"`` (the gradient
    of each attention block's class score with respect to its attention, for the blocks ``taps`` names).
    ``taps``: ``taps(loaded, layer, **params) -> module names`` for the ``"layers"`` or ``"attention"`` need.
    ``objective``: ``objective(**params)`` gives the method's own score ``f(logits, targets)``, whose gradient
    at the layer ``compute`` reads as ``inputs.grads[id]`` (same pass, one more copy of the layer output).
    ``note``: one sentence the page and the report show with the method (e.g. what it ignores).
    ``follows_display``: the map is upsampled as the display setting says (the MI maps); otherwise
    always by ``upsampling``. ``passes``: for methods that run extra forward passes (``inputs.model``
    on ``inputs.batch``), their upper bound per image as ``passes(channels, **params)``; ``None``: none.
    ``params``: the method's own parameters (:class:`Param`), settings named ``<id>_<name>``.
    ``reference`` and ``formula``: shown in the report, the page and the API's description.
    ``family``: its group in the selector, a key of :data:`FAMILIES` (default: ``"perturbation"`` with
    extra passes, else ``"gradient"`` when it reads a gradient, else ``"free"``).
    ``unavailable``: ``unavailable(loaded, layer) -> sentence or None``: why it cannot run on that model
    and layer (e.g. a transformer-only method on a CNN); ``None`` means it always can.
    """

    id: str
    label: str
    class_specific: bool
    compute: Callable[..., MapResult]
    reference: str
    formula: str
    needs: frozenset[str] = frozenset()
    follows_display: bool = False
    upsampling: str = "bilinear"
    passes: Callable[..., int] | None = None
    params: tuple[Param, ...] = ()
    family: str = ""
    objective: Callable[..., Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None
    note: str = ""
    unavailable: Callable[[LoadedModel, str], str | None] | None = None
    taps: Callable[..., list[str]] | None = None

    @property
    def group(self) -> str:
        """The selector group (a key of :data:`FAMILIES`)."""
        if self.family:
            return self.family
        if self.passes is not None:
            return "perturbation"
        return "gradient" if self.needs & {"grad_logit", "grad_prob"} else "free"

    def why_not(self, loaded: LoadedModel, layer: str | None = None) -> str | None:
        """Why this method cannot run on ``loaded`` at ``layer`` (default layer when ``None``), or ``None``."""
        if self.unavailable is None:
            return None
        return self.unavailable(loaded, layer or loaded.default_layer)

    def display_mode(self, setting: str) -> str:
        """How this method's map is brought to the input size under the display setting ``setting``."""
        return setting if self.follows_display else self.upsampling

    @property
    def single_pass(self) -> bool:
        """Whether the shared forward (and partial backward) pass is all this method costs."""
        return self.passes is None

    @property
    def at_layer(self) -> bool:
        """Whether the shared pass serves it with a backward pass that stops at the target layer: no extra
        pass, nothing below the layer (the set the "all single-pass methods together" speed target is about)."""
        return self.single_pass and not self.needs & BELOW_LAYER

    def extra_passes(self, channels: int | None, params: Mapping[str, Any] | None = None) -> int | None:
        """Upper bound of the extra forward passes per image at a layer of ``channels`` (``None``: unknown)."""
        if self.passes is None:
            return 0
        return None if channels is None else self.passes(channels, **self.param_values(params))

    def settings(self) -> tuple[Setting, ...]:
        """The method's parameters as settings named ``<id>_<name>``."""
        return tuple(p.setting(self.id, self.label) for p in self.params)

    def param_values(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every parameter's value, by parameter name: ``given`` (checked) or the default."""
        given = given or {}
        unknown = sorted(set(given) - {p.name for p in self.params})
        if unknown:
            raise SettingError(f"{self.label} has no parameter {shorten(', '.join(map(str, unknown)))}; "
                               f"it takes {', '.join(p.name for p in self.params) or 'none'}.")
        return {p.name: s.parse(given.get(p.name)) for p, s in zip(self.params, self.settings())}


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`REGISTRY` (returns it); a duplicate id or a malformed record raises ``ValueError``."""
    if method.id in REGISTRY:
        raise ValueError(f"A method with id {method.id!r} is already registered ({REGISTRY[method.id].label}).")
    if not method.id.isidentifier() or method.id != method.id.lower():
        raise ValueError(f"Method id {method.id!r} must be a lowercase identifier.")
    if method.family and method.family not in FAMILIES:
        raise ValueError(f"{method.id}: unknown family {method.family!r}; known: {sorted(FAMILIES)}.")
    unknown = method.needs - NEEDS
    if unknown:
        raise ValueError(f"{method.id}: unknown needs {sorted(unknown)}; known: {sorted(NEEDS)}.")
    if bool(method.needs & {"layers", "attention"}) != (method.taps is not None):
        raise ValueError(f"{method.id}: a 'layers' or 'attention' need goes with a taps function, and only then.")
    for p in method.params:
        if not p.choices and (p.minimum is None or p.maximum is None):
            raise ValueError(f"{method.id}: numeric parameter {p.name!r} needs a minimum and a maximum.")
        try:
            p.setting(method.id, method.label).parse(p.default)
        except SettingError as error:
            raise ValueError(f"{method.id}: the default of {p.name!r} is not allowed: {error}") from None
    REGISTRY[method.id] = method
    return method


# Modules of records call register() when imported. They import this module, which is complete by
# here, and must be imported before METHODS is read: one line each, in the order the app lists them.
# Keep a records module's top-level imports light (no torch, no computing module): `python -m micam_core
# --help` reads the records, and tests/test_cli_talks.py checks it loads no torch.
from . import cams  # noqa: E402, F401, I001
from . import passcams  # noqa: E402, F401
from . import layercams  # noqa: E402, F401
from . import methods_extra  # noqa: E402, F401

METHODS: tuple[str, ...] = tuple(REGISTRY)
METHOD_LABELS: dict[str, str] = {m.id: m.label for m in REGISTRY.values()}
DEFAULT_METHODS: tuple[str, ...] = ("micam", "gradcam", "migradcam")
SINGLE_PASS: tuple[str, ...] = tuple(m.id for m in REGISTRY.values() if m.single_pass)
AT_LAYER: tuple[str, ...] = tuple(m.id for m in REGISTRY.values() if m.at_layer)


def needs_of(methods: Iterable[str]) -> frozenset[str]:
    """Everything the chosen methods need from the capture."""
    return frozenset().union(*(REGISTRY[m].needs for m in methods))


def objectives_of(methods: Iterable[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """The chosen methods' own objectives (whose gradients at the layer they read), by method id."""
    params = params or {}
    return {m: REGISTRY[m].objective(**REGISTRY[m].param_values(params.get(m)))
            for m in methods if REGISTRY[m].objective is not None}


def taps_of(methods: Iterable[str], loaded: LoadedModel, layer: str,
            params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, list[str]]:
    """The modules the chosen methods' ``"layers"`` and ``"attention"`` needs name, by need (in order, once)."""
    params = params or {}
    out: dict[str, list[str]] = {"layers": [], "attention": []}
    for m in methods:
        record = REGISTRY[m]
        for need in ("layers", "attention"):
            if need in record.needs:
                names = record.taps(loaded, layer, **record.param_values(params.get(m)))
                out[need] += [n for n in names if n not in out[need]]
    return out


def display_mode(method: str, upsampling: str) -> str:
    """How ``method``'s map is brought to the input size under the display setting ``upsampling``."""
    return REGISTRY[method].display_mode(upsampling)


def compute_maps(methods: Iterable[str], inputs: MapInputs,
                 params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, MapResult]:
    """Each chosen method's feature-resolution map (and channel weights, where it has them).

    ``params``: per method id, values of its parameters (the others take their defaults).
    """
    params = params or {}
    return {m: REGISTRY[m].compute(inputs, **REGISTRY[m].param_values(params.get(m))) for m in methods}
