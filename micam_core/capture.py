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
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError, TargetError
from .layers import get_module
from .tokens import layout_of, to_map

TargetChooser = Callable[[torch.Tensor], Sequence[int]]
_single_copy: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models that need one pass per gradient


@dataclass
class Capture:
    """What one pass yields, all detached, batch-first."""

    logits: torch.Tensor  # B x C
    activations: torch.Tensor  # B x K x h x w (tokens and channels-last grids normalised, see tokens.py)
    targets: list[int]
    grad_logit: torch.Tensor | None = None  # d y_target / dA
    grad_prob: torch.Tensor | None = None  # d softmax_target / dA


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
    """Forward hook that captures the layer output as a leaf and resumes graph recording."""

    def __init__(self, copies: int, record: bool) -> None:
        self.owner = threading.get_ident()
        self.copies = copies
        self.record = record
        self.leaves: list[torch.Tensor] = []

    def __call__(self, _module: nn.Module, _inputs, output):
        if threading.get_ident() != self.owner or self.leaves:
            return None
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"The chosen layer's output is a {type(output).__name__}, not a tensor.")
        if not self.record:
            self.leaves = [output.detach()]
            return None
        torch.set_grad_enabled(True)  # restored by the caller's no_grad() on exit
        self.leaves = [output.detach().requires_grad_(True) for _ in range(self.copies)]
        # A new tensor (never the leaf itself) so in-place ops after the layer stay legal.
        return torch.cat(self.leaves, 0) if self.copies > 1 else self.leaves[0] * 1.0


def capture(
    model: nn.Module,
    layer: str,
    batch: torch.Tensor,
    choose_targets: TargetChooser,
    *,
    want_logit_grad: bool = True,
    want_prob_grad: bool = True,
) -> Capture:
    """Run the pass on ``batch``; ``choose_targets(logits)`` picks one class per image."""
    module = get_module(model, layer)
    copies = int(want_logit_grad) + int(want_prob_grad)
    if copies == 2 and model in _single_copy:
        return _capture_twice(model, layer, batch, choose_targets)
    tap = _LayerTap(copies=max(copies, 1), record=copies > 0)
    with torch.inference_mode(False):  # also works when the caller is in inference mode
        handle = module.register_forward_hook(tap)
        try:
            with torch.no_grad(), eval_mode(model):
                out = model(batch)
        except RuntimeError:
            if copies < 2:
                raise
            out = None  # a branch that bypasses the layer (CrossViT, EfficientViM) cannot take two copies
        finally:
            handle.remove()
        if out is None:
            _single_copy.add(model)
            return _capture_twice(model, layer, batch, choose_targets)
        if not tap.leaves:
            raise LayerError(f"Layer '{layer}' was not used in the forward pass.")
        logits_all = out[0] if isinstance(out, (tuple, list)) else out
        # Tokens and channels-last grids become B x K x h x w; gradients are reshaped the same way.
        layout = layout_of(model, layer, tuple(tap.leaves[0].shape), tuple(batch.shape[-2:]))
        size = batch.shape[0]
        logits = logits_all[:size]
        targets = _checked_targets(choose_targets(logits.detach()), size, logits.shape[1])
        result = Capture(logits=logits.detach(), activations=to_map(tap.leaves[0].detach(), layout),
                         targets=targets)
        if copies:
            _backward(result, tap.leaves, logits_all, size, want_logit_grad, want_prob_grad)
            result.grad_logit = None if result.grad_logit is None else to_map(result.grad_logit, layout)
            result.grad_prob = None if result.grad_prob is None else to_map(result.grad_prob, layout)
    return result


def _capture_twice(model: nn.Module, layer: str, batch: torch.Tensor, choose_targets: TargetChooser) -> Capture:
    """Both gradients from two passes, for models whose other branches cannot take two copies."""
    result = capture(model, layer, batch, choose_targets, want_logit_grad=True, want_prob_grad=False)
    result.grad_prob = capture(model, layer, batch, lambda _: result.targets,
                               want_logit_grad=False, want_prob_grad=True).grad_prob
    return result


def _checked_targets(targets: Sequence[int], size: int, num_classes: int) -> list[int]:
    targets = [int(t) for t in targets]
    if len(targets) != size:
        raise TargetError(f"Got {len(targets)} targets for {size} images.")
    for t in targets:
        if not 0 <= t < num_classes:
            raise TargetError(f"Target class {t} is out of range (the model has {num_classes} classes).")
    return targets


def _backward(result: Capture, leaves: list[torch.Tensor], logits_all: torch.Tensor, size: int,
              want_logit: bool, want_prob: bool) -> None:
    rows = torch.arange(size, device=logits_all.device)
    cols = torch.tensor(result.targets, device=logits_all.device)
    with torch.enable_grad():
        scores = []
        chunk = 0
        if want_logit:
            scores.append(logits_all[:size][rows, cols].sum())
            chunk += 1
        if want_prob:
            part = logits_all[chunk * size:(chunk + 1) * size]
            scores.append(torch.softmax(part.float(), dim=1)[rows, cols].sum())
        grads = torch.autograd.grad(torch.stack(scores).sum(), leaves, allow_unused=True)
    grads = [torch.zeros_like(leaf) if g is None else g.detach() for g, leaf in zip(grads, leaves)]
    if want_logit:
        result.grad_logit = grads[0]
    if want_prob:
        result.grad_prob = grads[-1]
