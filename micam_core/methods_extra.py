"""Records of the methods the peers ship (issue 17, part one) and of MI CAM on quantile bins (our extension).

The maps are computed in :mod:`micam_core.cams_extra` (layer methods) and :mod:`micam_core.cams_pixel`
(input-resolution methods, binned MI); each equals its oracle (tests/test_cams_extra.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .fields import Param
from .registry import Method, register

GRADS = frozenset({"grad_logit"})


class _Lazy:
    """The functions of computing module ``name``, each imported at its first call: reading the records
    stays light (``--help`` loads no torch)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(f".{self.name}", __package__), attr)(*args, **kwargs)
        call.__name__ = attr
        return call


ce = _Lazy("cams_extra")  # layer methods
cp = _Lazy("cams_pixel")  # input-resolution methods, binned MI

register(Method(
    id="gradcamew", label="Element-wise Grad-CAM", class_specific=True, needs=GRADS, compute=ce.gradcam_elementwise,
    reference="pytorch-grad-cam's GradCAMElementWise (Gildenblat et al. 2021); cf. HiResCAM, arXiv:2011.08891",
    formula="ReLU(sum_k ReLU((d y_c / dA_k) * A_k)), per cell"))
register(Method(
    id="eigengradcam", label="EigenGrad-CAM", class_specific=True, needs=GRADS, compute=ce.eigengradcam,
    reference="pytorch-grad-cam's EigenGradCAM (Gildenblat et al. 2021); Eigen-CAM, arXiv:2008.00299",
    formula="ReLU(first principal component of the centred (d y_c / dA) * A), oriented as Eigen-CAM"))
register(Method(
    id="kpcacam", label="KPCA-CAM", class_specific=False, compute=ce.kpcacam,
    reference="Karmani et al. 2024, arXiv:2410.00267",
    formula="ReLU(first kernel principal component of the centred activations, kernel tanh(<a, b> / K + 1)); "
            "sign: the largest cell positive"))
register(Method(
    id="fem", label="FEM", class_specific=False, compute=ce.fem,
    reference="Fuad et al. 2020, IPTA, hal-02963298",
    formula="w_k = share of the cells of A_k above mean(A_k) + 2 std(A_k); ReLU(sum_k w_k A_k)"))
register(Method(
    id="shapleycam", label="ShapleyCAM", class_specific=True, needs=frozenset({"grad_logit", "hvp"}),
    compute=ce.shapleycam, reference="Cai 2025, arXiv:2501.06261",
    formula="w_k = mean_ij(d y_c / dA - (H A) / 2)_k, H the Hessian of y_c at A; ReLU(sum_k w_k A_k)"))
register(Method(
    id="finercam", label="Finer-CAM", class_specific=True, family="gradient", compute=ce.finercam,
    objective=ce.finer_objective,
    params=(Param(name="strength", default=1.0, minimum=0.0, maximum=2.0, step=0.1,
                  help="how much of the similar classes' scores is subtracted (alpha)"),
            Param(name="comparisons", default=3, minimum=1, maximum=10, step=1,
                  help="number of classes whose logits are closest to the target's")),
    reference="Zhang et al. 2025, arXiv:2501.11309",
    formula="Grad-CAM of sum_j p_j (y_c - alpha y_j) / sum_j p_j, j the classes with logits closest to y_c"))
register(Method(
    id="cam", label="CAM", class_specific=True, compute=ce.cam, unavailable=ce.cam_refusal,
    reference="Zhou et al. 2016, arXiv:1512.04150",
    formula="ReLU(sum_k W_ck A_k), W the linear classifier after global average pooling",
    note="CAM works only on the layer that global average pooling and one linear classifier follow; "
         "elsewhere it is refused."))
register(Method(
    id="fullgrad", label="FullGrad", class_specific=True, family="gradient", needs=frozenset({"bias_grads"}),
    compute=cp.fullgrad,
    reference="Srinivas & Fleuret 2019, arXiv:1905.00780",
    formula="sum_c s(|x_c d y_c / dx_c|) + sum_layers up(sum_k s(|b_k d y_c / dz_k|)), s: rescale each map to [0, 1]",
    note="FullGrad ignores the chosen layer: it sums the input gradient and the gradients at every "
         "convolution and batch-norm bias."))
register(Method(
    id="guidedgradcam", label="Guided Grad-CAM", class_specific=True, needs=frozenset({"grad_logit", "guided"}),
    compute=cp.guided_gradcam, reference="Selvaraju et al. 2017, arXiv:1610.02391",
    formula="sum_colour |guided backpropagation d y_c / dx| * up(Grad-CAM), at pixel resolution"))
register(Method(
    id="micambinned", label="MI CAM (binned)", class_specific=False, follows_display=True, compute=cp.micam_binned,
    params=(Param(name="bins", default=16, minimum=2, maximum=256, step=1,
                  help="quantile bins for each channel and for the grey image"),),
    reference="This project's extension of Iyer et al. 2025 (not the paper's method)",
    formula="ReLU(sum_k MI(q(g); q(A_k^)) A_k), q: B quantile bins of each channel and of the grey image"))
