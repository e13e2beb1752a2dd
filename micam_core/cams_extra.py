"""Maps of the methods added for issue 17 that read the target layer (activations, gradients, HVP, head).

Each function is a record's ``compute``: ``(MapInputs, **params) -> (B x h x w ReLU'd map, B x K weights or None)``.
Constants are pytorch-grad-cam 1.5.7's / torchcam 0.5's, whose maps are the oracles (tests/test_cams_extra.py).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from .cams import first_component
from .capture import Objective, capture
from .errors import MicamError
from .maps import combine
from .registry import MapInputs, MapResult

FEM_K = 2.0  # FEM's k-sigma threshold (pytorch-grad-cam's default, the paper's)
FINER_EPS = 1e-9  # pytorch-grad-cam's FinerWeightedTarget
FINER_ID = "finercam"  # the key of Finer-CAM's objective in the capture's gradients


def gradcam_elementwise(x: MapInputs) -> MapResult:
    """Element-wise Grad-CAM: ``ReLU(sum_k ReLU(g_k * A_k))``."""
    return torch.relu(torch.relu(x.grad_logit * x.activations).sum(1)), None


def eigengradcam(x: MapInputs) -> MapResult:
    """The first principal component of ``g * A`` (oriented as Eigen-CAM's: positive with ``sum_k g_k A_k``)."""
    return torch.relu(first_component(x.grad_logit * x.activations)), None


def kernel_first_component(acts: torch.Tensor) -> torch.Tensor:
    """KPCA-CAM: each image's first kernel principal component of its centred ``(h*w) x K`` activations.

    As ``sklearn.decomposition.KernelPCA(n_components=1, kernel="sigmoid")`` (pytorch-grad-cam's default):
    kernel ``tanh(<x, y> / K + 1)``, centred in feature space, top eigenvector scaled by the square root
    of its eigenvalue. Sign as scikit-learn's ``svd_flip``: the cell of largest magnitude is positive.
    """
    b, k, h, w = acts.shape
    cells = acts.reshape(b, k, h * w).transpose(1, 2).to(torch.float64)
    cells = cells - cells.mean(dim=1, keepdim=True)
    kernel = torch.tanh(cells @ cells.transpose(1, 2) / k + 1.0)
    kernel = (kernel - kernel.mean(1, keepdim=True) - kernel.mean(2, keepdim=True)
              + kernel.mean((1, 2), keepdim=True))
    values, vectors = torch.linalg.eigh(kernel)
    top = vectors[..., -1]  # B x hw, eigenvalues ascending
    sign = torch.sign(top.gather(1, top.abs().argmax(1, keepdim=True)))
    proj = top * sign * values[..., -1:].clamp_min(0).sqrt()
    return proj.reshape(b, h, w).to(acts.dtype)


def kpcacam(x: MapInputs) -> MapResult:
    return torch.relu(kernel_first_component(x.activations)), None


def fem(x: MapInputs) -> MapResult:
    """FEM: ``w_k`` = share of channel ``k``'s cells above ``mean_k + 2 std_k``; ``ReLU(sum_k w_k A_k)``."""
    a = x.activations
    b, k, h, w = a.shape
    cells = a.reshape(b, k, h * w)
    mean = cells.sum(2, keepdim=True) / (h * w)  # two passes, as NumPy (torch.std_mean is slow on short rows)
    centred = cells - mean
    std = (centred * centred).sum(2, keepdim=True).div_(h * w).sqrt_()
    weights = (cells > mean + FEM_K * std).sum(2).to(a.dtype) / (h * w)
    return combine(weights, a), weights


def shapleycam(x: MapInputs) -> MapResult:
    """ShapleyCAM: ``w_k = mean_ij(g - H A / 2)_k`` (second-order Taylor of the target logit)."""
    w = (x.grad_logit - 0.5 * x.hvp).mean(dim=(2, 3))
    return combine(w, x.activations), w


def finer_objective(strength: float, comparisons: int) -> Objective:
    """Finer-CAM's score: ``sum_j p_j (y_c - strength y_j) / sum_j p_j`` over the ``comparisons`` classes
    whose logits are closest to the target's (``p``: softmax, differentiated through, as pytorch-grad-cam)."""
    def objective(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        own = logits.gather(1, targets[:, None])
        distance = (logits - own).detach().abs().scatter(1, targets[:, None], float("inf"))
        refs = distance.topk(min(comparisons, logits.shape[1] - 1), dim=1, largest=False).indices
        p = torch.softmax(logits, dim=1).gather(1, refs)
        return (p * (own - strength * logits.gather(1, refs))).sum(1) / (p.sum(1) + FINER_EPS)
    return objective


def finercam(x: MapInputs, strength: float = 1.0, comparisons: int = 3) -> MapResult:
    """Finer-CAM on Grad-CAM: Grad-CAM weights of the gradient of :func:`finer_objective` (parameters used there)."""
    w = x.grads[FINER_ID].mean(dim=(2, 3))
    return combine(w, x.activations), w


def classifier_head(model: nn.Module) -> nn.Module | None:
    """The model's final linear classifier: timm's ``get_classifier()``, else its only ``nn.Linear`` (torchcam)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, (nn.Linear, nn.Conv2d)):
        return head
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linear[0] if len(linear) == 1 else None


def _head_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    head = classifier_head(model)
    if head is None:
        return None
    weight = head.weight.detach().reshape(head.weight.shape[0], -1)
    bias = head.bias.detach() if head.bias is not None else torch.zeros_like(weight[:, 0])
    return weight, bias


def head_mismatch(model: nn.Module, acts: torch.Tensor, logits: torch.Tensor) -> str | None:
    """Why ``acts`` (B x K x h x w) is not followed by global average pooling and a linear classifier, or None.

    Checked on the numbers: pooling the layer and applying the classifier must give the model's scores.
    """
    head = _head_weights(model)
    if head is None:
        return "CAM needs one linear classifier at the end of the model; this model has none that CAM can read."
    weight, bias = head
    if weight.shape[1] != acts.shape[1] or weight.shape[0] != logits.shape[1]:
        return (f"CAM needs the layer that feeds the classifier: this layer has {acts.shape[1]} channels and the "
                f"classifier takes {weight.shape[1]} inputs. Choose the last feature map, or another method.")
    pooled = acts.mean(dim=(2, 3)).to(weight.dtype) @ weight.T + bias
    logits = logits.to(pooled.dtype)
    if not torch.allclose(pooled, logits, rtol=1e-3, atol=1e-3 * float(logits.abs().max().clamp_min(1.0))):
        return ("CAM needs a layer followed only by global average pooling and a linear classifier; here averaging "
                "the layer and applying the classifier does not give the model's scores. Choose the last feature "
                "map before the pooling (on a CNN), or another method.")
    return None


_probed: weakref.WeakKeyDictionary[nn.Module, dict[str, str | None]] = weakref.WeakKeyDictionary()


def cam_refusal(loaded, layer: str) -> str | None:
    """CAM's availability on ``loaded`` at ``layer``: one probe pass on a seeded random image, remembered."""
    model = loaded.model
    known = _probed.setdefault(model, {})
    if layer not in known:
        if classifier_head(model) is None:
            known[layer] = head_mismatch(model, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1))
        else:
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(1, *loaded.data_config["input_size"], generator=generator).to(loaded.device)
            try:
                cap = capture(model, layer, x, lambda _: [0], want_logit_grad=False, want_prob_grad=False)
            except MicamError:
                return None  # the layer itself is refused, with its own sentence, when the request runs
            known[layer] = head_mismatch(model, cap.activations, cap.logits)
    return known[layer]


def cam(x: MapInputs) -> MapResult:
    """CAM: the target's classifier weights, ``ReLU(sum_k W_ck A_k)``, for a layer followed by GAP + linear
    (checked on this image's numbers unless :func:`cam_refusal` already found the layer fit)."""
    if _probed.get(x.model, {}).get(x.layer, "unknown") is not None:
        reason = head_mismatch(x.model, x.activations, x.logits)
        if reason:
            raise MicamError(reason)
    weight, _ = _head_weights(x.model)
    w = weight[torch.tensor(x.targets, device=weight.device)]
    return combine(w, x.activations), w
