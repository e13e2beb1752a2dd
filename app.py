"""MI CAM Explorer: a Gradio app for MI CAM, Grad-CAM and MI-Grad-CAM with counterfactual checks.

UI only: widgets, layout, wiring and error display. Every computation goes through ``micam_core``
(``micam_core.service`` holds the UI-independent glue). ``python app.py`` starts the server.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")  # both before huggingface_hub is imported

import base64
import io
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from micam_core import (
    BUNDLED_SPEC,
    FILLS,
    METHOD_LABELS,
    METHODS,
    Explanation,
    Faithfulness,
    LoadedModel,
    MicamError,
    ModelCache,
    analyse,
    explain,
)
from micam_core import service as svc
from micam_core.models import normalize_spec
from micam_core.render import COLORMAPS, colorbar, curves_figure

log = logging.getLogger("micam_app")

ROOT = Path(__file__).resolve().parent
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.jpg"))
PAPER_URL = "https://arxiv.org/abs/2507.09092"
CODE_URL = os.environ.get("MICAM_CODE_URL", "https://github.com/ramsiyer1/MI-CAM")  # the authors' code
CACHE = ModelCache(max_models=3)
DEFAULT_STEPS = 32
MIN_STEPS, MAX_STEPS = 2, 64
OVERLAY_TITLES = {"micam": "MI CAM (class-agnostic)", "gradcam": "Grad-CAM", "migradcam": "MI-Grad-CAM"}
CLASS_NOTE = ("**MI CAM is class-agnostic**: its map is the same whatever the target class; "
              "Grad-CAM and MI-Grad-CAM explain the target class.")


# --- GPU: on a ZeroGPU Space the heavy work runs inside spaces.GPU; elsewhere the decorator is a no-op.
def _no_gpu(fn: Callable | None = None, **_kwargs: Any) -> Callable:
    return fn if fn is not None else (lambda f: f)


try:
    import spaces  # type: ignore[import-not-found]

    gpu = spaces.GPU
except Exception:  # not on a Space (or `spaces` unusable here): run on whatever torch finds
    gpu = _no_gpu


def load(spec: str) -> LoadedModel:
    """The model for ``spec`` from the module-level cache (loaded in the main process)."""
    return svc.get_model(CACHE, spec)


@gpu(duration=60)
def gpu_explain(spec: str, image: Any, layer: str | None, target: int | str | None, upsampling: str) -> Explanation:
    """Forward + backward pass: the three maps (the model is already in the cache)."""
    return explain(load(spec), image, target=target, layer=layer, upsampling=upsampling)


@gpu(duration=120)
def gpu_analyse(spec: str, exp: Explanation, threshold: float, fill: str, steps: int) -> Faithfulness:
    """Counterfactual keep/remove predictions and deletion/insertion curves for every map."""
    return analyse(load(spec), exp, threshold=threshold, fill=fill, steps=int(steps))


# --- Small view helpers -------------------------------------------------------------------------
def alert(message: str) -> dict:
    """Show ``message`` in the page's alert area (and as a toast)."""
    gr.Warning(message)
    return gr.update(value=f"**Could not finish:** {message}", visible=True)


def no_alert() -> dict:
    return gr.update(value="", visible=False)


def colorbar_html(cmap: str) -> str:
    buf = io.BytesIO()
    colorbar(cmap, width=512, height=14).save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode()
    return (f'<div class="cbar"><span>low</span><img alt="colour bar ({cmap})" src="data:image/png;base64,{data}">'
            "<span>high</span></div>")


def display_note(exp: Explanation) -> str:
    """The sentence under the maps: class-agnosticism and which upsampling is shown."""
    return f"{CLASS_NOTE} {svc.upsampling_note(exp)}"


def user_message(err: Exception) -> str:
    """A readable sentence for any failure (MicamError messages are already sentences)."""
    if isinstance(err, MicamError):
        return str(err)
    log.exception("unexpected failure")
    return f"Unexpected error ({type(err).__name__}: {err}). Please try again or choose another model."


def picker_updates(loaded: LoadedModel, layer: str | None = None, target: str | None = None) -> tuple[dict, dict]:
    """Layer and class pickers for ``loaded``, keeping the current values where they still apply."""
    layers = svc.layer_choices(loaded)
    targets = svc.target_choices(loaded)
    layer = layer if layer in {v for _, v in layers} else svc.AUTO_LAYER
    target = target if target in {v for _, v in targets} else svc.TOP1
    return gr.update(choices=layers, value=layer), gr.update(choices=targets, value=target)


# --- UI event handlers --------------------------------------------------------------------------
def on_model(choice: str, custom: str, layer: str, target: str, progress: gr.Progress = gr.Progress(track_tqdm=True)):
    """Load the chosen model; fill the layer and class pickers. Outputs: info, alert, layer, target, shown spec."""
    spec = svc.resolve_spec(choice, custom)
    progress(0.05, desc=f"Loading {spec} ...")
    try:
        loaded = load(spec)
    except Exception as err:
        message = user_message(err)
        return (gr.update(value=f"**Model not loaded** (`{spec}`): {message}"), alert(message),
                gr.update(choices=[("auto", svc.AUTO_LAYER)], value=svc.AUTO_LAYER),
                gr.update(choices=[(svc.TOP1_LABEL, svc.TOP1)], value=svc.TOP1), None)
    layer_dd, target_dd = picker_updates(loaded, layer, target)
    return svc.describe_model(loaded), no_alert(), layer_dd, target_dd, loaded.spec


def on_explain(image: str | None, choice: str, custom: str, layer: str, target: str, upsampling: str,
               cmap: str, alpha: float, shown_spec: str | None, session: dict | None,
               progress: gr.Progress = gr.Progress(track_tqdm=True)):
    """Explain button: load the model, run one explanation, show the maps (counterfactuals follow)."""
    skip = gr.skip()
    fail = (skip,) * 6
    spec = svc.resolve_spec(choice, custom)
    try:
        if image is None:
            raise MicamError("Add an image first: upload one, use the webcam or click an example.")
        progress(0.05, desc=f"Loading {spec} ...")
        loaded = load(spec)
        same_model = shown_spec == loaded.spec
        layer_name = svc.parse_layer(layer) if same_model else None
        target_value = svc.parse_target(target) if same_model else None
        progress(0.6, desc="Computing MI CAM, Grad-CAM and MI-Grad-CAM ...")
        exp = gpu_explain(loaded.spec, image, layer_name, target_value, upsampling)
    except Exception as err:
        message = user_message(err)
        return (*fail, alert(message), skip, skip, skip, skip, {**(session or {}), "fresh": False})
    images = svc.overlays(exp, cmap, alpha)
    layer_dd, target_dd = picker_updates(loaded, layer if same_model else None, target if same_model else None)
    session = {"spec": loaded.spec, "exp": exp, "faith": None, "fresh": True}
    return (images["micam"], images["gradcam"], images["migradcam"], display_note(exp),
            svc.label_dict(exp.top(5)), colorbar_html(cmap), no_alert(), svc.describe_model(loaded),
            layer_dd, target_dd, loaded.spec, session)


def on_counterfactuals(session: dict | None, threshold: float, fill: str, steps: int, cmap: str, alpha: float,
                       progress: gr.Progress = gr.Progress()):
    """Counterfactual panel, metrics, curves and downloads for the session's current explanation."""
    n_out = 5 * len(METHODS) + 5
    if not session or session.get("exp") is None:
        return (gr.skip(),) * n_out
    if not session.get("fresh", True):  # the explanation before this failed: keep the old panel
        return (*(gr.skip(),) * (n_out - 1), {**session, "fresh": True})
    progress(0.1, desc="Counterfactuals: masking and re-classifying ...")
    try:
        loaded = load(session["spec"])
        exp = session["exp"]
        faith = gpu_analyse(loaded.spec, exp, float(threshold), fill, int(steps))
        progress(0.9, desc="Drawing the curves ...")
        figure = curves_figure(faith.curves(), title=f"Target: {faith.target_label} (fill: {fill}, {steps} steps)")
        files = downloads(loaded, exp, faith, cmap, alpha)
    except Exception as err:
        message = user_message(err)
        return (*(gr.skip(),) * (n_out - 2), alert(message), gr.skip())
    panel: list[Any] = []
    for method in METHODS:
        result = faith.results[method]
        panel += [result.keep_image, result.remove_image, svc.label_dict(result.top_keep),
                  svc.label_dict(result.top_remove), svc.flip_markdown(result, faith.top_original)]
    return (*panel, svc.metrics_rows(faith), figure, files, no_alert(), {**session, "faith": faith})


def on_restyle(session: dict | None, cmap: str, alpha: float):
    """Opacity or colour map changed: redraw the overlays from the stored maps (no model call)."""
    if not session or session.get("exp") is None:
        return gr.skip(), gr.skip(), gr.skip(), colorbar_html(cmap), gr.skip()
    exp = session["exp"]
    images = svc.overlays(exp, cmap, alpha)
    files = downloads(load(session["spec"]), exp, session.get("faith"), cmap, alpha, images)
    return images["micam"], images["gradcam"], images["migradcam"], colorbar_html(cmap), files


def on_upsampling(session: dict | None, upsampling: str, cmap: str, alpha: float):
    """Display upsampling changed: re-derive the maps from the stored low-resolution maps (no forward pass)."""
    if not session or session.get("exp") is None:
        return (gr.skip(),) * 5
    exp = session["exp"].with_upsampling(upsampling)
    images = svc.overlays(exp, cmap, alpha)
    session = {**session, "exp": exp, "faith": None, "fresh": True}
    return images["micam"], images["gradcam"], images["migradcam"], display_note(exp), session


def downloads(loaded: LoadedModel, exp: Explanation, faith: Faithfulness | None, cmap: str, alpha: float,
              images: dict | None = None) -> list[str]:
    """Overlay PNGs, raw maps and the manifest in a fresh per-request folder."""
    report = svc.full_report(loaded, exp, faith, colormap=cmap, opacity=alpha)
    images = images or svc.overlays(exp, cmap, alpha)
    return svc.write_downloads(exp, report, images, svc.new_download_dir())


# --- API endpoint -------------------------------------------------------------------------------
def api_explain(image: str | None, model: str = BUNDLED_SPEC, layer: str = svc.AUTO_LAYER, target: str = svc.TOP1,
                upsampling: str = "paper", threshold: float = 0.5, fill: str = "black", steps: float = DEFAULT_STEPS,
                colormap: str = "jet", opacity: float = 0.5):
    """Explain one image: three overlays, the top-5 predictions and the JSON report (with counterfactuals)."""
    try:
        if not image:
            raise MicamError("No image given.")
        if upsampling not in ("paper", "bilinear"):
            raise MicamError(f"upsampling must be 'paper' or 'bilinear', got '{upsampling}'.")
        if fill not in FILLS:
            raise MicamError(f"fill must be one of {', '.join(FILLS)}, got '{fill}'.")
        if colormap not in COLORMAPS:
            raise MicamError(f"colormap must be one of {', '.join(COLORMAPS)}, got '{colormap}'.")
        steps = int(steps or DEFAULT_STEPS)
        if not MIN_STEPS <= steps <= MAX_STEPS:  # each step costs 10 forward passes: bound the work per request
            raise MicamError(f"steps must be between {MIN_STEPS} and {MAX_STEPS}, got {steps}.")
        loaded = load((model or "").strip() or BUNDLED_SPEC)
        exp = gpu_explain(loaded.spec, image, svc.parse_layer(layer), svc.parse_target(target), upsampling)
        faith = gpu_analyse(loaded.spec, exp, float(threshold), fill, steps)
    except MicamError as err:
        raise gr.Error(str(err)) from None
    except Exception as err:
        raise gr.Error(user_message(err)) from None
    images = svc.overlays(exp, colormap, opacity)
    report = svc.full_report(loaded, exp, faith)
    return images["micam"], images["gradcam"], images["migradcam"], svc.label_dict(exp.top(5)), report


# --- Layout -------------------------------------------------------------------------------------
CSS = """
#header h1 {margin-bottom: 0.2rem;}
#header p {margin-top: 0; opacity: 0.85;}
.cbar {display: flex; align-items: center; gap: 0.5rem; font-size: 0.85rem; opacity: 0.85; max-width: 640px;
       margin: 0 auto;}
.cbar img {flex: 1; height: 14px; min-width: 0; border-radius: 3px;}
#alert {border: 1px solid #e4a11b; background: rgba(228, 161, 27, 0.12); border-radius: 8px; padding: 0.6rem 0.9rem;}
.method-title h3 {margin: 0.2rem 0;}
.flip {min-height: 3.2em;}
.note {font-size: 0.9rem; opacity: 0.85;}
#explain-btn {min-height: 48px; font-size: 1.05rem;}
footer {display: none !important;}
"""

HEADER = f"""
# MI CAM Explorer
Which pixels made a CNN decide? **MI CAM** weighs each feature map by its *mutual information* with the
image; compare it with **Grad-CAM** and **MI-Grad-CAM**, then test the explanations with counterfactuals:
keep or remove the highlighted region and see whether the prediction changes.
[Paper (arXiv:2507.09092)]({PAPER_URL}){f" · [Authors' code]({CODE_URL})" if CODE_URL else ""}
"""

BIBTEX = """@article{iyer2025micam,
  title   = {{MI CAM}: Mutual Information Weighted Activation Mapping for Causal Visual
             Explanations of Convolutional Neural Networks},
  author  = {Iyer, Ram S and others},
  journal = {arXiv preprint arXiv:2507.09092},
  year    = {2025},
  url     = {https://arxiv.org/abs/2507.09092}
}"""

HOW_IT_WORKS = f"""
**MI CAM** takes the feature maps $A_k$ of a convolutional layer, weights each one by the mutual information
$w_k = I(X; A_k)$ between the (grey-scale) input image and that map, and shows
$\\mathrm{{ReLU}}(\\sum_k w_k A_k)$ upsampled to the image. The weights use no gradients and no class score, so
the MI CAM map is **class-agnostic**; Grad-CAM weights maps by the gradient of the target class score, and
MI-Grad-CAM multiplies the gradient of the target probability by each map's share of the mutual information.

**Transformers and other token models** (ViT, DeiT, EVA, Swin, MaxViT, Mixer, ...) are explained the same way
once a layer's output is laid out as a $K \\times h \\times w$ map: the class, distillation and register tokens are
dropped and the patch tokens are put back on the patch grid (channels-last grids are transposed). A *channel* is
then one embedding dimension over the patch grid; its gradients are read on the same grid. For ViTs that classify
from the class token the default layer is the last block's `norm1`, since the last block's patch tokens get no
gradient at all; other models default to their last stage or block.

**Counterfactuals.** The region where a map is at least the threshold is *kept* (everything else is filled) or
*removed* (filled); a good explanation keeps the prediction in the first case and flips or weakens it in the
second. *Average Drop* and *Increase in Confidence* follow Chattopadhay et al. (Grad-CAM++), *Drop %* and
*Increase %* are the MI CAM paper's variants on the thresholded keep image, and the deletion/insertion AUCs follow
Petsiuk et al. (RISE). A random map and a centred Gaussian are shown as baselines.

**Links.** Paper: [{PAPER_URL}]({PAPER_URL}) ·
The authors' code: [{CODE_URL}]({CODE_URL}) · This tool's code: the `micam_core` package and `app.py` in this
Space's files (MI CAM, Grad-CAM and MI-Grad-CAM from one forward and one backward pass; Apache-2.0).

**Example photos**: from scikit-image's data folder (CC0 / public domain; see `examples/LICENSES.md`):
Chelsea the cat (Stefan van der Walt, CC0), coffee (Rachel Michetti, CC0), astronaut Eileen Collins (NASA,
public domain), Falcon 9 / DSCOVR launch (SpaceX, public domain).

**How to cite**
```bibtex
{BIBTEX}
```
"""


def build_demo() -> gr.Blocks:
    """The Blocks app (not launched)."""
    with gr.Blocks(title="MI CAM Explorer", delete_cache=(3600, 7200)) as demo:
        # {"spec", "exp", "faith", "fresh"}: this visitor's last explanation (about 2 MB; dropped after an hour)
        session = gr.State(None, time_to_live=3600)
        shown_spec = gr.State(None)  # the model whose layers and classes fill the pickers
        gr.Markdown(HEADER, elem_id="header")
        alert_box = gr.Markdown(visible=False, elem_id="alert")

        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                image = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Image",
                                 height=280, elem_id="input-image")
                gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[image], label="Examples (CC0 / public domain)",
                            examples_per_page=8)
                gr.Markdown(svc.limits_note(), elem_id="limits-note", elem_classes="note")
                model_choice = gr.Dropdown(choices=svc.POPULAR_MODELS, value=BUNDLED_SPEC, label="Model",
                                           info="The bundled model works offline; Hub models download on first use.",
                                           elem_id="model-choice")
                custom_spec = gr.Textbox(label="...or any timm CNN on the Hugging Face Hub",
                                         placeholder="timm/resnet18.a1_in1k  or  hf-hub:org/name  (Enter to load)",
                                         elem_id="custom-spec")
                model_info = gr.Markdown(elem_id="model-info", elem_classes="note")
                layer = gr.Dropdown(choices=[("auto", svc.AUTO_LAYER)], value=svc.AUTO_LAYER, label="Target layer",
                                    info="auto: the last convolutional feature map", elem_id="layer")
                target = gr.Dropdown(choices=[(svc.TOP1_LABEL, svc.TOP1)], value=svc.TOP1, filterable=True,
                                     label="Target class", info="Type to filter the class names",
                                     elem_id="target")
                explain_btn = gr.Button("Explain", variant="primary", elem_id="explain-btn")

            with gr.Column(scale=9, min_width=480):
                with gr.Row(equal_height=True):
                    ov = {m: gr.Image(label=OVERLAY_TITLES[m], type="pil", format="png", interactive=False,
                                      height=300, buttons=["download", "fullscreen"], elem_id=f"overlay-{m}")
                          for m in METHODS}
                cbar = gr.HTML(colorbar_html("jet"), elem_id="colorbar")
                note = gr.Markdown(CLASS_NOTE, elem_id="upsampling-note", elem_classes="note")
                with gr.Row():
                    alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Map opacity", elem_id="opacity")
                    cmap = gr.Dropdown(choices=list(COLORMAPS), value="jet", label="Colour map", elem_id="cmap")
                    upsampling = gr.Radio(
                        choices=[("paper (nearest + Gaussian blur)", "paper"), ("bilinear", "bilinear")],
                        value="paper", label="Display upsampling of MI maps", elem_id="upsampling")
                with gr.Row():
                    predictions = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="predictions")
                    files = gr.File(file_count="multiple", interactive=False, height=230, elem_id="downloads",
                                    label="Downloads: overlays (PNG), maps (.npy), manifest (JSON)")

        with gr.Column(elem_id="counterfactuals"):
            gr.Markdown("## Counterfactuals: keep or remove the explained region")
            gr.Markdown("Pixels where a map is at least the threshold form its region. *Keep* fills everything "
                        "else; *remove* fills the region. A faithful map keeps the prediction when kept and changes "
                        "it when removed.", elem_classes="note")
            with gr.Row():
                threshold = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Region threshold (map >= threshold)",
                                      elem_id="threshold")
                fill = gr.Radio(choices=list(FILLS), value="black", label="Fill of masked pixels", elem_id="fill")
                steps = gr.Slider(8, MAX_STEPS, value=DEFAULT_STEPS, step=8, label="Deletion/insertion steps",
                                  elem_id="steps")
            panel: list[gr.components.Component] = []
            with gr.Row(equal_height=False):
                for method in METHODS:
                    with gr.Column(min_width=300, elem_id=f"cf-{method}"):
                        gr.Markdown(f"### {METHOD_LABELS[method]}", elem_classes="method-title")
                        flip = gr.Markdown(elem_id=f"flip-{method}", elem_classes="note flip")
                        with gr.Row():
                            keep = gr.Image(label="Keep region", type="pil", interactive=False, height=200,
                                            buttons=["fullscreen"], elem_id=f"keep-{method}")
                            remove = gr.Image(label="Remove region", type="pil", interactive=False, height=200,
                                              buttons=["fullscreen"], elem_id=f"remove-{method}")
                        with gr.Row():
                            keep_top = gr.Label(num_top_classes=5, label="Kept: top-5", show_heading=False,
                                                elem_id=f"keep-top-{method}")
                            remove_top = gr.Label(num_top_classes=5, label="Removed: top-5", show_heading=False,
                                                  elem_id=f"remove-top-{method}")
                    panel += [keep, remove, keep_top, remove_top, flip]
            metrics = gr.Dataframe(headers=svc.METRIC_HEADERS, label="Faithfulness metrics (with baselines)",
                                   interactive=False, wrap=True, elem_id="metrics")
            curves = gr.Image(label="Deletion and insertion curves", type="pil", format="png", interactive=False,
                              elem_id="curves")

        with gr.Accordion("How it works, links and citation", open=False, elem_id="how-it-works"):
            gr.Markdown(HOW_IT_WORKS, latex_delimiters=[{"left": "$", "right": "$", "display": False}])

        # API-only inputs and outputs (hidden): POST /explain, e.g. with gradio_client.
        with gr.Column(visible=False):
            api_in = [
                gr.File(type="filepath", label="image"),  # a File, so a non-image reaches load_image's check
                gr.Textbox(value=BUNDLED_SPEC, label="model"),
                gr.Textbox(value=svc.AUTO_LAYER, label="layer"),
                gr.Textbox(value=svc.TOP1, label="target"),
                gr.Radio(choices=["paper", "bilinear"], value="paper", label="upsampling"),
                gr.Number(value=0.5, label="threshold"),
                gr.Radio(choices=list(FILLS), value="black", label="fill"),
                gr.Number(value=DEFAULT_STEPS, precision=0, label="steps"),
                gr.Dropdown(choices=list(COLORMAPS), value="jet", label="colormap"),
                gr.Number(value=0.5, label="opacity"),
            ]
            api_out = [gr.Image(type="pil", format="png", label=OVERLAY_TITLES[m]) for m in METHODS]
            api_out += [gr.Label(num_top_classes=5, label="predictions"), gr.JSON(label="report")]
            api_button = gr.Button("explain (API)")

        # Wiring ---------------------------------------------------------------------------------
        private: dict[str, Any] = {"api_visibility": "private"}
        model_outputs = [model_info, alert_box, layer, target, shown_spec]
        model_inputs = [model_choice, custom_spec, layer, target]
        demo.load(on_model, model_inputs, model_outputs, **private)
        model_choice.change(on_model, model_inputs, model_outputs, **private)
        custom_spec.submit(on_model, model_inputs, model_outputs, **private)

        cf_inputs = [session, threshold, fill, steps, cmap, alpha]
        cf_outputs = [*panel, metrics, curves, files, alert_box, session]
        explain_btn.click(
            on_explain,
            [image, model_choice, custom_spec, layer, target, upsampling, cmap, alpha, shown_spec, session],
            [ov["micam"], ov["gradcam"], ov["migradcam"], note, predictions, cbar, alert_box,
             model_info, layer, target, shown_spec, session],
            **private,
        ).then(on_counterfactuals, cf_inputs, cf_outputs, **private)

        restyle_out = [ov["micam"], ov["gradcam"], ov["migradcam"], cbar, files]
        for trigger in (alpha.change, cmap.change):
            trigger(on_restyle, [session, cmap, alpha], restyle_out, trigger_mode="always_last",
                    show_progress="hidden", **private)
        upsampling.change(on_upsampling, [session, upsampling, cmap, alpha],
                          [ov["micam"], ov["gradcam"], ov["migradcam"], note, session],
                          show_progress="hidden", **private).then(on_counterfactuals, cf_inputs, cf_outputs, **private)
        threshold.release(on_counterfactuals, cf_inputs, cf_outputs, **private)
        steps.release(on_counterfactuals, cf_inputs, cf_outputs, **private)
        fill.change(on_counterfactuals, cf_inputs, cf_outputs, **private)

        api_button.click(api_explain, api_in, api_out, api_name="explain",
                         api_description="Explain one image: MI CAM, Grad-CAM and MI-Grad-CAM overlays, "
                                         "top-5 predictions and a JSON report with counterfactual metrics.")
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    threading.Thread(target=lambda: _warm(BUNDLED_SPEC), daemon=True).start()
    demo.queue(default_concurrency_limit=4).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), **LAUNCH_KWARGS)


def _warm(spec: str) -> None:
    try:
        load(normalize_spec(spec))
    except MicamError as err:
        log.warning("could not preload %s: %s", spec, err)


THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="sky")
# Gradio 6 takes theme and CSS at launch. Uploads above max_file_size are cut off by Gradio itself;
# between the image limit and that, micam_core refuses the file with its own message.
LAUNCH_KWARGS: dict[str, Any] = {"theme": THEME, "css": CSS, "max_file_size": "25mb"}
demo = build_demo()

if __name__ == "__main__":
    main()
