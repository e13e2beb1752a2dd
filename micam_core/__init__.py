"""micam_core: MI CAM and the CAM methods it is compared with, with counterfactual checks, for timm models.

Names are imported on first use (PEP 562), so ``python -m micam_core --help`` answers without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# public name -> the submodule that defines it (a new public name is one line here)
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["CurveResult", "Faithfulness", "deletion_insertion"], "counterfactual"),
    "analyse": "analysis",
    **dict.fromkeys(["ImageError", "LayerError", "MicamError", "ModelLoadError", "NotACNNError", "TargetError"],
                    "errors"),
    "load_image": "images",
    "render_map": "maps",
    **dict.fromkeys(["Explanation", "class_index", "explain"], "methods"),
    "mutual_information": "mi",
    "randomised_copy": "randomise",
    **dict.fromkeys(["RoadResult", "road_impute", "road_scores"], "road"),
    **dict.fromkeys(["PROTOCOLS", "Protocol", "get_protocol"], "protocols"),
    **dict.fromkeys(["Randomisation", "RandomLogit", "Sanity", "random_logit_check", "randomisation_check",
                     "sanity_checks"], "sanity"),
    **dict.fromkeys(["LoadedModel", "ModelCache", "from_module", "load_model"], "models"),
    "Param": "fields",
    "View": "view",
    **dict.fromkeys(["DEFAULT_METHODS", "METHOD_LABELS", "METHODS", "REGISTRY", "Method", "register"], "registry"),
    **dict.fromkeys(["BUNDLED_SPEC", "DEFAULT_SPEC", "DEFAULTS", "FILLS", "SETTINGS", "Setting", "SettingError",
                     "validate", "validate_all"], "settings"),
}

__all__ = ["policy", "__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "policy":
        return importlib.import_module(".policy", __name__)
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

