"""The method registry: every explanation method is one :class:`Method` record.

A record says what the method needs from the shared capture (``needs``), how it turns the
captured tensors into a map at feature resolution (``compute``), and how the map is upsampled
for display. Adding a method is adding one record here (plus its tests); the library, the
command line, the report, the renderer, the metrics and the app iterate over :data:`REGISTRY`.

Needs: ``"grad_logit"`` (``d y_c / dA``), ``"grad_prob"`` (``d p_c / dA``), ``"mi"`` (the exact
mutual information of every channel with the grey image) and ``"forward_passes"`` (extra masked
forward passes, Score-CAM). Activations are always there. Grad-CAM++'s higher-order terms are
derived from ``d y_c / dA`` (the exponential-score closed form), so it needs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from .maps import combine
from .mi import mutual_information_torch

# Small constants exactly as pytorch-grad-cam 1.5.7 uses them (its maps are our oracle).
GRADCAMPP_EPS = 1e-6
XGRADCAM_EPS = 1e-7


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
    logits: torch.Tensor | None = None  # B x C scores of the shared pass
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # gradients of methods' own objectives
    hvp: torch.Tensor | None = None  # H A for the target logit (ShapleyCAM)
    input_grad: torch.Tensor | None = None  # d y_c / d input (FullGrad)
    guided_grad: torch.Tensor | None = None  # guided-backpropagation input gradient (Guided Grad-CAM)
    bias_grads: list | None = None  # (bias, d y_c / d output) of every bias layer (FullGrad)

    @cached_property
    def mi(self) -> torch.Tensor:
        """``B x K`` mutual information (nats), computed once however many methods use it."""
        acts = self.activations
        return torch.stack([
            mutual_information_torch(torch.from_numpy(g).to(acts.device), acts[i])
            for i, g in enumerate(self.grays)  # one call per image, all channels at once
        ]).to(acts.dtype)


MapResult = tuple[torch.Tensor, "torch.Tensor | None"]  # (ReLU'd B x h x w map, B x K weights or None)


@dataclass(frozen=True)
class Method:
    """One explanation method."""

    id: str
    label: str
    class_specific: bool
    needs: frozenset[str]
    compute: Callable[[MapInputs], MapResult]
    upsampling: str  # "setting": follows the display setting (MI maps); "bilinear": always bilinear
    reference: str
    formula: str


def _weighted(weights: Callable[[MapInputs], torch.Tensor]) -> Callable[[MapInputs], MapResult]:
    """A method defined by channel weights: ``ReLU(sum_k w_k A_k)``."""
    def compute(x: MapInputs) -> MapResult:
        w = weights(x)
        return combine(w, x.activations), w
    return compute


def _elementwise(cells: Callable[[MapInputs], torch.Tensor]) -> Callable[[MapInputs], MapResult]:
    """A method defined per cell: ``ReLU(sum_k M_k)`` with ``M`` the ``B x K x h x w`` it returns."""
    def compute(x: MapInputs) -> MapResult:
        return torch.relu(cells(x).sum(1)), None
    return compute


def _migradcam_weights(x: MapInputs) -> torch.Tensor:
    mi = x.mi
    share = mi / mi.sum(1, keepdim=True).clamp_min(torch.finfo(mi.dtype).tiny)
    return x.grad_prob.mean(dim=(2, 3)) * share


def _gradcampp_weights(x: MapInputs) -> torch.Tensor:
    g, a = x.grad_logit, x.activations
    g2 = g * g
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + GRADCAMPP_EPS)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(g) * alpha).sum(dim=(2, 3))


def _xgradcam_weights(x: MapInputs) -> torch.Tensor:
    a = x.activations
    return (x.grad_logit * a / (a.sum(dim=(2, 3), keepdim=True) + XGRADCAM_EPS)).sum(dim=(2, 3))


def first_component(acts: torch.Tensor) -> torch.Tensor:
    """Eigen-CAM: each image's centred ``(h*w) x K`` activations projected on their first principal axis.

    The sign of a singular vector is arbitrary; we orient it so that the projection correlates
    positively with the summed activation (salient = strongly active), which the paper implies
    and pytorch-grad-cam leaves to the SVD routine (see tests/test_registry.py).
    """
    b, k, h, w = acts.shape
    cells = acts.reshape(b, k, h * w).transpose(1, 2).to(torch.float64)
    cells = cells - cells.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(cells, full_matrices=False)
    proj = (cells @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # B x hw
    total = cells.sum(dim=2)
    sign = torch.where((proj * total).sum(1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign).reshape(b, h, w).to(acts.dtype)


def _eigencam(x: MapInputs) -> MapResult:
    return torch.relu(first_component(x.activations)), None


def _scorecam(x: MapInputs) -> MapResult:
    from .scorecam import scorecam_weights

    w, passes = scorecam_weights(x.model, x.batch, x.activations, x.targets)
    x.extra_passes += passes
    return combine(w, x.activations), w


GRADS = "grad_logit"
REGISTRY: dict[str, Method] = {m.id: m for m in [
    Method("micam", "MI CAM", False, frozenset({"mi"}), _weighted(lambda x: x.mi), "setting",
           "Iyer et al. 2025, arXiv:2507.09092",
           "ReLU(sum_k MI(g; A_k^) A_k), MI exact on distinct values; display: nearest + Gaussian blur"),
    Method("gradcam", "Grad-CAM", True, frozenset({GRADS}),
           _weighted(lambda x: x.grad_logit.mean(dim=(2, 3))), "bilinear",
           "Selvaraju et al. 2017, arXiv:1610.02391", "ReLU(sum_k mean_ij(d y_c / dA_k) A_k)"),
    Method("migradcam", "MI-Grad-CAM", True, frozenset({"mi", "grad_prob"}), _weighted(_migradcam_weights),
           "setting", "Iyer et al. (MI CAM authors' follow-up)",
           "ReLU(sum_k mean_ij(d p_c / dA_k) MI_k / sum_j MI_j A_k)"),
    Method("gradcampp", "Grad-CAM++", True, frozenset({GRADS}), _weighted(_gradcampp_weights), "bilinear",
           "Chattopadhay et al. 2018, arXiv:1710.11063",
           "w_k = sum_ij ReLU(g_kij) a_kij, a = g^2 / (2 g^2 + sum_ab A_kab g^3), g = d y_c / dA"),
    Method("xgradcam", "XGrad-CAM", True, frozenset({GRADS}), _weighted(_xgradcam_weights), "bilinear",
           "Fu et al. 2020, arXiv:2008.02312", "w_k = sum_ij (A_kij / sum_ab A_kab) d y_c / dA_kij"),
    Method("layercam", "LayerCAM", True, frozenset({GRADS}),
           _elementwise(lambda x: torch.relu(x.grad_logit) * x.activations), "bilinear",
           "Jiang et al. 2021, IEEE TIP 30:5875", "ReLU(sum_k ReLU(d y_c / dA_k) * A_k), per cell"),
    Method("hirescam", "HiResCAM", True, frozenset({GRADS}),
           _elementwise(lambda x: x.grad_logit * x.activations), "bilinear",
           "Draelos & Carin 2020, arXiv:2011.08891", "ReLU(sum_k (d y_c / dA_k) * A_k), per cell"),
    Method("eigencam", "Eigen-CAM", False, frozenset(), _eigencam, "bilinear",
           "Muhammad & Yeasin 2020, arXiv:2008.00299",
           "ReLU(projection of the centred activations on their first principal component)"),
    Method("scorecam", "Score-CAM", True, frozenset({"forward_passes"}), _scorecam, "bilinear",
           "Wang et al. 2020, arXiv:1910.01279",
           "w = softmax_k(y_c(X * norm(up(A_k)))), one masked forward pass per channel"),
]}

METHODS: tuple[str, ...] = tuple(REGISTRY)
METHOD_LABELS: dict[str, str] = {m.id: m.label for m in REGISTRY.values()}
DEFAULT_METHODS: tuple[str, ...] = ("micam", "gradcam", "migradcam")
SINGLE_PASS: tuple[str, ...] = tuple(m.id for m in REGISTRY.values() if "forward_passes" not in m.needs)


def needs_of(methods: Iterable[str]) -> frozenset[str]:
    """Everything the chosen methods need from the capture."""
    return frozenset().union(*(REGISTRY[m].needs for m in methods))


def objectives_of(methods: Iterable[str]) -> dict:
    """The chosen methods' own objectives (whose gradients at the layer they read), by method id."""
    return {m: REGISTRY[m].objective() for m in methods if getattr(REGISTRY[m], "objective", None)}


def display_mode(method: str, upsampling: str) -> str:
    """How ``method``'s map is brought to the input size under the display setting ``upsampling``."""
    return upsampling if REGISTRY[method].upsampling == "setting" else REGISTRY[method].upsampling


def compute_maps(methods: Iterable[str], inputs: MapInputs) -> dict[str, MapResult]:
    """Each chosen method's feature-resolution map (and channel weights, where it has them)."""
    return {m: REGISTRY[m].compute(inputs) for m in methods}
