"""The ``explain`` API endpoint (gradio_client): every value checked once, before any model work."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from micam_core import BUNDLED_SPEC, DEFAULT_METHODS, DEFAULTS, METHODS, SETTINGS, MicamError
from micam_core.render import overlay
from micam_core.report import build_report
from micam_core.view import checked

from . import views, work
from .handlers import fail

# The endpoint's settings by parameter name ("colormap": the API's name for cmap, kept for old clients).
API_SETTINGS = {"upsampling": "upsampling", "threshold": "threshold", "fill": "fill", "steps": "steps",
                "cmap": "colormap", "opacity": "opacity", "methods": "methods"}
# Output order: the default methods' overlays, predictions, report, then the other methods' overlays
# (clients written for the first three methods keep reading the same positions).
API_OVERLAYS_FIRST = DEFAULT_METHODS
API_OVERLAYS_LAST = tuple(m for m in METHODS if m not in DEFAULT_METHODS)


def api_explain(image: str | None, model: str = BUNDLED_SPEC, layer: str = views.AUTO_LAYER,
                target: str = views.TOP1, upsampling: str = DEFAULTS["upsampling"],
                threshold: float = DEFAULTS["threshold"], fill: str = DEFAULTS["fill"],
                steps: float = DEFAULTS["steps"], colormap: str = DEFAULTS["cmap"],
                opacity: float = DEFAULTS["opacity"], methods: str = ",".join(DEFAULTS["methods"])) -> tuple[Any, ...]:
    settings = {"upsampling": upsampling, "threshold": threshold, "fill": fill, "steps": steps, "cmap": colormap,
                "opacity": opacity, "methods": methods}
    try:
        loaded, exp, faith, view = run(image, model, layer, target, settings)
    except Exception as err:
        raise fail(err, for_page=False) from None
    images: dict[str, Image.Image | None] = {
        m: overlay(exp.crop, exp.maps[m], view.cmap, view.opacity) if m in exp.maps else None for m in METHODS}
    report = build_report(loaded, exp, counterfactuals=faith.to_report(), settings=view.chosen_settings())
    return (*(images[m] for m in API_OVERLAYS_FIRST), views.label_dict(exp.top(5)), report,
            *(images[m] for m in API_OVERLAYS_LAST))


def run(image: Any, model: str, layer: str, target: str, settings: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """Every value checked, then the explanation and its counterfactual analysis: (loaded, exp, faith, view)."""
    view = checked({"model": views.resolve_spec(model, None), "layer": layer, "target": target, **settings},
                   required=True)
    if image is None or (isinstance(image, str | bytes) and not image):
        raise MicamError("No image given.")
    loaded = work.load(view.model)
    exp = work.explain_view(loaded, image, view)
    faith = work.analyse_view(loaded, exp, view)
    return loaded, exp, faith, view


IMAGE_FILE = "the image file (JPEG, PNG, WebP, ...; at most 20 MB and 40 megapixels)."


def args_doc(image: str = IMAGE_FILE, display: bool = True) -> str:
    """The ``Args:`` lines of an endpoint's docstring (Gradio's API page, the MCP schema), from the records."""
    s = SETTINGS
    lines = [
        f"image: {image}",
        f"model: a timm model on the Hugging Face Hub (e.g. timm/resnet50.a1_in1k) or {BUNDLED_SPEC}.",
        f'layer: the layer to explain, or "{views.AUTO_LAYER}" for the model\'s default layer.',
        f'target: the class to explain: an index, a class name, or "{views.TOP1}" for the predicted class.',
        f'upsampling: {s["upsampling"].label}: {s["upsampling"].describe()} ({s["upsampling"].help}).',
        f'threshold: {s["threshold"].label}: {s["threshold"].describe()}.',
        f'fill: {s["fill"].label}: {s["fill"].describe()}.',
        f'steps: {s["steps"].label}: {s["steps"].describe()}.',
        *([f'colormap: the overlays\' colour map: {s["cmap"].describe()}.',
           f'opacity: the overlays\' map opacity: {s["opacity"].describe()}.'] if display else []),
        f"methods: comma-separated method ids, any of: {', '.join(METHODS)}.",
    ]
    return "\n".join("        " + line for line in lines)


def _doc() -> str:
    """The endpoint's docstring (Gradio's API page and the MCP tool description), from the records."""
    return f"""Explain one image with MI CAM and the chosen CAM methods, with counterfactual faithfulness metrics.

    Args:
{args_doc()}

    Returns:
        The overlays of {", ".join(API_OVERLAYS_FIRST)} (empty when not chosen), the top-5 predictions, the JSON
        report (model, revision, layer, target, predictions, per-method metrics and curves), then the overlays
        of {", ".join(API_OVERLAYS_LAST)} (empty when not chosen).
    """


api_explain.__doc__ = _doc()
# Gradio's MCP server lists every API endpoint as a tool named after its function; this one answers with images
# and a dict, which MCP clients receive as a Python repr. Agents get micam_app.agent.explain (JSON) instead.
api_explain._mcp_type = "api-only"  # not "tool": gradio.mcp's list_tools skips it (tests/test_mcp.py checks)


def api_components() -> tuple[list[gr.components.Component], list[gr.components.Component]]:
    """Hidden inputs and outputs of the endpoint (inputs are free-form so bad values reach our checks)."""
    inputs = [
        gr.File(type="filepath", label="image"),  # a File, so a non-image reaches load_image's check
        gr.Textbox(value=BUNDLED_SPEC, label="model"),
        gr.Textbox(value=views.AUTO_LAYER, label="layer"),
        gr.Textbox(value=views.TOP1, label="target"),
        *(gr.Textbox(value=_text(DEFAULTS[name]), label=label) for name, label in API_SETTINGS.items()),
    ]
    outputs = [gr.Image(type="pil", format="png", label=m) for m in API_OVERLAYS_FIRST]
    outputs += [gr.Label(num_top_classes=5, label="predictions"), gr.JSON(label="report")]
    outputs += [gr.Image(type="pil", format="png", label=m) for m in API_OVERLAYS_LAST]
    return inputs, outputs


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)
