"""The built-in methods: MI CAM, MI-Grad-CAM and the CAM methods they are compared with, one record each.

Each record is one :func:`~micam_core.registry.register` call (see :class:`~micam_core.registry.Method`
for the fields). :func:`weighted` and :func:`elementwise` build ``compute`` for the two common shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .lazy import LazyModule
from .registry import MapInputs, MapResult, Method, register

if TYPE_CHECKING:
    import torch
else:  # importing the records stays cheap (`--help`); torch loads when a map is first computed
    torch = LazyModule("torch")

# Small constants exactly as pytorch-grad-cam 1.5.7 uses them (its maps are our oracle).
GRADCAMPP_EPS = 1e-6
XGRADCAM_EPS = 1e-7


def weighted(weights: Callable[..., torch.Tensor]) -> Callable[..., MapResult]:
    """A method defined by ``B x K`` channel weights ``weights(x, **params)``: ``ReLU(sum_k w_k A_k)``."""
    def compute(x: MapInputs, **params) -> MapResult:
        from .maps import combine

        w = weights(x, **params)
        return combine(w, x.activations), w
    return compute


def elementwise(cells: Callable[..., torch.Tensor]) -> Callable[..., MapResult]:
    """A method defined per cell: ``ReLU(sum_k M_k)`` with ``M = cells(x, **params)``, ``B x K x h x w``."""
    def compute(x: MapInputs, **params) -> MapResult:
        return torch.relu(cells(x, **params).sum(1)), None
    return compute


def _migradcam_weights(x: MapInputs) -> torch.Tensor:
    mi = x.mi
    share = mi / mi.sum(1, keepdim=True).clamp_min(torch.finfo(mi.dtype).tiny)
    return x.grad_prob.mean(dim=(2, 3)) * share


def _gradcampp_weights(x: MapInputs) -> torch.Tensor:
    return gradcampp_weights(x.activations, x.grad_logit)


def gradcampp_weights(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ ``B x K`` weights of activations ``a`` and logit gradients ``g`` (pytorch-grad-cam's closed form)."""
    g2 = g * g
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + GRADCAMPP_EPS)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(g) * alpha).sum(dim=(2, 3))


def _xgradcam_weights(x: MapInputs) -> torch.Tensor:
    a = x.activations
    return (x.grad_logit * a / (a.sum(dim=(2, 3), keepdim=True) + XGRADCAM_EPS)).sum(dim=(2, 3))


def first_component(acts: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM: each image's centred ``(h*w) x K`` activations projected on their first principal axis.

    The projection is ``u_1 s_1`` (first left singular vector times its singular value), read from the
    eigen-decomposition of the smaller Gram matrix: ``C C^T`` (cells x cells) gives ``u_1`` and ``s_1^2``
    directly; ``C^T C`` (channels x channels) gives the axis ``v_1``, and ``C v_1`` the projection. In
    float64, this equals the SVD's projection (pytorch-grad-cam's) at a fraction of its cost.
    The sign of a singular vector is arbitrary; we orient it so that the projection correlates
    positively with the summed activation (salient = strongly active), which the paper implies
    and pytorch-grad-cam leaves to the SVD routine (see tests/test_registry.py).
    """
    b, k, h, w = acts.shape
    cells = acts.reshape(b, k, h * w).transpose(1, 2).to(torch.float64)
    cells = cells - cells.mean(dim=1, keepdim=True)
    if h * w <= k:
        values, vectors = torch.linalg.eigh(cells @ cells.transpose(1, 2))
        proj = vectors[..., -1] * values[..., -1:].clamp_min(0).sqrt()  # B x hw
    else:
        _, vectors = torch.linalg.eigh(cells.transpose(1, 2) @ cells)
        proj = (cells @ vectors[..., -1:]).squeeze(-1)
    total = cells.sum(dim=2)
    sign = torch.where((proj * total).sum(1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign).reshape(b, h, w).to(acts.dtype)


def _eigencam(x: MapInputs) -> MapResult:
    return torch.relu(first_component(x.activations)), None


def _scorecam(x: MapInputs) -> MapResult:
    from .maps import combine
    from .scorecam import SCORECAM_CHUNK, scorecam_weights

    w, passes = scorecam_weights(x.model, x.batch, x.activations, x.targets, x.chunk(SCORECAM_CHUNK))
    x.extra_passes += passes
    return combine(w, x.activations), w


GRADS = frozenset({"grad_logit"})

register(Method(
    id="micam", label="MI CAM", class_specific=False, needs=frozenset({"mi"}), follows_display=True,
    compute=weighted(lambda x: x.mi), reference="Iyer et al. 2025, arXiv:2507.09092",
    formula="ReLU(sum_k MI(g; A_k^) A_k), MI exact on distinct values"))
register(Method(
    id="gradcam", label="Grad-CAM", class_specific=True, needs=GRADS,
    compute=weighted(lambda x: x.grad_logit.mean(dim=(2, 3))), reference="Selvaraju et al. 2017, arXiv:1610.02391",
    formula="ReLU(sum_k mean_ij(d y_c / dA_k) A_k)"))
register(Method(
    id="migradcam", label="MI-Grad-CAM", class_specific=True, needs=frozenset({"mi", "grad_prob"}),
    follows_display=True, compute=weighted(_migradcam_weights), reference="Iyer et al. (MI CAM authors' follow-up)",
    formula="ReLU(sum_k mean_ij(d p_c / dA_k) MI_k / sum_j MI_j A_k)"))
register(Method(
    id="gradcampp", label="Grad-CAM++", class_specific=True, needs=GRADS, compute=weighted(_gradcampp_weights),
    reference="Chattopadhay et al. 2018, arXiv:1710.11063",
    formula="w_k = sum_ij ReLU(g_kij) a_kij, a = g^2 / (2 g^2 + sum_ab A_kab g^3), g = d y_c / dA"))
register(Method(
    id="xgradcam", label="XGrad-CAM", class_specific=True, needs=GRADS, compute=weighted(_xgradcam_weights),
    reference="Fu et al. 2020, arXiv:2008.02312", formula="w_k = sum_ij (A_kij / sum_ab A_kab) d y_c / dA_kij"))
register(Method(
    id="layercam", label="LayerCAM", class_specific=True, needs=GRADS,
    compute=elementwise(lambda x: torch.relu(x.grad_logit) * x.activations),
    reference="Jiang et al. 2021, IEEE TIP 30:5875", formula="ReLU(sum_k ReLU(d y_c / dA_k) * A_k), per cell"))
register(Method(
    id="hirescam", label="HiResCAM", class_specific=True, needs=GRADS,
    compute=elementwise(lambda x: x.grad_logit * x.activations),
    reference="Draelos & Carin 2020, arXiv:2011.08891", formula="ReLU(sum_k (d y_c / dA_k) * A_k), per cell"))
register(Method(
    id="eigencam", label="Eigen-CAM", class_specific=False, compute=_eigencam,
    reference="Muhammad & Yeasin 2020, arXiv:2008.00299",
    formula="ReLU(projection of the centred activations on their first principal component)"))
register(Method(
    id="scorecam", label="Score-CAM", class_specific=True, compute=_scorecam, passes=lambda channels: channels + 1,
    reference="Wang et al. 2020, arXiv:1910.01279",
    formula="w = softmax_k(y_c(X * norm(up(A_k)))), one masked forward pass per channel"))

