"""UI-independent glue for front ends (the Gradio app): specs, choices, tables and download files.

Nothing here imports a UI toolkit; everything takes and returns plain Python, numpy and PIL.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .counterfactual import Faithfulness, MethodResult
from .images import MAX_FILE_BYTES, MAX_PIXELS
from .methods import METHOD_LABELS, METHODS, Explanation
from .models import BUNDLED_SPEC, LoadedModel, ModelCache
from .render import overlay
from .report import build_report

log = logging.getLogger(__name__)

# (shown name, spec) of the model picker; the bundled model works offline and is the default.
POPULAR_MODELS: list[tuple[str, str]] = [
    ("EfficientNet-Lite0 (bundled, offline)", BUNDLED_SPEC),
    ("ResNet-50 (timm/resnet50.a1_in1k)", "timm/resnet50.a1_in1k"),
    ("ConvNeXt-Tiny (timm/convnext_tiny.fb_in22k_ft_in1k)", "timm/convnext_tiny.fb_in22k_ft_in1k"),
    ("EfficientNet-B0 (timm/efficientnet_b0.ra_in1k)", "timm/efficientnet_b0.ra_in1k"),
    ("MobileNetV3-Large (timm/mobilenetv3_large_100.ra_in1k)", "timm/mobilenetv3_large_100.ra_in1k"),
    ("RegNetY-1.6GF (timm/regnety_016.tv2_in1k)", "timm/regnety_016.tv2_in1k"),
    ("VGG-16 (timm/vgg16.tv_in1k)", "timm/vgg16.tv_in1k"),
    ("DenseNet-121 (timm/densenet121.tv_in1k)", "timm/densenet121.tv_in1k"),
    ("ViT-B/16 (timm/vit_base_patch16_224.augreg2_in21k_ft_in1k)", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    ("DeiT-S (timm/deit_small_patch16_224.fb_in1k)", "timm/deit_small_patch16_224.fb_in1k"),
    ("Swin-T (timm/swin_tiny_patch4_window7_224.ms_in1k)", "timm/swin_tiny_patch4_window7_224.ms_in1k"),
    ("EVA02-Tiny (timm/eva02_tiny_patch14_336.mim_in22k_ft_in1k)", "timm/eva02_tiny_patch14_336.mim_in22k_ft_in1k"),
    ("MaxViT-T (timm/maxvit_tiny_tf_224.in1k)", "timm/maxvit_tiny_tf_224.in1k"),
]
AUTO_LAYER = "auto"
TOP1 = "top-1"
TOP1_LABEL = "predicted class (top-1)"
METRIC_HEADERS = [
    "Method", "Average Drop % (lower better)", "Increase in Confidence", "Paper's Drop % (lower better)",
    "Paper's Increase % (higher better)", "Deletion AUC (lower better)", "Insertion AUC (higher better)",
    "Prediction flips when removed",
]
DOWNLOAD_MAX_AGE_S = 3600.0


def local_models_allowed() -> bool:
    """Visitors may load ``local-dir:`` specs only where ``MICAM_ALLOW_LOCAL_MODELS=1``."""
    return os.environ.get("MICAM_ALLOW_LOCAL_MODELS", "0").strip() == "1"


def resolve_spec(choice: str | None, custom: str | None) -> str:
    """The spec to load: the free-text field when filled, else the picker's choice, else the bundled model."""
    custom = (custom or "").strip()
    if custom:
        return custom
    return (choice or "").strip() or BUNDLED_SPEC


def load_timeout() -> float:
    """Seconds a visitor's model load may take (``MICAM_LOAD_TIMEOUT``, default 180)."""
    try:
        return float(os.environ.get("MICAM_LOAD_TIMEOUT", "180"))
    except ValueError:
        return 180.0


def max_model_bytes() -> int:
    """Largest model a visitor may load (``MICAM_MAX_MODEL_MB``, default 1024 MB of weights)."""
    try:
        return int(float(os.environ.get("MICAM_MAX_MODEL_MB", "1024")) * 2**20)
    except ValueError:
        return 1024 * 2**20


def limits_note() -> str:
    """One sentence stating the limits a visitor meets."""
    local = "allowed" if local_models_allowed() else "not accepted from visitors"
    return (f"Limits: images up to {MAX_FILE_BYTES // 2**20} MB and {MAX_PIXELS // 10**6} megapixels "
            f"(larger ones are refused, not shrunk); models up to {max_model_bytes() // 2**20} MB of weights, "
            f"loaded as safetensors or weights-only, never running repository code; `local-dir:` models {local}.")


def get_model(cache: ModelCache, spec: str) -> LoadedModel:
    """A model from ``cache``, honouring the local-folder switch, the size limit and the load deadline."""
    return cache.get(spec, allow_local=local_models_allowed(), timeout=load_timeout(), max_bytes=max_model_bytes())


def parse_layer(value: str | None) -> str | None:
    """``None`` (the model's default layer) for empty or ``auto``, else the layer name."""
    value = (value or "").strip()
    return None if value.lower() in ("", AUTO_LAYER) else value


def parse_target(value: str | int | float | None) -> int | str | None:
    """``None`` (top-1) for empty, ``top-1`` or the picker's top-1 label; else an index or class name."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()
    if text.lower() in ("", TOP1, TOP1_LABEL, "top1", "none", "auto", "predicted"):
        return None
    return text


def layer_choices(loaded: LoadedModel) -> list[tuple[str, str]]:
    """``(shown, value)`` pairs for a layer picker: ``auto`` first, then every candidate, deepest first."""
    auto = f"auto: {loaded.default_layer}"
    return [(auto, AUTO_LAYER)] + [(info.describe(), info.name) for info in loaded.layers]


def target_choices(loaded: LoadedModel) -> list[tuple[str, str]]:
    """``(shown, value)`` pairs for a class picker: top-1 first, then ``index: name`` per class."""
    return [(TOP1_LABEL, TOP1)] + [(f"{i}: {name}", str(i)) for i, name in enumerate(loaded.class_names)]


def describe_model(loaded: LoadedModel) -> str:
    """One line about a loaded model (Markdown)."""
    rev = loaded.revision or ""
    shown = rev[:12] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else rev  # short commit hash
    revision = f", revision `{shown}`" if rev else ""
    return (f"`{loaded.spec}`: {type(loaded.model).__name__}, {len(loaded.class_names)} classes, "
            f"{loaded.num_bytes / 2**20:.0f} MB, input {loaded.input_size[1]}x{loaded.input_size[0]}, "
            f"default layer `{loaded.default_layer}`, on {loaded.device.type.upper()}{revision}")


def label_dict(top: list[tuple[int, str, float]]) -> dict[str, float]:
    """Top-k predictions as ``{label: probability}`` (labels made unique with their index when needed)."""
    out: dict[str, float] = {}
    for index, label, prob in top:
        key = label if label not in out else f"{label} ({index})"
        out[key] = float(prob)
    return out


def overlays(exp: Explanation, cmap: str = "jet", alpha: float = 0.5) -> dict[str, Image.Image]:
    """One overlay per method on the model-input image, all at the crop's size."""
    return {m: overlay(exp.crop, exp.maps[m], cmap, alpha) for m in METHODS if m in exp.maps}


def upsampling_note(exp: Explanation) -> str:
    """A sentence saying how the maps on screen were upsampled."""
    h, w = next(iter(exp.lowres.values())).shape
    size = f"{exp.crop.size[0]}x{exp.crop.size[1]}"
    if exp.upsampling == "paper":
        how = (f"MI CAM and MI-Grad-CAM are shown the paper's way: the {h}x{w} map is upsampled to {size} "
               "by nearest neighbour, then smoothed with a Gaussian (kernel 11, sigma 7 at 224 px)")
    else:
        how = f"MI CAM and MI-Grad-CAM are shown with bilinear upsampling of the {h}x{w} map to {size}"
    return (f"{how}; Grad-CAM is always bilinear. Layer `{exp.layer}`, target class {exp.target} "
            f"(*{exp.target_label}*). The MI weights are always computed as in the paper.")


def flip_markdown(result: MethodResult, top_original: list[tuple[int, str, float]]) -> str:
    """A short verdict on whether removing the salient region changes the top-1 class."""
    before = top_original[0][1] if top_original else "?"
    after = result.top_remove[0][1] if result.top_remove else "?"
    area = f"{100 * result.region_fraction:.0f}% of the image kept"
    if result.flipped:
        return f"**Flipped** when the region is removed: *{before}* becomes *{after}* ({area})."
    return f"**Not flipped**: *{before}* stays top-1 when the region is removed ({area})."


def metrics_rows(faith: Faithfulness) -> list[list[Any]]:
    """Rows of the metrics table (see :data:`METRIC_HEADERS`), methods first, then the baselines."""
    rows = []
    for result in faith.results.values():
        rows.append([
            result.label, round(result.average_drop, 2), "yes" if result.increase else "no",
            round(result.paper_drop, 2), round(result.paper_increase, 2),
            round(result.curves.deletion_auc, 4), round(result.curves.insertion_auc, 4),
            "yes" if result.flipped else "no",
        ])
    return rows


def full_report(loaded: LoadedModel, exp: Explanation, faith: Faithfulness | None = None,
                **settings: Any) -> dict[str, Any]:
    """The JSON report (model, layer, target, predictions, per-method facts and counterfactuals)."""
    report = build_report(loaded, exp, counterfactuals=faith.to_report() if faith else None)
    if settings:
        report["display"] = settings
    return report


def new_download_dir(base: str | Path | None = None) -> Path:
    """A fresh per-request folder under ``base`` (default: the temp dir); prunes folders older than an hour."""
    root = Path(base) if base else Path(tempfile.gettempdir()) / "micam_downloads"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - DOWNLOAD_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="req-", dir=root))


def write_downloads(exp: Explanation, report: dict[str, Any], images: dict[str, Image.Image],
                    folder: str | Path) -> list[str]:
    """Write overlay PNGs (one per method and a side-by-side strip), raw maps (.npy) and the JSON manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for method, image in images.items():
        path = folder / f"overlay_{method}.png"
        image.save(path)
        paths.append(path)
    if images:
        strip = Image.new("RGB", (sum(im.width for im in images.values()), max(im.height for im in images.values())))
        x = 0
        for image in images.values():
            strip.paste(image, (x, 0))
            x += image.width
        strip.save(folder / "overlays.png")
        paths.insert(0, folder / "overlays.png")
    for method, saliency in exp.maps.items():
        path = folder / f"map_{method}.npy"
        np.save(path, np.asarray(saliency, dtype=np.float32))
        paths.append(path)
    manifest = {**report, "files": {
        "overlays": [p.name for p in paths if p.suffix == ".png"],
        "maps": {m: f"map_{m}.npy" for m in exp.maps},
        "map_format": "float32 H x W in [0, 1] over the model-input crop",
        "methods": {m: METHOD_LABELS[m] for m in exp.maps},
    }}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=_json_default))
    paths.append(path)
    return [str(p) for p in paths]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
