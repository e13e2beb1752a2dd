"""Records of the methods that read more than the target layer: RefineCAM (several layers) and LeGrad
(the attention of vision-transformer blocks). The shared pass serves both (its ``"layers"`` and
``"attention"`` needs, the modules named by ``taps``); each says when it cannot run.

The computing modules (:mod:`micam_core.refine`, :mod:`micam_core.legrad`, torch) are imported inside the
functions: reading the records stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .fields import Param
from .registry import MapInputs, MapResult, Method, register

if TYPE_CHECKING:
    from .models import LoadedModel


def _refinecam(x: MapInputs, layers: int) -> MapResult:
    from .refine import refinecam

    return refinecam(x, layers)


def _refine_why_not(loaded: LoadedModel, layer: str) -> str | None:
    from .refine import why_not

    return why_not(loaded, layer)


def _refine_taps(loaded: LoadedModel, layer: str, layers: int) -> list[str]:
    from .refine import refine_layers

    return refine_layers(loaded, layer, layers)[1:]


def _legrad_taps(loaded: LoadedModel, layer: str) -> list[str]:
    from .legrad import legrad_blocks

    return legrad_blocks(loaded.model, layer)


def _legrad(x: MapInputs) -> MapResult:
    from .legrad import legrad

    return legrad(x)


def _legrad_why_not(loaded: LoadedModel, layer: str) -> str | None:
    from .legrad import why_not

    return why_not(loaded, layer)


register(Method(
    id="refinecam", label="RefineCAM", class_specific=True, compute=_refinecam, family="multilayer",
    needs=frozenset({"grad_logit", "layers"}), taps=_refine_taps, unavailable=_refine_why_not,
    params=(Param(name="layers", default=3, minimum=2, maximum=5, step=1,
                  help="layers multiplied: the chosen one and the shallower ones before it"),),
    reference="pytorch-grad-cam 1.5.7 RefineCAM (arXiv:2605.14641)",
    formula="prod_l up(norm(ReLU(Grad-CAM++ at layer l))), the chosen layer the deepest; the shared pass "
            "records from the shallowest layer"))
register(Method(
    id="legrad", label="LeGrad", class_specific=True, compute=_legrad, family="transformer",
    needs=frozenset({"attention"}), taps=_legrad_taps, unavailable=_legrad_why_not,
    reference="Bousselham et al. 2025, ICCV, arXiv:2404.03214",
    formula="mean_l mean_{heads,queries} ReLU(d s^l_c / d attention^l), s^l = head(norm(tokens of block l))"))
