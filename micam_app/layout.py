"""The page: widgets from the settings record and the method registry, wired to the handlers."""

from __future__ import annotations

from typing import Any

import gradio as gr

from micam_core import BUNDLED_SPEC, DEFAULT_METHODS, METHOD_LABELS, METHODS, REGISTRY, SETTINGS, policy
from micam_core.protocols import PROTOCOLS

from . import agent, api, page, sanity_panel, text, views
from .handlers import UI, Handlers, colorbar_html
from .paper import PaperHandlers

EXAMPLES = [str(p) for p in views.EXAMPLES.values()]
PRIVATE: dict[str, Any] = {"api_visibility": "private"}


def slider(name: str, elem_id: str) -> gr.Slider:
    s = SETTINGS[name]
    return gr.Slider(s.minimum, s.maximum, value=s.default, step=s.step, label=s.label, elem_id=elem_id)


def overlay_title(method: str) -> str:
    return METHOD_LABELS[method] + ("" if REGISTRY[method].class_specific else " (class-agnostic)")


def inputs_column(ui: UI) -> None:
    c = ui.c
    c["image"] = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Image", height=280,
                          elem_id="input-image")
    gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[c["image"]], label="Examples (CC0 / public domain)",
                examples_per_page=8)
    gr.Markdown(policy.limits_note(), elem_id="limits-note", elem_classes="note")
    c["model_choice"] = gr.Dropdown(choices=views.POPULAR_MODELS, value=BUNDLED_SPEC, label="Model",
                                    info="Type to search timm image classifiers on the Hub. The bundled model "
                                         "works offline; Hub models download on first use.",
                                    allow_custom_value=True, filterable=True, elem_id="model-choice")
    c["hub_note"] = gr.Markdown(elem_id="hub-note", elem_classes="note")
    c["custom_spec"] = gr.Textbox(label="...or any timm model on the Hugging Face Hub",
                                  placeholder="timm/resnet18.a1_in1k  or  hf-hub:org/name  (Enter to load)",
                                  elem_id="custom-spec")
    c["model_info"] = gr.Markdown(elem_id="model-info", elem_classes="note")
    c["layer"] = gr.Dropdown(choices=[("auto", views.AUTO_LAYER)], value=views.AUTO_LAYER, label="Target layer",
                             info="auto: the model's default layer", elem_id="layer")
    c["target"] = gr.Dropdown(choices=[(views.TOP1_LABEL, views.TOP1)], value=views.TOP1, filterable=True,
                              label="Target class", info="Type to filter the class names", elem_id="target")
    c["methods"] = gr.CheckboxGroup(choices=views.method_choices(), value=list(DEFAULT_METHODS), label="Methods",
                                    info="Any subset, grouped by kind, each with its cost (extra forward passes on "
                                         "this layer); all run on the same layer, target and image. Greyed out: "
                                         "cannot run on this model and layer, the reason follows the name.",
                                    elem_id="methods")
    c["explain_btn"] = gr.Button("Explain", variant="primary", elem_id="explain-btn")


def maps_column(ui: UI) -> None:
    c = ui.c
    with gr.Row(equal_height=True, elem_id="overlays", elem_classes="method-row"):
        for m in METHODS:
            with gr.Column(min_width=240, visible=m in DEFAULT_METHODS, elem_id=f"overlay-col-{m}",
                           elem_classes="method-col") as col:
                ui.overlays[m] = gr.Image(label=overlay_title(m), type="pil", format="png", interactive=False,
                                          height=280, buttons=["download", "fullscreen"], elem_id=f"overlay-{m}")
            ui.overlay_cols[m] = col
    c["cbar"] = gr.HTML(colorbar_html("jet"), elem_id="colorbar")
    c["note"] = gr.Markdown(text.class_note(DEFAULT_METHODS), elem_id="upsampling-note", elem_classes="note")
    with gr.Row():
        c["opacity"] = slider("opacity", "opacity")
        c["cmap"] = gr.Dropdown(choices=list(SETTINGS["cmap"].choices), value=SETTINGS["cmap"].default,
                                label=SETTINGS["cmap"].label, elem_id="cmap")
        c["upsampling"] = gr.Radio(choices=[("paper (nearest + Gaussian blur)", "paper"), ("bilinear", "bilinear")],
                                   value=SETTINGS["upsampling"].default, label=SETTINGS["upsampling"].label,
                                   elem_id="upsampling")
    with gr.Row():
        c["predictions"] = gr.Label(num_top_classes=5, label="Top-5 predictions", elem_id="predictions")
        c["files"] = gr.File(file_count="multiple", interactive=False, height=230, elem_id="downloads",
                             label="Downloads: overlays (PNG), maps (.npy), report (JSON)")
    share_and_cite(ui)


def share_and_cite(ui: UI) -> None:
    """Link to this view, and a figure for a paper."""
    c = ui.c
    with gr.Group(elem_id="share"):
        with gr.Row(equal_height=True):
            c["link"] = gr.Textbox(label="Link to this view", interactive=False, scale=5, elem_id="link",
                                   placeholder="Explain an image to get a link to exactly this view")
            c["copy_link"] = gr.Button("Copy link", scale=1, min_width=120, elem_id="copy-link")
        gr.Markdown("The link holds the model, layer, target, methods and settings, and the image when it is one "
                    "of the examples: an uploaded image cannot travel in a link.", elem_classes="note",
                    elem_id="link-note")
    c["link_query"] = gr.Textbox(visible=False, elem_id="link-query")
    with gr.Row(equal_height=True):
        c["figure_btn"] = gr.Button("Figure for a paper (PDF, SVG, 300-dpi PNG)", elem_id="figure-btn")
        c["figure_cf"] = gr.Checkbox(value=True, label="with the counterfactual row and curves",
                                     elem_id="figure-cf")
    with gr.Row():
        c["figure_preview"] = gr.Image(label="Figure", type="filepath", interactive=False, height=260,
                                       buttons=["fullscreen"], elem_id="figure-preview", visible=False)
        c["figure_files"] = gr.File(file_count="multiple", interactive=False, height=260, elem_id="figure-files",
                                    label="Figure files, caption (.txt) and BibTeX (.bib)", visible=False)


def counterfactual_panel(ui: UI) -> None:
    c = ui.c
    gr.Markdown("## Counterfactuals: keep or remove the explained region")
    gr.Markdown("Pixels where a map is at least the threshold form its region. *Keep* fills everything else; "
                "*remove* fills the region. A faithful map keeps the prediction when kept and changes it when "
                "removed.", elem_classes="note")
    with gr.Row():
        c["protocol"] = gr.Radio(choices=[(f"{p.name}: {p.label}", p.name) for p in PROTOCOLS.values()],
                                 value=SETTINGS["protocol"].default, label=SETTINGS["protocol"].label,
                                 elem_id="protocol")
    with gr.Row():
        c["threshold"] = slider("threshold", "threshold")
        c["fill"] = gr.Radio(choices=list(SETTINGS["fill"].choices), value=SETTINGS["fill"].default,
                             label=SETTINGS["fill"].label, elem_id="fill")
        c["steps"] = slider("steps", "steps")
    with gr.Row(equal_height=False, elem_classes="method-row"):
        for m in METHODS:
            with gr.Column(min_width=300, visible=m in DEFAULT_METHODS, elem_id=f"cf-{m}",
                           elem_classes="method-col") as col:
                gr.Markdown(f"### {METHOD_LABELS[m]}", elem_classes="method-title")
                ui.flip[m] = gr.Markdown(elem_id=f"flip-{m}", elem_classes="note flip")
                with gr.Row():
                    ui.keep[m] = gr.Image(label="Keep region", type="pil", interactive=False, height=200,
                                          buttons=["fullscreen"], elem_id=f"keep-{m}")
                    ui.remove[m] = gr.Image(label="Remove region", type="pil", interactive=False, height=200,
                                            buttons=["fullscreen"], elem_id=f"remove-{m}")
                with gr.Row():
                    ui.keep_top[m] = gr.Label(num_top_classes=5, label="Kept: top-5", show_heading=False,
                                              elem_id=f"keep-top-{m}")
                    ui.remove_top[m] = gr.Label(num_top_classes=5, label="Removed: top-5", show_heading=False,
                                                elem_id=f"remove-top-{m}")
            ui.cf_cols[m] = col
    c["metrics"] = gr.Dataframe(headers=views.METRIC_HEADERS, label="Faithfulness metrics (with baselines)",
                                interactive=False, wrap=True, elem_id="metrics")
    c["curves"] = gr.Image(label="Deletion and insertion curves", type="pil", format="png", interactive=False,
                           elem_id="curves")


# Greys out (and disables) the selector's methods that cannot run here, whenever the choices are redrawn.
DISABLE_JS = f"""() => {{
  const mark = () => document.querySelectorAll('#methods label').forEach((label) => {{
    const off = label.textContent.includes({views.UNAVAILABLE!r});
    const box = label.querySelector('input');
    if (box && box.disabled !== off) box.disabled = off;
    label.classList.toggle('method-off', off);
  }});
  mark();
  new MutationObserver(mark).observe(document.body, {{childList: true, subtree: true, characterData: true}});
  return [];
}}"""
LINK_JS = "(q) => q ? window.location.origin + window.location.pathname + '?' + q : ''"
COPY_JS = "(url) => { if (url) { navigator.clipboard.writeText(url); } return []; }"


def wire(ui: UI, h: Handlers) -> None:
    c = ui.c
    p = PaperHandlers(h)
    model_inputs = [c["model_choice"], c["custom_spec"], c["layer"], c["target"], c["methods"]]
    model_outputs = {c[k] for k in ("model_info", "alert", "layer", "target", "shown_spec", "methods")}
    for trigger in (c["model_choice"].change, c["custom_spec"].submit):
        trigger(h.on_model, model_inputs, model_outputs, **PRIVATE)

    panel = [*ui.keep.values(), *ui.remove.values(), *ui.keep_top.values(), *ui.remove_top.values(),
             *ui.flip.values()]
    cf_inputs = [c["session"], c["threshold"], c["fill"], c["steps"], c["cmap"], c["opacity"], c["protocol"]]
    cf = {"fn": h.on_counterfactuals, "inputs": cf_inputs, **PRIVATE, "show_progress_on": [c["metrics"]],
          "outputs": {*panel, c["metrics"], c["curves"], c["files"], c["session"], c["link_query"]}}
    explain_outputs = {*ui.overlays.values(), *ui.overlay_cols.values(), *ui.cf_cols.values(),
                       *(c[k] for k in ("note", "predictions", "cbar", "alert", "model_info", "layer", "target",
                                        "methods", "shown_spec", "session", "link_query"))}
    explain_inputs = [c[k] for k in ("image", "model_choice", "custom_spec", "layer", "target", "methods",
                                     "upsampling", "cmap", "opacity", "shown_spec", "session")]
    c["explain_btn"].click(h.on_explain, explain_inputs, explain_outputs, show_progress_on=list(ui.overlays.values()),
                           **PRIVATE).success(**cf)

    restyle_out = {*ui.overlays.values(), c["cbar"], c["files"], c["link_query"]}
    for trigger in (c["opacity"].change, c["cmap"].change):
        trigger(h.on_restyle, [c["session"], c["cmap"], c["opacity"]], restyle_out, trigger_mode="always_last",
                show_progress="hidden", **PRIVATE)
    c["upsampling"].change(h.on_upsampling, [c["session"], c["upsampling"], c["cmap"], c["opacity"]],
                           {*ui.overlays.values(), c["note"], c["session"]}, show_progress="hidden",
                           **PRIVATE).success(**cf)
    c["threshold"].release(**cf)
    c["steps"].release(**cf)
    c["fill"].change(**cf)
    c["protocol"].input(h.on_protocol, [c["protocol"]], {c["threshold"], c["fill"], c["steps"]},
                        **PRIVATE).success(**cf)
    link_restored = {c[k] for k in ("model_choice", "custom_spec", "methods", "upsampling", "protocol", "threshold",
                                    "fill", "steps", "cmap", "opacity", "image", "link_alert", "link_state")}
    link_explain_in = [c[k] for k in ("link_state", "image", "model_choice", "custom_spec", "cmap", "opacity")]
    c["demo_load"](None, None, None, js=DISABLE_JS, **PRIVATE)
    c["demo_load"](p.on_link, None, link_restored, **PRIVATE).then(
        h.on_model, model_inputs, model_outputs, **PRIVATE).success(
        p.on_link_explain, link_explain_in, explain_outputs, show_progress_on=list(ui.overlays.values()),
        **PRIVATE).success(**cf)
    c["link_query"].change(None, [c["link_query"]], [c["link"]], js=LINK_JS, **PRIVATE)
    c["copy_link"].click(None, [c["link"]], None, js=COPY_JS, **PRIVATE)
    c["figure_btn"].click(p.on_figure, [c["session"], c["cmap"], c["opacity"], c["figure_cf"]],
                          {c["figure_files"], c["figure_preview"]}, **PRIVATE)
    c["model_choice"].key_up(p.on_search, None, {c["model_choice"], c["hub_note"]}, trigger_mode="always_last",
                             show_progress="hidden", **PRIVATE)
    c["layer"].change(h.on_methods_layer, [c["shown_spec"], c["layer"], c["methods"]], {c["methods"]},
                      show_progress="hidden", **PRIVATE)


def build_demo() -> tuple[gr.Blocks, UI, Handlers]:
    """The Blocks app (not launched), its components and handlers."""
    ui = UI()
    c = ui.c
    with gr.Blocks(title="MI CAM Explorer", delete_cache=(3600, 7200)) as demo:
        c["session"] = gr.State(None, time_to_live=3600)  # this visitor's last explanation (dropped after an hour)
        c["shown_spec"] = gr.State(None)  # the model whose layers and classes fill the pickers
        c["link_state"] = gr.State(None)  # the view a permalink asked for
        gr.Markdown(page.HEADER, elem_id="header")
        c["alert"] = gr.Markdown(visible=False, elem_id="alert")
        c["link_alert"] = gr.Markdown(visible=False, elem_id="link-alert")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=300):
                inputs_column(ui)
            with gr.Column(scale=9, min_width=480):
                maps_column(ui)
        with gr.Column(elem_id="counterfactuals"):
            counterfactual_panel(ui)
        sanity_panel.panel(ui)
        with gr.Accordion("How it works, links and citation", open=False, elem_id="how-it-works"):
            gr.Markdown(page.HOW_IT_WORKS, latex_delimiters=[{"left": "$", "right": "$", "display": False}])
        with gr.Column(visible=False):  # API-only inputs and outputs: POST /explain, e.g. with gradio_client
            api_in, api_out = api.api_components()
            api_button = gr.Button("explain (API)")
            agent_in, agent_out = agent.components()
            agent_button = gr.Button("explain (MCP tool, JSON)")
        c["demo_load"] = demo.load
        handlers = Handlers(ui)
        wire(ui, handlers)
        sanity_panel.wire(ui)
        api_button.click(api.api_explain, api_in, api_out, api_name="explain",
                         api_description="Explain one image: overlays of the chosen methods (default MI CAM, "
                                         "Grad-CAM, MI-Grad-CAM), top-5 predictions and a JSON report with "
                                         "counterfactual metrics.")
        agent_button.click(agent.explain, agent_in, agent_out, api_name="explain_json",
                           api_description="Explain one image with MI CAM and other CAM methods, and test each "
                                           "map by keeping or removing its region. The image is a data: URI "
                                           "(data:image/jpeg;base64,...) or an http(s) URL; the answer is the "
                                           "JSON report as text (the MCP tool `explain`).")
    return demo, ui, handlers
