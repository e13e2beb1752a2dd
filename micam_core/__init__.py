"""micam_core: MI CAM, MI-Grad-CAM and Grad-CAM explanations for timm CNNs."""

from .counterfactual import FILLS, CurveResult, Faithfulness, analyse, deletion_insertion
from .errors import ImageError, LayerError, MicamError, ModelLoadError, NotACNNError, TargetError
from .images import load_image
from .methods import METHOD_LABELS, METHODS, Explanation, class_index, explain, render_map
from .mi import mutual_information
from .models import BUNDLED_SPEC, DEFAULT_SPEC, LoadedModel, ModelCache, from_module, load_model

__version__ = "0.1.0"

__all__ = [
    "BUNDLED_SPEC", "DEFAULT_SPEC", "FILLS", "METHODS", "METHOD_LABELS",
    "CurveResult", "Explanation", "Faithfulness", "LoadedModel", "ModelCache",
    "ImageError", "LayerError", "MicamError", "ModelLoadError", "NotACNNError", "TargetError",
    "analyse", "class_index", "deletion_insertion", "explain", "from_module", "load_image",
    "load_model", "mutual_information", "render_map", "__version__",
]
