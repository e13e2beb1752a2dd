"""Passes through the layers *after* a target layer, with that layer's output replaced (Ablation-CAM).

:func:`run_after` feeds one image through the network once, up to the target layer, and hands the
rest of the network a batch of ``n`` replacement outputs of that layer. Everything before the layer
then runs at batch 1: tensors from before the layer that the later layers read (residual streams)
broadcast over the ``n`` copies, which is exact because all copies share the same input.

Some architectures cannot mix batch sizes (a concatenation along the batch, a reshape that reads the
batch size from an earlier tensor). Those raise, or change the un-replaced score, which each call
checks: such a (model, layer) then runs the whole network on ``n`` copies of the image instead, as
pytorch-grad-cam does, and is remembered. The hook acts only for the calling thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable

import torch
from torch import nn

from .capture import eval_mode
from .layers import get_module

log = logging.getLogger(__name__)

Replace = Callable[[torch.Tensor], torch.Tensor]  # the layer's raw 1 x ... output -> n x ... outputs
_full_batch: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()
CHECK_TOLERANCE = 1e-3  # relative difference allowed between the un-replaced score and the captured one


class _Swap:
    """Forward hook returning ``replace(output)`` for the owner thread, once."""

    def __init__(self, replace: Replace, full: bool) -> None:
        self.owner = threading.get_ident()
        self.replace = replace
        self.full = full
        self.done = False

    def __call__(self, _module: nn.Module, _inputs, output):
        if threading.get_ident() != self.owner or self.done or not isinstance(output, torch.Tensor):
            return None
        self.done = True
        return self.replace(output[:1] if self.full else output)


def _logits(out) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _run(model: nn.Module, module: nn.Module, image: torch.Tensor, replace: Replace, n: int,
         full: bool) -> torch.Tensor:
    swap = _Swap(replace, full)
    x = image[None].expand(n, *image.shape).contiguous() if full else image[None]
    handle = module.register_forward_hook(swap)
    try:
        out = _logits(model(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x))
    finally:
        handle.remove()
    if not swap.done:
        raise RuntimeError("the target layer was not used")
    return out


def run_after(model: nn.Module, layer: str, image: torch.Tensor, replace: Replace, n: int,
              expected: tuple[int, int, float] | None = None) -> torch.Tensor:
    """``n x classes`` logits with the layer's output replaced by ``replace(output)`` (``n`` rows).

    ``expected``: ``(row, target, logit)``: row ``row`` of the replacement is the layer's own output,
    whose target logit is known from the shared capture; a mismatch means the batch-1 prefix is not
    exact for this architecture, and the call is redone on ``n`` copies of the image.
    """
    module = get_module(model, layer)
    full = layer in _full_batch.get(model, set())
    with torch.inference_mode(), eval_mode(model):
        if not full:
            try:
                out = _run(model, module, image, replace, n, full=False)
                if out.shape[0] == n and _agrees(out, expected):
                    return out
            except RuntimeError as err:
                log.info("batch-1 prefix failed on %s (%s); running full batches", layer, err)
            _full_batch.setdefault(model, set()).add(layer)
        return _run(model, module, image, replace, n, full=True)


def _agrees(out: torch.Tensor, expected: tuple[int, int, float] | None) -> bool:
    if expected is None:
        return True
    row, target, score = expected
    got = float(out[row, target])
    return abs(got - score) <= CHECK_TOLERANCE * (1.0 + abs(score))


class _StopError(Exception):
    """Raised by :func:`layer_output`'s hook to end the forward pass at the layer."""


def layer_output(model: nn.Module, layer: str, image: torch.Tensor) -> torch.Tensor:
    """The layer's raw ``1 x ...`` output for one image; the forward pass stops at the layer."""
    owner, seen = threading.get_ident(), []

    def hook(_module, _inputs, output):
        if threading.get_ident() == owner and not seen:
            seen.append(output)
            raise _StopError

    handle = get_module(model, layer).register_forward_hook(hook)
    try:
        with torch.inference_mode(), eval_mode(model):
            model(image[None])
    except _StopError:
        pass
    finally:
        handle.remove()
    if not seen or not isinstance(seen[0], torch.Tensor):
        raise RuntimeError(f"Layer '{layer}' gave no tensor output.")
    return seen[0]
