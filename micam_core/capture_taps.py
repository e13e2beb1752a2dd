"""What the capture records when a chosen method reads more than the target layer, in the same pass.

``layers`` (RefineCAM): the activations of shallower layers and the target logit's gradient there.
``attention`` (LeGrad): the post-softmax attention ``P^l`` of vision-transformer blocks and each block's
output tokens, so that the gradient of the block's own class score with respect to ``P^l`` can be taken.
Recording starts at the first of these to run (its output, or the block's input, becomes a fresh leaf);
the target layer's tap then keeps its copies connected to the graph (see capture.py).

Attention blocks are timm's (an ``attn`` with ``qkv`` and ``attn_drop``) and torchvision's
(``self_attention``, a batch-first ``nn.MultiheadAttention``). The model is never changed:

- timm with ``fused_attn`` off: the probabilities are read where the block computes them (``attn_drop``);
- timm with ``fused_attn`` on: while the block's ``attn`` runs, a torch-function mode of this thread only
  (:class:`MathAttention`) answers ``scaled_dot_product_attention`` by its formula,
  ``softmax(q k^T * scale + mask) v``, and keeps the probabilities: one attention computation, not two;
- torchvision: the call is asked for per-head weights and its output is replayed from them, so the weights
  are on the path to the output (as torchcam does).

Every hook acts only for the thread that registered it; concurrent passes on the shared model are untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .errors import LayerError
from .layers import get_module
from .tokens import Layout, layout_of


def timm_attention(block: nn.Module) -> nn.Module | None:
    attn = getattr(block, "attn", None)
    return attn if attn is not None and hasattr(attn, "qkv") and hasattr(attn, "attn_drop") else None


def torchvision_attention(block: nn.Module) -> nn.Module | None:
    attn = getattr(block, "self_attention", None)
    return attn if isinstance(attn, nn.MultiheadAttention) and attn.batch_first else None


def attention_blocks(model: nn.Module) -> list[str]:
    """Names of the model's global self-attention blocks, in order."""
    return [name for name, module in model.named_modules()
            if timm_attention(module) is not None or torchvision_attention(module) is not None]


def score_projection(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Tokens of a block -> class logits, through the model's own final norm and head (``None``: unknown)."""
    if hasattr(model, "forward_head") and isinstance(getattr(model, "norm", None), nn.Module):
        return lambda tokens: model.forward_head(model.norm(tokens))
    encoder, heads = getattr(model, "encoder", None), getattr(model, "heads", None)
    if isinstance(getattr(encoder, "ln", None), nn.Module) and isinstance(heads, nn.Module):
        return lambda tokens: heads(encoder.ln(tokens)[:, 0])  # torchvision: the class token
    return None


class MathAttention(TorchFunctionMode):
    """``scaled_dot_product_attention`` by its formula, handing the probabilities to ``keep``; every other
    function runs as it would. A torch-function mode belongs to the thread that enters it."""

    def __init__(self, keep: Callable[[torch.Tensor], None]) -> None:
        super().__init__()
        self.keep = keep

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        return self._attention(*args, **kwargs)

    def _attention(self, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if dropout_p or is_causal or enable_gqa:
            raise LayerError("LeGrad reads full, dropout-free self-attention; this block's attention is not.")
        scores = (q * (q.shape[-1] ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
                else scores + attn_mask
        probs = scores.softmax(dim=-1)
        self.keep(probs)
        return probs @ v


class EarlyTaps:
    """Hooks that record shallower layers and attention blocks in the capture's pass (owner thread only)."""

    def __init__(self, model: nn.Module, layers: Sequence[str], blocks: Sequence[str]) -> None:
        self.blocks = list(blocks)
        self.owner = threading.get_ident()
        self.model = model
        self.outputs: dict[str, torch.Tensor] = {}  # shallower layers
        self.attention: dict[str, torch.Tensor] = {}  # block -> B x heads x queries x keys
        self.tokens: dict[str, torch.Tensor] = {}  # block -> its output tokens
        self._modes: list[MathAttention] = []
        self.handles = [get_module(model, name).register_forward_hook(self._layer(name)) for name in layers]
        for name in blocks:
            self._hook_block(model.get_submodule(name), name)

    def mine(self) -> bool:
        return threading.get_ident() == self.owner

    def _layer(self, name: str):
        def tap(_module, _inputs, output):
            if not self.mine() or name in self.outputs or not isinstance(output, torch.Tensor):
                return None
            if not output.requires_grad:  # the first recorded tensor: a fresh leaf, recording on from here
                torch.set_grad_enabled(True)  # restored by the caller's no_grad() on exit
                output = output.detach().requires_grad_(True)
            self.outputs[name] = output
            return output * 1.0  # a new tensor, so in-place operations after the layer stay legal
        return tap

    def _start(self, _module, args):
        if not self.mine() or not args or not isinstance(args[0], torch.Tensor) or args[0].requires_grad:
            return None
        torch.set_grad_enabled(True)
        return (args[0].detach().requires_grad_(True), *args[1:])

    def _hook_block(self, block: nn.Module, name: str) -> None:
        self.handles.append(block.register_forward_pre_hook(self._start))
        self.handles.append(block.register_forward_hook(self._keep(self.tokens, name)))
        attn = timm_attention(block)
        if attn is not None and getattr(attn, "fused_attn", False):
            self.handles.append(attn.register_forward_pre_hook(self._enter(name)))
            self.handles.append(attn.register_forward_hook(self._exit))
        elif attn is not None:
            self.handles.append(attn.attn_drop.register_forward_hook(self._keep(self.attention, name)))
        else:
            mha = torchvision_attention(block)
            self.handles.append(mha.register_forward_pre_hook(self._mha_inputs, with_kwargs=True))
            self.handles.append(mha.register_forward_hook(self._mha_replay(name), with_kwargs=True))

    def _keep(self, store: dict[str, torch.Tensor], name: str):
        def hook(_module, _inputs, output):
            if self.mine() and isinstance(output, torch.Tensor):
                store.setdefault(name, output)
        return hook

    def _enter(self, name: str):
        def hook(_module, _inputs):
            if self.mine():
                mode = MathAttention(lambda probs: self.attention.setdefault(name, probs))
                mode.__enter__()
                self._modes.append(mode)
        return hook

    def _exit(self, _module, _inputs, _output):
        if self.mine() and self._modes:
            self._modes.pop().__exit__(None, None, None)

    def _mha_inputs(self, _module, args, kwargs):
        if not self.mine():
            return None
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def _mha_replay(self, name: str):
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

    def attention_grads(self, targets: list[int], size: int, hw: tuple[int, int]
                        ) -> dict[str, tuple[torch.Tensor, Layout]]:
        """``d s^l_c / d P^l`` of every block ``l`` (``s^l``: its tokens through the model's final norm and head),
        one small backward pass each, with the layout of the block's tokens."""
        project = score_projection(self.model)
        missing = [b for b in self.blocks if b not in self.attention or b not in self.tokens]
        if missing or project is None:
            raise LayerError(f"The attention of block '{(missing or self.blocks)[0]}' could not be read in this pass.")
        out = {}
        with torch.enable_grad():
            for block in self.blocks:
                tokens, probs = self.tokens[block], self.attention[block]
                try:
                    scores = project(tokens[:size])
                    cols = torch.tensor(targets, device=scores.device)
                    score = scores.gather(1, cols[:, None]).sum()
                    grad = torch.autograd.grad(score, probs, allow_unused=True, retain_graph=True)[0]
                except (RuntimeError, ValueError, IndexError) as error:  # e.g. a head that cannot read these tokens
                    raise LayerError(f"The model's head cannot read the tokens of block '{block}' "
                                     f"({type(error).__name__}).") from None
                grad = torch.zeros_like(probs) if grad is None else grad.detach()
                out[block] = (grad[:size], layout_of(self.model, block, tuple(tokens.shape), hw))
        return out

    def remove(self) -> None:
        """Remove the hooks (and a mode left entered by an exception inside an attention block)."""
        while self._modes:
            self._modes.pop().__exit__(None, None, None)
        for handle in self.handles:
            handle.remove()
