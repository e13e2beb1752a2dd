"""Records of the methods that spend extra passes: Ablation-CAM, SS-CAM, IS-CAM, SmoothGrad-CAM++.

Each one's ``passes`` is its upper bound of extra forward passes per image; the request is costed and
capped (``MICAM_MAX_EXTRA_PASSES``) from it before anything runs. The stochastic ones take a ``seed``.
"""

from __future__ import annotations

from .fields import Param
from .registry import MapInputs, MapResult, Method, register

# The computing modules (torch) are imported inside each compute: reading the records stays cheap (`--help`).

SEED = Param(name="seed", default=0, minimum=0, maximum=2**31 - 1, step=1,
             help="seed of the noise generator (the same seed gives the same map)")


def _ablationcam(x: MapInputs) -> MapResult:
    from .ablation import ABLATION_CHUNK, ablation_weights
    from .maps import combine

    w, passes = ablation_weights(x.model, x.layer, x.batch, x.logits, x.targets, x.chunk(ABLATION_CHUNK))
    x.extra_passes += passes
    return combine(w, x.activations), w


def _iscam(x: MapInputs, samples: int) -> MapResult:
    from .maps import combine
    from .smoothscore import MASK_CHUNK, iscam_weights

    w, passes = iscam_weights(x.model, x.batch, x.activations, x.targets, samples, x.chunk(MASK_CHUNK))
    x.extra_passes += passes
    return combine(w, x.activations), w


def _sscam(x: MapInputs, samples: int, std: float, seed: int) -> MapResult:
    from .maps import combine
    from .smoothscore import MASK_CHUNK, sscam_weights

    w, passes = sscam_weights(x.model, x.batch, x.activations, x.targets, samples, std, seed, x.chunk(MASK_CHUNK))
    x.extra_passes += passes
    return combine(w, x.activations), w


def _smoothgradcampp(x: MapInputs, samples: int, std: float, seed: int) -> MapResult:
    from .smoothgrad import smoothgradcampp

    x.extra_passes += samples * len(x.targets)
    return smoothgradcampp(x.model, x.layer, x.batch, x.activations, x.targets, samples, std, seed)


register(Method(
    id="ablationcam", label="Ablation-CAM", class_specific=True, compute=_ablationcam,
    passes=lambda channels: channels + 1, reference="Desai & Ramaswamy 2020, WACV",
    formula="w_k = (y_c - y_c(A with channel k ablated)) / y_c; one pass per channel through the layers after A"))
register(Method(
    id="sscam", label="SS-CAM", class_specific=True, compute=_sscam,
    passes=lambda channels, samples, std, seed: samples * channels,
    params=(Param(name="samples", default=35, minimum=1, maximum=100, step=1, help="noisy masks per channel"),
            Param(name="std", default=2.0, minimum=0.0, maximum=10.0, step=0.1, help="noise standard deviation"),
            SEED),
    reference="Wang et al. 2020, arXiv:2006.14255",
    formula="w = softmax_k(mean_i y_c((norm(A_k)^ + noise_i) * X)); N masked passes per channel"))
register(Method(
    id="iscam", label="IS-CAM", class_specific=True, compute=_iscam,
    passes=lambda channels, samples: samples * channels + 1,
    params=(Param(name="samples", default=10, minimum=1, maximum=100, step=1, help="integration steps"),),
    reference="Naidu et al. 2020, arXiv:2010.03023",
    formula="w = softmax_k(mean_i y_c(c_i norm(A_k)^ * X)), c_i = sum_{j<=i} j / N; N masked passes per channel"))
register(Method(
    id="smoothgradcampp", label="SmoothGrad-CAM++", class_specific=True, needs=frozenset({"grad_logit"}),
    compute=_smoothgradcampp, passes=lambda channels, samples, std, seed: samples,
    params=(Param(name="samples", default=4, minimum=1, maximum=64, step=1, help="noisy copies of the input"),
            Param(name="std", default=0.3, minimum=0.0, maximum=5.0, step=0.05, help="noise standard deviation"),
            SEED),
    reference="Omeiza et al. 2019, arXiv:1908.01224",
    formula="Grad-CAM++ weights from gradients averaged over N noisy inputs (torchcam's form)"))
