"""LeGrad (Bousselham et al., ICCV 2025, arXiv:2404.03214), as torchcam 0.5's ``LeGrad``: vision transformers only.

For every attention block ``l`` from the one holding the chosen layer to the last, the block's own class
score ``s^l`` (the model's final norm and head applied to the block's output tokens) is differentiated
with respect to the block's post-softmax attention ``P^l`` (``B x heads x queries x keys``). The map is
``mean_l mean_{heads, queries} ReLU(d s^l_c / d P^l)`` over the patch keys (prefix tokens dropped),
reshaped to the patch grid.

The shared pass serves it (the capture's ``attention`` request, see capture_taps.py): recording starts at
the first used block, and one small backward pass per block runs from ``s^l`` to ``P^l``. The model is
never changed (timm's fused attention is answered by its formula in this thread only), so concurrent
requests on one model are safe.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import torch
from torch import nn

from .capture import capture
from .capture_taps import attention_blocks, score_projection
from .errors import LayerError
from .registry import MapInputs, MapResult

if TYPE_CHECKING:
    from .models import LoadedModel

__all__ = ["attention_blocks", "legrad", "legrad_blocks", "score_projection", "why_not"]


def legrad_blocks(model: nn.Module, layer: str) -> list[str]:
    """The blocks LeGrad averages: from the one holding (or following) ``layer`` to the last."""
    blocks = attention_blocks(model)
    order = [name for name, _ in model.named_modules()]
    for i, block in enumerate(blocks):
        after = layer in order and order.index(block) > order.index(layer)
        if layer == block or layer.startswith(block + ".") or after:
            return blocks[i:]
    return blocks[-1:]


_probed: weakref.WeakKeyDictionary[nn.Module, dict[str, str | None]] = weakref.WeakKeyDictionary()


def why_not(loaded: LoadedModel, layer: str) -> str | None:
    """LeGrad needs global self-attention blocks over the patch tokens and a head that reads their tokens;
    whether a model has them is tried once per model and layer, on a seeded random image (remembered)."""
    model = loaded.model
    name = type(model).__name__
    if not attention_blocks(model):
        return (f"it reads the attention maps of vision-transformer blocks, and {name} has none "
                "(a CNN, or attention in windows); choose a ViT-family model.")
    if score_projection(model) is None:
        return f"it needs each block's class score through the model's head, which {name} does not expose."
    if loaded.device.type != "cpu":  # no work on an accelerator here (on ZeroGPU, only GPU functions may):
        return None  # a model that is not fit is refused with the same sentence when the request runs
    known = _probed.setdefault(model, {})
    if layer not in known:
        known[layer] = _probe(loaded, layer)
    return known[layer]


def _probe(loaded: LoadedModel, layer: str) -> str | None:
    """LeGrad's pass on a random image: a sentence if the blocks' attention is not over the patch tokens
    (windows, channels) or the head cannot read a block's tokens."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, *loaded.data_config["input_size"], generator=generator).to(loaded.device)
    blocks = legrad_blocks(loaded.model, layer)
    try:
        cap = capture(loaded.model, layer, x, lambda _: [0], want_logit_grad=False, want_prob_grad=False,
                      attention=blocks)
        _patch_keys(cap.attention, loaded.model)
    except LayerError as error:
        if "was not used" in str(error) or "no spatial map" in str(error):
            return None  # the layer itself is refused, with its own sentence, when the request runs
        return _NOT_GLOBAL.format(type(loaded.model).__name__)
    except (RuntimeError, ValueError, IndexError):
        return _NOT_GLOBAL.format(type(loaded.model).__name__)
    return None


def _patch_keys(attention: dict, model: nn.Module) -> None:
    """A :class:`LayerError` unless every block's attention runs over its tokens, patches on a grid."""
    for grad, layout in attention.values():
        if layout.kind != "NLC" or grad.shape[-1] != layout.prefix + layout.height * layout.width:
            raise LayerError("LeGrad cannot run here: " + _NOT_GLOBAL.format(type(model).__name__))


_NOT_GLOBAL = ("it reads global self-attention over the patch tokens, class scores read from each block's tokens; "
               "{}'s blocks are not of that kind (attention in windows or over channels); choose a ViT-family model.")


def legrad(x: MapInputs) -> MapResult:
    """``B x h x w`` LeGrad maps on the patch grid, from the attention gradients of the shared pass."""
    blocks = legrad_blocks(x.model, x.layer)
    _patch_keys(x.attention, x.model)
    relevances = [torch.relu(x.attention[b][0]).mean(dim=(1, 2)) for b in blocks]
    layout = x.attention[blocks[-1]][1]
    keys = torch.stack(relevances).mean(0)[:, layout.prefix:]
    return keys.reshape(-1, layout.height, layout.width).to(x.activations.dtype), None
