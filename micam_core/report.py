"""The JSON report of one explanation: enough to reproduce it (model, revision, settings, versions)."""

from __future__ import annotations

import platform
from typing import Any

import numpy
import PIL
import timm
import torch

from .methods import Explanation
from .models import LoadedModel
from .registry import REGISTRY, display_mode
from .version import __version__

SCHEMA_VERSION = 2  # 2: method registry (any subset of methods), "schema_version", per-method facts


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers."""
    return {"micam_core": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "pillow": PIL.__version__, "python": platform.python_version()}


def method_facts(exp: Explanation, method: str) -> dict[str, Any]:
    """What the report says about one method of ``exp``: its record and its strongest channels."""
    record = REGISTRY[method]
    facts: dict[str, Any] = {"label": record.label, "class_specific": record.class_specific,
                             "upsampling": display_mode(method, exp.upsampling), "formula": record.formula,
                             "reference": record.reference}
    if record.note:
        facts["note"] = record.note
    weights = exp.weights.get(method)
    if weights is not None:
        facts["channels"] = int(weights.shape[0])
        facts["top_channels"] = [int(i) for i in weights.argsort()[::-1][:10]]
    if not record.single_pass:
        facts["extra_forward_passes"] = exp.extra_forward_passes
    return facts


def build_report(loaded: LoadedModel, exp: Explanation, top: int = 5,
                 counterfactuals: dict[str, Any] | None = None,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready dict: model, layer, target, preprocessing, predictions, per-method facts."""
    agnostic = [REGISTRY[m].label for m in exp.maps if not REGISTRY[m].class_specific]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": {"spec": loaded.spec, "revision": loaded.revision,
                  "architecture": type(loaded.model).__name__, "num_classes": len(loaded.class_names)},
        "layer": exp.layer,
        "target": {"index": exp.target, "label": exp.target_label,
                   "probability": float(exp.probs[exp.target])},
        "predictions": [{"index": i, "label": name, "probability": p} for i, name, p in exp.top(top)],
        "preprocessing": {k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()},
        "upsampling": {m: display_mode(m, exp.upsampling) for m in exp.maps},
        "notes": [f"{name} is class-agnostic: its map does not depend on the target class." for name in agnostic],
        "methods": {m: method_facts(exp, m) for m in exp.maps},
        "versions": library_versions(),
    }
    if settings:
        report["settings"] = dict(settings)
    for method, facts in (counterfactuals or {}).items():
        report["methods"].setdefault(method, {"label": facts.get("label", method)}).update(facts)
    return report
