"""micam_core: MI CAM and the CAM methods it is compared with, with counterfactual checks, for timm models."""

from . import policy
from .counterfactual import CurveResult, Faithfulness, analyse, deletion_insertion
from .errors import ImageError, LayerError, MicamError, ModelLoadError, NotACNNError, TargetError
from .fields import Param
from .images import load_image
from .maps import render_map
from .methods import Explanation, class_index, explain
from .mi import mutual_information
from .models import BUNDLED_SPEC, DEFAULT_SPEC, LoadedModel, ModelCache, from_module, load_model
from .randomise import randomised_copy
from .registry import DEFAULT_METHODS, METHOD_LABELS, METHODS, REGISTRY, Method, register
from .sanity import Randomisation, RandomLogit, Sanity, random_logit_check, randomisation_check, sanity_checks
from .settings import DEFAULTS, FILLS, SETTINGS, Setting, SettingError, validate, validate_all
from .version import __version__

__all__ = [
    "BUNDLED_SPEC", "DEFAULTS", "DEFAULT_METHODS", "DEFAULT_SPEC", "FILLS", "METHODS", "METHOD_LABELS",
    "REGISTRY", "SETTINGS", "policy", "Method", "Param", "register", "Setting", "SettingError", "validate",
    "validate_all",
    "CurveResult", "Explanation", "Faithfulness", "LoadedModel", "ModelCache",
    "ImageError", "LayerError", "MicamError", "ModelLoadError", "NotACNNError", "TargetError",
    "analyse", "class_index", "deletion_insertion", "explain", "from_module", "load_image",
    "load_model", "mutual_information", "render_map", "__version__",
    "Randomisation", "RandomLogit", "Sanity", "random_logit_check", "randomisation_check", "randomised_copy",
    "sanity_checks",
]
