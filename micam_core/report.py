"""The JSON report of one explanation: enough to reproduce it (model, revision, settings, versions)."""

from __future__ import annotations

import platform
from typing import Any

from .methods import METHOD_LABELS, Explanation
from .models import LoadedModel


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers."""
    import numpy
    import PIL
    import timm
    import torch

    from . import __version__

    return {"micam_core": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "python": platform.python_version()}


def build_report(loaded: LoadedModel, exp: Explanation, top: int = 5,
                 counterfactuals: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready dict: model, layer, target, preprocessing, predictions, per-method facts."""
    report: dict[str, Any] = {
        "model": {"spec": loaded.spec, "revision": loaded.revision,
                  "architecture": type(loaded.model).__name__, "num_classes": len(loaded.class_names)},
        "layer": exp.layer,
        "target": {"index": exp.target, "label": exp.target_label,
                   "probability": float(exp.probs[exp.target])},
        "predictions": [{"index": i, "label": name, "probability": p} for i, name, p in exp.top(top)],
        "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "upsampling": {"micam": exp.upsampling, "migradcam": exp.upsampling, "gradcam": "bilinear"},
        "notes": ["MI CAM is class-agnostic: its map does not depend on the target class."],
        "methods": {},
        "versions": library_versions(),
    }
    for method, weights in exp.weights.items():
        report["methods"][method] = {
            "label": METHOD_LABELS[method],
            "class_specific": method != "micam",
            "channels": int(weights.shape[0]),
            "top_channels": [int(i) for i in weights.argsort()[::-1][:10]],
        }
    for method, facts in (counterfactuals or {}).items():
        report["methods"].setdefault(method, {"label": facts.get("label", method)}).update(facts)
    return report
