"""The ``explain`` API endpoint (gradio_client): every value checked once, before any model work."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from micam_core import BUNDLED_SPEC, DEFAULT_METHODS, DEFAULTS, METHODS, MicamError, validate
from micam_core.render import overlay
from micam_core.report import build_report

from . import views, work
from .handlers import fail

# Output order: the default methods' overlays, predictions, report, then the other methods' overlays
# (clients written for the first three methods keep reading the same positions).
API_OVERLAYS_FIRST = DEFAULT_METHODS
API_OVERLAYS_LAST = tuple(m for m in METHODS if m not in DEFAULT_METHODS)


def api_explain(image: str | None, model: str = BUNDLED_SPEC, layer: str = views.AUTO_LAYER,
                target: str = views.TOP1, upsampling: str = "paper", threshold: float = 0.5, fill: str = "black",
                steps: float = DEFAULTS["steps"], colormap: str = "jet", opacity: float = 0.5,
                methods: str = ",".join(DEFAULT_METHODS)) -> tuple[Any, ...]:
    """Explain one image with MI CAM and the chosen CAM methods, with counterfactual faithfulness metrics.

    Args:
        image: the image file (JPEG, PNG, WebP, ...; at most 20 MB and 40 megapixels).
        model: a timm model on the Hugging Face Hub (e.g. timm/resnet50.a1_in1k) or bundled:efficientnet_lite0.
        layer: the layer to explain, or "auto" for the model's default layer.
        target: the class to explain: an index, a class name, or "top-1" for the predicted class.
        upsampling: how MI maps are shown: "paper" (nearest + Gaussian blur) or "bilinear".
        threshold: the counterfactual region is where a map is at least this value (0 to 1).
        fill: what replaces masked pixels: "black", "blur" or "mean".
        steps: deletion/insertion steps (2 to 64).
        colormap: the overlays' colour map (jet, turbo, viridis, inferno, magma, gray).
        opacity: the overlays' map opacity (0 to 1).
        methods: comma-separated method ids (micam, gradcam, migradcam, gradcampp, xgradcam, layercam,
            hirescam, eigencam, scorecam).

    Returns:
        The overlays of micam, gradcam and migradcam (empty when not chosen), the top-5 predictions, the JSON
        report (model, revision, layer, target, predictions, per-method metrics and curves), then the overlays
        of gradcampp, xgradcam, layercam, hirescam, eigencam and scorecam (empty when not chosen).
    """
    try:
        loaded, exp, faith, values = run(image, model, layer, target, upsampling, threshold, fill, steps, colormap,
                                         opacity, methods)
    except Exception as err:
        raise fail(err, for_page=False) from None
    images: dict[str, Image.Image | None] = {
        m: overlay(exp.crop, exp.maps[m], values["cmap"], values["opacity"]) if m in exp.maps else None
        for m in METHODS}
    report = build_report(loaded, exp, counterfactuals=faith.to_report(), settings=values)
    return (*(images[m] for m in API_OVERLAYS_FIRST), views.label_dict(exp.top(5)), report,
            *(images[m] for m in API_OVERLAYS_LAST))


def run(image: Any, model: str, layer: str, target: str, upsampling: str, threshold: Any, fill: str, steps: Any,
        colormap: str, opacity: Any, methods: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Settings checked, then the explanation and its counterfactual analysis: (loaded, exp, faith, settings)."""
    values = checked_settings(threshold=threshold, fill=fill, steps=steps, cmap=colormap, opacity=opacity,
                              upsampling=upsampling, methods=methods)
    if image is None or (isinstance(image, str) and not image):
        raise MicamError("No image given.")
    loaded = work.load(views.resolve_spec(model, None))
    layer_name = views.parse_layer(layer)
    work.check_cost(loaded, layer_name, values["methods"])
    exp = work.gpu_explain(loaded.spec, image, layer_name, views.parse_target(target), values["upsampling"],
                           values["methods"])
    faith = work.gpu_analyse(loaded.spec, exp, values["threshold"], values["fill"], values["steps"])
    return loaded, exp, faith, values


# Gradio's MCP server lists every API endpoint as a tool named after its function; this one answers with images
# and a dict, which MCP clients receive as a Python repr. Agents get micam_app.agent.explain (JSON) instead.
api_explain._mcp_type = "api-only"  # not "tool": gradio.mcp's list_tools skips it (tests/test_mcp.py checks)


def checked_settings(**values: Any) -> dict[str, Any]:
    """Every setting validated (a sentence naming the setting for the first bad one); none may be missing."""
    return {name: validate(name, value, missing_ok=False) for name, value in values.items()}


def api_components() -> tuple[list[gr.components.Component], list[gr.components.Component]]:
    """Hidden inputs and outputs of the endpoint (inputs are free-form so bad values reach our checks)."""
    inputs = [
        gr.File(type="filepath", label="image"),  # a File, so a non-image reaches load_image's check
        gr.Textbox(value=BUNDLED_SPEC, label="model"),
        gr.Textbox(value=views.AUTO_LAYER, label="layer"),
        gr.Textbox(value=views.TOP1, label="target"),
        gr.Textbox(value="paper", label="upsampling"),
        gr.Textbox(value="0.5", label="threshold"),
        gr.Textbox(value="black", label="fill"),
        gr.Textbox(value=str(DEFAULTS["steps"]), label="steps"),
        gr.Textbox(value="jet", label="colormap"),
        gr.Textbox(value="0.5", label="opacity"),
        gr.Textbox(value=",".join(DEFAULT_METHODS), label="methods"),
    ]
    outputs = [gr.Image(type="pil", format="png", label=m) for m in API_OVERLAYS_FIRST]
    outputs += [gr.Label(num_top_classes=5, label="predictions"), gr.JSON(label="report")]
    outputs += [gr.Image(type="pil", format="png", label=m) for m in API_OVERLAYS_LAST]
    return inputs, outputs
