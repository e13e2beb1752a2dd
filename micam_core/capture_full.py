"""What the capture records when a chosen method needs gradients below the target layer.

FullGrad needs the input gradient and the gradient at the output of every layer with a bias; guided
backpropagation (Guided Grad-CAM) needs the input gradient with every ``nn.ReLU`` passing only positive
gradients. Both are read from the same forward pass as every other method: the pass then records the
whole graph from the input (``full`` mode of the capture), and :class:`FullTaps` hooks the layers.

As pytorch-grad-cam 1.5.7 (our oracle): the bias layers are the modules whose type is exactly
``nn.Conv2d`` or ``nn.BatchNorm2d`` with a bias (a BatchNorm's bias is its effective one,
``beta - mean * gamma / sqrt(var + eps)``), and the guided ReLUs are the ``nn.ReLU`` modules. A guided
ReLU's backward is ``(x > 0) * ReLU(grad_out)``: a hook that clamps the gradient arriving at the
ReLU's output gives exactly that, and it acts only during the guided backward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

BIAS_LAYER_TYPES = (nn.Conv2d, nn.BatchNorm2d)


def effective_bias(module: nn.Module) -> torch.Tensor:
    """The bias a layer adds per channel (a BatchNorm's after folding its running statistics)."""
    if isinstance(module, nn.BatchNorm2d):
        return (module.bias - module.running_mean * module.weight
                / torch.sqrt(module.running_var + module.eps)).detach()
    return module.bias.detach()


def bias_layers(model: nn.Module) -> list[nn.Module]:
    """FullGrad's layers: exactly ``nn.Conv2d`` / ``nn.BatchNorm2d`` with a bias, in module order."""
    return [m for m in model.modules() if type(m) in BIAS_LAYER_TYPES and getattr(m, "bias", None) is not None]


class FullTaps:
    """Forward hooks for one full-mode pass: bias-layer outputs kept, ReLU outputs made guidable."""

    def __init__(self, model: nn.Module, bias: bool, guided: bool) -> None:
        self.owner = threading.get_ident()
        self.outputs: list[tuple[nn.Module, torch.Tensor]] = []
        self.guiding = False
        self.handles = []
        if bias:
            self.handles += [m.register_forward_hook(self._keep) for m in bias_layers(model)]
        if guided:
            self.handles += [m.register_forward_hook(self._guide)
                             for m in model.modules() if isinstance(m, nn.ReLU)]

    def _keep(self, module: nn.Module, _inputs, output) -> None:
        if threading.get_ident() == self.owner and isinstance(output, torch.Tensor) and output.requires_grad:
            self.outputs.append((module, output))

    def _guide(self, _module: nn.Module, _inputs, output) -> None:
        if threading.get_ident() == self.owner and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda g: g.clamp_min(0) if self.guiding else g)

    @contextmanager
    def guided(self) -> Iterator[None]:
        """Backward passes inside this block go through guided ReLUs."""
        self.guiding = True
        try:
            yield
        finally:
            self.guiding = False

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
