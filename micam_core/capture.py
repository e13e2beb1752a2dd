"""One forward pass, plus one backward pass from the target scores to the target layer only.

The forward runs without recording a graph up to the target layer; a hook on that layer
detaches its output into a fresh leaf and switches recording on for the rest of the network,
so the backward pass never goes below the layer and computes no parameter gradients.
When both gradients are wanted (logit for Grad-CAM, softmax probability for MI-Grad-CAM) the
hook hands the rest of the network two copies of the feature map (a batch of ``2B``): one
backward pass then yields ``d y_c / dA`` on the first copy and ``d p_c / dA`` on the second.

The caller's model is left as it was: hooks are removed, train/eval flags restored, ``.grad``
and ``requires_grad`` untouched, grad mode restored, also when something raises. The hook only
acts for the thread that registered it, so concurrent calls on one model do not mix.

Gradients are of *objectives* (a function of the logits and the targets, one score per image): the
target logit and the target probability are built in; a method may bring its own (Finer-CAM's
contrast). Each objective gets its own copy of the feature map, so one backward pass serves them all.
Extras, computed only when a chosen method asks, all for the target logit: ``"hvp"`` (the
Hessian-vector product ``H A`` at the layer, ShapleyCAM), ``"bias_grads"`` (input gradient and the
gradients at every bias layer, FullGrad) and ``"guided"`` (guided-backpropagation input gradient). The
last two need the graph below the layer: the forward then records it from the input (see capture_full.py).
Two more requests name modules: ``layers`` (shallower layers' activations and target-logit gradients,
RefineCAM) and ``attention`` (vision-transformer blocks: the gradient of each block's own class score with
respect to its attention, LeGrad); recording then starts at the first of them to run (see capture_taps.py).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .capture_full import FullTaps, effective_bias
from .capture_taps import EarlyTaps
from .errors import LayerError, TargetError
from .layers import get_module
from .tokens import Layout, layout_of, to_map

TargetChooser = Callable[[torch.Tensor], Sequence[int]]
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B x C logits, B targets) -> B scores
LOGIT, PROB = "grad_logit", "grad_prob"
EXTRAS = ("hvp", "bias_grads", "guided")
_FULL_GRAPH = frozenset({"bias_grads", "guided"})
_single_copy: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models that need one pass per gradient


def logit_objective(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target logit ``y_c`` of each image."""
    return logits.gather(1, targets[:, None])[:, 0]


def prob_objective(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The target's softmax probability ``p_c`` of each image."""
    return torch.softmax(logits.float(), dim=1).gather(1, targets[:, None])[:, 0]


BUILTIN_OBJECTIVES: dict[str, Objective] = {LOGIT: logit_objective, PROB: prob_objective}


@dataclass
class Capture:
    """What one pass yields, all detached, batch-first."""

    logits: torch.Tensor  # B x C
    activations: torch.Tensor  # B x K x h x w (tokens and channels-last grids normalised, see tokens.py)
    targets: list[int]
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # objective name -> d objective / dA
    hvp: torch.Tensor | None = None  # H A for the target logit (B x K x h x w)
    input_grad: torch.Tensor | None = None  # d y_c / d input (B x 3 x H x W)
    guided_grad: torch.Tensor | None = None  # guided-backpropagation d y_c / d input
    bias_grads: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (bias K, d y_c / d output B x K x h x w)
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (A, d y_c / dA)
    # block -> (d s^l_c / d P^l, B x heads x queries x keys; the layout of the block's tokens)
    attention: dict[str, tuple[torch.Tensor, Layout]] = field(default_factory=dict)

    @property
    def grad_logit(self) -> torch.Tensor | None:  # d y_target / dA
        return self.grads.get(LOGIT)

    @property
    def grad_prob(self) -> torch.Tensor | None:  # d softmax_target / dA
        return self.grads.get(PROB)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the duration, restoring each module's own flag after."""
    training = [m for m in model.modules() if m.training]
    for module in training:
        module.training = False
    try:
        yield
    finally:
        for module in training:
            module.training = True


class _LayerTap:
    """Forward hook that captures the layer output, one copy per objective.

    Normally each copy is a fresh leaf and graph recording starts here (nothing below the layer is
    recorded); in ``full`` mode the copies stay connected to the graph recorded from the input.
    """

    def __init__(self, copies: int, record: bool, full: bool = False) -> None:
        self.owner = threading.get_ident()
        self.copies = copies
        self.record = record
        self.full = full
        self.leaves: list[torch.Tensor] = []

    def __call__(self, _module: nn.Module, _inputs, output):
        if threading.get_ident() != self.owner or self.leaves:
            return None
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"The chosen layer's output is a {type(output).__name__}, not a tensor.")
        if not self.record:
            self.leaves = [output.detach()]
            return None
        if self.full or output.requires_grad:  # recording started below the layer: stay connected
            self.leaves = [output.clone() for _ in range(self.copies)]
        else:
            torch.set_grad_enabled(True)  # restored by the caller's no_grad() on exit
            self.leaves = [output.detach().requires_grad_(True) for _ in range(self.copies)]
        # A new tensor (never a copy itself) so in-place ops after the layer stay legal.
        return torch.cat(self.leaves, 0) if self.copies > 1 else self.leaves[0] * 1.0


def capture(
    model: nn.Module,
    layer: str,
    batch: torch.Tensor,
    choose_targets: TargetChooser,
    *,
    want_logit_grad: bool = True,
    want_prob_grad: bool = True,
    objectives: Mapping[str, Objective] | None = None,
    extras: Iterable[str] = (),
    layers: Sequence[str] = (),
    attention: Sequence[str] = (),
) -> Capture:
    """Run the pass on ``batch``; ``choose_targets(logits)`` picks one class per image.

    ``objectives``: more named objectives whose gradients at the layer are wanted (``Capture.grads``);
    ``extras``: any of :data:`EXTRAS` (they imply the target-logit gradient); ``layers``: more layers whose
    activations and target-logit gradients are wanted (``Capture.layers``; they imply the target-logit
    gradient); ``attention``: attention blocks for ``Capture.attention``.
    """
    extras = frozenset(extras)
    unknown = extras - set(EXTRAS)
    if unknown:
        raise ValueError(f"Unknown capture extras {sorted(unknown)}; known: {EXTRAS}.")
    wanted = {**({LOGIT: logit_objective} if want_logit_grad or extras or layers else {}),
              **({PROB: prob_objective} if want_prob_grad else {}), **(objectives or {})}
    layers, attention = [n for n in dict.fromkeys(layers) if n != layer], list(dict.fromkeys(attention))
    if len(wanted) > 1 and model in _single_copy:
        return _capture_each(model, layer, batch, choose_targets, wanted, extras, layers, attention)
    module = get_module(model, layer)
    full = bool(extras & _FULL_GRAPH)
    tap = _LayerTap(copies=max(len(wanted), 1), record=bool(wanted), full=full)
    with torch.inference_mode(False):  # also works when the caller is in inference mode
        # A fresh leaf for the input gradient (a clone: the caller's batch may be an inference tensor).
        x = batch.detach().clone().requires_grad_(True) if full else batch
        handle = module.register_forward_hook(tap)
        taps = FullTaps(model, "bias_grads" in extras, "guided" in extras) if full else None
        early = EarlyTaps(model, layers, attention) if layers or attention else None
        # Nothing to differentiate: inference mode, a few per cent faster than no_grad (results cloned below).
        plain = not wanted and early is None and not full
        try:
            with torch.inference_mode() if plain else torch.no_grad(), eval_mode(model), \
                    torch.enable_grad() if full else nullcontext(), \
                    twice_differentiable() if "hvp" in extras else nullcontext():
                out = model(x)
        except RuntimeError:
            if len(wanted) < 2:
                raise
            out = None  # a branch that bypasses the layer (CrossViT, EfficientViM) cannot take two copies
        finally:
            handle.remove()
            if taps is not None:
                taps.remove()
            if early is not None:
                early.remove()
        if out is None:
            _single_copy.add(model)
            return _capture_each(model, layer, batch, choose_targets, wanted, extras, layers, attention)
        if not tap.leaves:
            raise LayerError(f"Layer '{layer}' was not used in the forward pass.")
        logits_all = out[0] if isinstance(out, (tuple, list)) else out
        if plain:  # normal tensors again (inference tensors refuse in-place updates outside inference mode)
            logits_all, tap.leaves = logits_all.clone(), [leaf.clone() for leaf in tap.leaves]
        # Tokens and channels-last grids become B x K x h x w; gradients are reshaped the same way.
        layout = layout_of(model, layer, tuple(tap.leaves[0].shape), tuple(batch.shape[-2:]))
        size = batch.shape[0]
        logits = logits_all[:size]
        targets = _checked_targets(choose_targets(logits.detach()), size, logits.shape[1])
        result = Capture(logits=logits.detach(), activations=to_map(tap.leaves[0].detach(), layout),
                         targets=targets)
        if early is not None and attention:  # first: the backward passes below may free the graph
            result.attention = early.attention_grads(result.targets, size, tuple(batch.shape[-2:]))
        if wanted:
            _backward(result, tap.leaves, logits_all, size, wanted, extras, x, taps, early)
            result.grads = {name: to_map(g, layout) for name, g in result.grads.items()}
            result.hvp = None if result.hvp is None else to_map(result.hvp, layout)
    return result


def _capture_each(model: nn.Module, layer: str, batch: torch.Tensor, choose_targets: TargetChooser,
                  wanted: Mapping[str, Objective], extras: frozenset[str], layers: Sequence[str],
                  attention: Sequence[str]) -> Capture:
    """One pass per objective, for models whose other branches cannot take several copies."""
    result: Capture | None = None
    for name, objective in wanted.items():
        chooser = choose_targets if result is None else _fixed(result.targets)
        first = result is None  # the target logit's pass when it is wanted (extras and layers imply it)
        one = capture(model, layer, batch, chooser, want_logit_grad=False, want_prob_grad=False,
                      objectives={name: objective}, extras=extras if first else (), layers=layers if first else (),
                      attention=attention if first else ())
        if result is None:
            result = one
        else:
            result.grads.update(one.grads)
            for key in ("hvp", "input_grad", "guided_grad", "bias_grads"):
                if getattr(one, key) is not None:
                    setattr(result, key, getattr(one, key))
            result.layers.update(one.layers)
            result.attention.update(one.attention)
    return result


def twice_differentiable() -> AbstractContextManager:
    """Attention by the plain formula: the fused kernels have no second derivative (needed for H A)."""
    return sdpa_kernel([SDPBackend.MATH])


def _fixed(targets: list[int]) -> TargetChooser:
    return lambda _: targets


def _checked_targets(targets: Sequence[int], size: int, num_classes: int) -> list[int]:
    targets = [int(t) for t in targets]
    if len(targets) != size:
        raise TargetError(f"Got {len(targets)} targets for {size} images.")
    for t in targets:
        if not 0 <= t < num_classes:
            raise TargetError(f"Target class {t} is out of range (the model has {num_classes} classes).")
    return targets


def _backward(result: Capture, leaves: list[torch.Tensor], logits_all: torch.Tensor, size: int,
              wanted: Mapping[str, Objective], extras: frozenset[str], x: torch.Tensor,
              taps: FullTaps | None, early: EarlyTaps | None) -> None:
    cols = torch.tensor(result.targets, device=logits_all.device)
    names = list(wanted)
    hvp = "hvp" in extras
    shallow = list(early.outputs.items()) if early is not None else []
    # With the target logit the only objective, one backward pass also reaches the shallower layers.
    together = shallow if names == [LOGIT] and not hvp else []
    more = taps is not None or hvp or bool(shallow and not together)
    with torch.enable_grad():
        scores = [wanted[n](logits_all[i * size:(i + 1) * size], cols).sum() for i, n in enumerate(names)]
        grads = torch.autograd.grad(torch.stack(scores).sum(), [*leaves, *(o for _, o in together)],
                                    allow_unused=True, retain_graph=more, create_graph=hvp)
        grads, below = grads[:len(leaves)], grads[len(leaves):]
        if shallow and not together:
            below = torch.autograd.grad(scores[names.index(LOGIT)], [o for _, o in shallow], allow_unused=True,
                                        retain_graph=True)
        if hvp:
            result.hvp = _hvp(grads[names.index(LOGIT)], leaves[names.index(LOGIT)])
        if taps is not None:
            _below_layer(result, scores[names.index(LOGIT)], x, taps, extras, size, names.index(LOGIT))
    result.grads = {n: torch.zeros_like(leaf).detach() if g is None else g.detach()
                    for n, g, leaf in zip(names, grads, leaves)}
    hw = tuple(x.shape[-2:])
    for (name, out), g in zip(shallow, below):
        layout = layout_of(early.model, name, tuple(out.shape), hw)
        result.layers[name] = (to_map(out[:size].detach(), layout), to_map(_or_zeros(g, out)[:size], layout))


def _hvp(grad: torch.Tensor | None, leaf: torch.Tensor) -> torch.Tensor:
    """``H A``: the gradient of ``<d y / dA, A>`` with ``A`` held as the direction (zero where linear)."""
    if grad is None or not grad.requires_grad:
        return torch.zeros_like(leaf).detach()
    out = torch.autograd.grad(grad, leaf, grad_outputs=leaf.detach(), allow_unused=True, retain_graph=True)[0]
    return torch.zeros_like(leaf).detach() if out is None else out.detach()


def _below_layer(result: Capture, score: torch.Tensor, x: torch.Tensor, taps: FullTaps, extras: frozenset[str],
                 size: int, copy: int) -> None:
    """The target logit's gradients below the layer: input and bias layers, then the guided input gradient."""
    if "bias_grads" in extras:
        outputs = [o for _, o in taps.outputs]
        grads = torch.autograd.grad(score, [x, *outputs], allow_unused=True, retain_graph="guided" in extras)
        result.input_grad = _or_zeros(grads[0], x)
        result.bias_grads = []
        for (module, out), g in zip(taps.outputs, grads[1:]):
            rows = slice(copy * size, (copy + 1) * size) if out.shape[0] > size else slice(0, size)
            result.bias_grads.append((effective_bias(module), _or_zeros(g, out)[rows]))
    if "guided" in extras:
        with taps.guided():
            result.guided_grad = _or_zeros(torch.autograd.grad(score, x, allow_unused=True)[0], x)


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like).detach() if grad is None else grad.detach()
