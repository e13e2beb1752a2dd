"""LeGrad (Bousselham et al., ICCV 2025, arXiv:2404.03214), as torchcam 0.5's ``LeGrad``: vision transformers only.

For every attention block ``l`` from the one holding the chosen layer to the last, the block's own class
score ``s^l`` (the model's final norm and head applied to the block's output tokens) is differentiated
with respect to the block's post-softmax attention ``P^l`` (``B x heads x queries x keys``). The map is
``mean_l mean_{heads, queries} ReLU(d s^l_c / d P^l)`` over the patch keys (prefix tokens dropped),
reshaped to the patch grid. One forward pass (recording from the first used block) and one backward
pass per block.

Attention blocks are timm's (an ``attn`` with ``qkv`` and ``attn_drop``: the probabilities are read at
``attn_drop``, with timm's fused kernel switched off during the pass, which gives the same values) and
torchvision's (``self_attention``, an ``nn.MultiheadAttention``: asked for per-head weights and replayed
so the weights are on the path to the output, as torchcam does). Models without either are refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .capture import eval_mode
from .registry import MapInputs, MapResult
from .tokens import layout_of

if TYPE_CHECKING:
    from .models import LoadedModel


def _timm_attention(block: nn.Module) -> nn.Module | None:
    attn = getattr(block, "attn", None)
    return attn if attn is not None and hasattr(attn, "qkv") and hasattr(attn, "attn_drop") else None


def _torchvision_attention(block: nn.Module) -> nn.Module | None:
    attn = getattr(block, "self_attention", None)
    return attn if isinstance(attn, nn.MultiheadAttention) and attn.batch_first else None


def attention_blocks(model: nn.Module) -> list[str]:
    """Names of the model's global self-attention blocks, in order."""
    return [name for name, module in model.named_modules()
            if _timm_attention(module) is not None or _torchvision_attention(module) is not None]


def score_projection(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Tokens of a block -> class logits, through the model's own final norm and head (``None``: unknown)."""
    if hasattr(model, "forward_head") and isinstance(getattr(model, "norm", None), nn.Module):
        return lambda tokens: model.forward_head(model.norm(tokens))
    encoder, heads = getattr(model, "encoder", None), getattr(model, "heads", None)
    if isinstance(getattr(encoder, "ln", None), nn.Module) and isinstance(heads, nn.Module):
        return lambda tokens: heads(encoder.ln(tokens)[:, 0])  # torchvision: the class token
    return None


def legrad_blocks(model: nn.Module, layer: str) -> list[str]:
    """The blocks LeGrad averages: from the one holding (or following) ``layer`` to the last."""
    blocks = attention_blocks(model)
    order = [name for name, _ in model.named_modules()]
    for i, block in enumerate(blocks):
        after = layer in order and order.index(block) > order.index(layer)
        if layer == block or layer.startswith(block + ".") or after:
            return blocks[i:]
    return blocks[-1:]


def why_not(loaded: LoadedModel, layer: str) -> str | None:
    """LeGrad needs global self-attention blocks and a head that reads their tokens."""
    name = type(loaded.model).__name__
    if not attention_blocks(loaded.model):
        return (f"it reads the attention maps of vision-transformer blocks, and {name} has none "
                "(a CNN, or attention in windows); choose a ViT-family model.")
    if score_projection(loaded.model) is None:
        return f"it needs each block's class score through the model's head, which {name} does not expose."
    return None


class _Recorder:
    """Hooks that record each used block's attention probabilities and output tokens (owner thread only)."""

    def __init__(self, first: str) -> None:
        self.owner = threading.get_ident()
        self.first = first
        self.attention: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, torch.Tensor] = {}

    def mine(self) -> bool:
        return threading.get_ident() == self.owner

    def start(self, _module, _inputs):
        if self.mine():
            torch.set_grad_enabled(True)  # restored by the caller's no_grad() on exit

    def probs(self, name: str):
        def hook(_module, _inputs, output):
            if self.mine():
                self.attention.setdefault(name, output)
        return hook

    def mha_inputs(self, _module, args, kwargs):
        if not self.mine():
            return None
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def mha_replay(self, name: str):
        def hook(module: nn.MultiheadAttention, args, _kwargs, output):
            if not self.mine():
                return None
            probs, value = output[1], args[2]
            b, n, d = value.shape
            v = F.linear(value, module.in_proj_weight[2 * d:], None if module.in_proj_bias is None
                         else module.in_proj_bias[2 * d:])
            v = v.reshape(b, n, module.num_heads, d // module.num_heads).transpose(1, 2)
            out = module.out_proj(torch.matmul(probs, v).transpose(1, 2).reshape(b, probs.shape[-2], d))
            self.attention.setdefault(name, probs)
            return out, None
        return hook

    def output(self, name: str):
        def hook(_module, _inputs, output):
            if self.mine():
                self.tokens.setdefault(name, output)
        return hook


def _hooks(model: nn.Module, blocks: list[str], rec: _Recorder) -> list:
    handles = [model.get_submodule(blocks[0]).register_forward_pre_hook(rec.start)]
    for name in blocks:
        block = model.get_submodule(name)
        handles.append(block.register_forward_hook(rec.output(name)))
        timm_attn = _timm_attention(block)
        if timm_attn is not None:
            handles.append(timm_attn.attn_drop.register_forward_hook(rec.probs(name)))
        else:
            mha = _torchvision_attention(block)
            handles.append(mha.register_forward_pre_hook(rec.mha_inputs, with_kwargs=True))
            handles.append(mha.register_forward_hook(rec.mha_replay(name), with_kwargs=True))
    return handles


def legrad(x: MapInputs) -> MapResult:
    """``B x h x w`` LeGrad maps on the patch grid."""
    model, blocks = x.model, legrad_blocks(x.model, x.layer)
    project = score_projection(model)
    rec = _Recorder(blocks[0])
    fused = [(a, a.fused_attn) for n in blocks if (a := _timm_attention(model.get_submodule(n))) is not None
             and getattr(a, "fused_attn", False)]
    x.extra_passes += len(x.targets)
    rows = torch.arange(len(x.targets), device=x.batch.device)
    cols = torch.tensor(x.targets, device=x.batch.device)
    relevances = []
    with torch.inference_mode(False):
        handles = _hooks(model, blocks, rec)
        try:
            for attn, _ in fused:
                attn.fused_attn = False
            with torch.no_grad(), eval_mode(model):
                model(x.batch)
                with torch.enable_grad():
                    for i, name in enumerate(blocks):
                        score = project(rec.tokens[name])[rows, cols].sum()
                        grad = torch.autograd.grad(score, rec.attention[name], retain_graph=i < len(blocks) - 1)[0]
                        relevances.append(torch.relu(grad).mean(dim=(1, 2)).detach())
        finally:
            for attn, flag in fused:
                attn.fused_attn = flag
            for handle in handles:
                handle.remove()
    tokens = rec.tokens[blocks[-1]]
    layout = layout_of(model, blocks[-1], tuple(tokens.shape), tuple(x.batch.shape[-2:]))
    keys = torch.stack(relevances).mean(0)[:, layout.prefix:]
    return keys.reshape(-1, layout.height, layout.width).to(x.activations.dtype), None

