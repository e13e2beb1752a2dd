"""The page: widgets from the settings record and the method registry, wired to the handlers."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from micam_core import (
    BUNDLED_SPEC,
    DEFAULT_METHODS,
    SETTINGS,
    LoadedModel,
    MicamError,
    policy,
)
from micam_core.fields import UPSAMPLING_MODES
from micam_core.protocols import PROTOCOL_SETTINGS, PROTOCOLS

from . import agent, api, blocks, page, params_panel, sanity_panel, streaming, text, views, work
from .handlers import PANEL_STAGES, PRIVATE, UI, Handlers, colorbar_html, setting_widgets
from .paper import FIGURE_OPTIONS, PaperHandlers

EXAMPLES = [str(p) for p in views.EXAMPLES.values()]
OWN_EVENTS = ("upsampling", "protocol")  # setting widgets with their own handler (wired by name below)
log = logging.getLogger("micam_app")


def slider(name: str, elem_id: str, info: str | None = None) -> gr.Slider:
    s = SETTINGS[name]
    return gr.Slider(s.minimum, s.maximum, value=s.default, step=s.step, label=s.label, info=info, elem_id=elem_id)


def steps_unused_note() -> str:
    """The steps slider's note: the protocols that draw no deletion or insertion curve do not use it."""
    names = [p.label.split(":")[0] for p in PROTOCOLS.values() if not (p.has("deletion") or p.has("insertion"))]
    return f"{' and '.join(names)} does not use it" if names else ""


def inputs_column(ui: UI, loaded: LoadedModel | None) -> None:
    """Image, examples and Explain first (above the fold); then the model and what to explain."""
    c = ui.c
    c["image"] = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Image", height=230,
                          elem_id="input-image")
    gr.Examples(examples=[[p] for p in EXAMPLES], inputs=[c["image"]], label="Examples (CC0 / public domain)",
                examples_per_page=8, elem_id="examples")
    c["explain_btn"] = gr.Button("Explain", variant="primary", elem_id="explain-btn")
    c["model_choice"] = gr.Dropdown(choices=views.POPULAR_MODELS, value=BUNDLED_SPEC, label="Model",
                                    info="Type to search timm image classifiers on the Hub.",
                                    allow_custom_value=True, filterable=True, elem_id="model-choice")
    c["hub_note"] = gr.Markdown(elem_id="hub-note", elem_classes="note")
    c["model_info"] = gr.Markdown(text.describe_model(loaded) if loaded else "", elem_id="model-info",
                                  elem_classes="note")
    layers = views.layer_choices(loaded) if loaded else [("auto", views.AUTO_LAYER)]
    targets = views.target_choices(loaded) if loaded else [(views.TOP1_LABEL, views.TOP1)]
    c["layer"] = gr.Dropdown(choices=layers, value=views.AUTO_LAYER, label="Target layer",
                             info="auto: the model's default layer", elem_id="layer")
    c["target"] = gr.Dropdown(choices=targets, value=views.TOP1, filterable=True, label="Target class",
                              info="Type to filter the class names", elem_id="target")
    c["methods"] = gr.CheckboxGroup(choices=views.method_choices(loaded), value=list(DEFAULT_METHODS),
                                    label="Methods",
                                    info="Any subset, grouped by kind, each with its cost (extra forward passes on "
                                         "this layer); all run on the same layer, target and image. Greyed out: "
                                         "cannot run on this model and layer, the reason follows the name.",
                                    elem_id="methods")
    params_panel.panel(ui)
    with gr.Accordion("Other models and limits", open=False, elem_id="more-models"):
        c["custom_spec"] = gr.Textbox(label="Any timm model on the Hugging Face Hub",
                                      placeholder="timm/resnet18.a1_in1k  or  hf-hub:org/name  (Enter to load)",
                                      elem_id="custom-spec")
        gr.Markdown("The bundled model works offline; Hub models download on first use. " + policy.limits_note(),
                    elem_id="limits-note", elem_classes="note")


def maps_column(ui: UI) -> None:
    c = ui.c
    # one block for every chosen method's map (blocks.py): the page opens sooner with fewer components
    c["maps"] = gr.HTML(blocks.maps_html(dict.fromkeys(DEFAULT_METHODS)), elem_id="overlays",
                        js_on_load=blocks.PHOTO_JS)
    c["cbar"] = gr.HTML(colorbar_html("jet"), elem_id="colorbar")
    c["note"] = gr.Markdown(text.class_note(DEFAULT_METHODS), elem_id="upsampling-note", elem_classes="note")
    with gr.Accordion("Display: map opacity, colour map, MI upsampling", open=False, elem_id="display"), gr.Row():
        c["opacity"] = slider("opacity", "opacity")
        c["cmap"] = gr.Dropdown(choices=list(SETTINGS["cmap"].choices), value=SETTINGS["cmap"].default,
                                label=SETTINGS["cmap"].label, elem_id="cmap")
        c["upsampling"] = gr.Radio(choices=[(mode if mode in how else f"{mode} ({how})", mode)
                                            for mode, how in UPSAMPLING_MODES.items()],
                                   value=SETTINGS["upsampling"].default, label=SETTINGS["upsampling"].label,
                                   elem_id="upsampling")
    c["predictions"] = gr.Label(num_top_classes=5, label="Top-5 predictions", show_heading=False,
                                elem_id="predictions")
    share_and_cite(ui)


def share_and_cite(ui: UI) -> None:
    """Link to this view; downloads and a figure for a paper (collapsed: secondary)."""
    c = ui.c
    with gr.Column(elem_id="share"):
        with gr.Row(equal_height=True):
            c["link"] = gr.Textbox(label="Link to this view", interactive=False, scale=5, elem_id="link", lines=1,
                                   max_lines=2,
                                   placeholder="Explain an image to get a link to exactly this view")
            c["copy_link"] = gr.Button("Copy link", scale=1, min_width=110, elem_id="copy-link")
        c["link_note"] = gr.Markdown(text.LINK_NOTE, elem_classes="note", elem_id="link-note")
    c["link_query"] = gr.Textbox(visible=False, elem_id="link-query")
    c["link_open"] = gr.Button("Open the link's view", visible="hidden", elem_id="link-open")  # see OPEN_LINK_JS
    c["marks"] = gr.Textbox(visible=False, elem_id="marks")  # out-of-date marks sent by the handlers
    with gr.Accordion("Downloads and a figure for a paper", open=False, elem_id="downloads-panel"):
        c["files"] = gr.File(file_count="multiple", interactive=False, elem_id="downloads",
                             label="Overlays (PNG), maps (.npy), report (JSON)")
        with gr.Row(equal_height=True):
            c["figure_btn"] = gr.Button("Figure for a paper (PDF, SVG, 300-dpi PNG)", elem_id="figure-btn")
            c["figure_options"] = gr.CheckboxGroup(choices=list(FIGURE_OPTIONS.items()), value=["cf"],
                                                   show_label=False, elem_id="figure-options")
        c["figure_preview"] = gr.Image(label="Figure", show_label=False, type="filepath", interactive=False,
                                       height=260, buttons=["fullscreen"], elem_id="figure-preview", visible=False)
        c["figure_files"] = gr.File(file_count="multiple", interactive=False, elem_id="figure-files",
                                    label="Figure (PDF, SVG, PNG), caption (.txt, .tex) and BibTeX (.bib)",
                                    visible=False)


def counterfactual_panel(ui: UI) -> None:
    c = ui.c
    gr.Markdown("## Counterfactuals: keep or remove the region")
    gr.Markdown("A map's region: its pixels at or above the threshold. *Keep* fills the rest, *remove* fills the "
                "region; a faithful map keeps the prediction when kept and changes it when removed.",
                elem_classes="note", elem_id="cf-intro")
    with gr.Row():
        c["protocol"] = gr.Radio(choices=[(f"{p.name}: {p.label}", p.name) for p in PROTOCOLS.values()],
                                 value=SETTINGS["protocol"].default, label=SETTINGS["protocol"].label,
                                 elem_id="protocol")
    with gr.Row():
        c["threshold"] = slider("threshold", "threshold")
        c["fill"] = gr.Radio(choices=list(SETTINGS["fill"].choices), value=SETTINGS["fill"].default,
                             label=SETTINGS["fill"].label, elem_id="fill")
        c["steps"] = slider("steps", "steps", info=steps_unused_note())
    c["pairs"] = gr.HTML(blocks.pairs_html(DEFAULT_METHODS), elem_id="cf-pairs", js_on_load=blocks.PHOTO_JS)
    # Hidden until the first explanation (Handlers.cf_cleared shows them): an empty table and plot say nothing,
    # and the page opens sooner without them.
    with gr.Column(visible=False, elem_id="cf-results") as results:
        gr.Markdown("### Faithfulness metrics (with baselines)", elem_classes="panel-title")
        gr.Markdown("Scroll the table sideways for every column.", elem_id="metrics-hint", elem_classes="note")
        c["metrics"] = gr.HTML(elem_id="metrics", js_on_load=None, padding=False, apply_default_css=False)
        gr.Markdown("### Curves of the protocol (deletion and insertion, or ROAD)", elem_classes="panel-title")
        c["curves"] = gr.Image(label="Deletion and insertion curves", show_label=False, type="pil", format="png",
                               interactive=False, buttons=["download", "fullscreen"], elem_id="curves")
    c["cf_results"] = results


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
# Copy the link; say so on the button (or say how to copy by hand where the clipboard is not allowed).
COPY_JS = """(url) => {
  const button = document.getElementById('copy-link');
  const say = (words) => { if (button) { button.textContent = words;
    setTimeout(() => { button.textContent = 'Copy link'; }, 2500); } };
  if (!url) { say('No link yet'); return []; }
  const byHand = () => { const box = document.querySelector('#link textarea, #link input');
    if (box) { box.focus(); box.select(); } say(document.execCommand && document.execCommand('copy')
      ? 'Copied \u2713' : 'Press Ctrl+C'); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(url).then(() => say('Copied \u2713'), byHand);
  } else { byHand(); }
  return [];
}"""
PANELS = {"maps": "maps-panel", "cf": "counterfactuals"}


def marking(state: str | None, *panels: str) -> str:
    """JS statements that mark panels: ``pending`` (press Explain), ``updating`` or cleared (None)."""
    ids = [PANELS[p] for p in panels]
    add = f"e.classList.add('{state}');" if state else ""
    return (f"for (const id of {ids!r}) {{ const e = document.getElementById(id); "
            f"if (e) {{ e.classList.remove('pending', 'updating'); {add} }} }}")


def mark(state: str | None, *panels: str) -> str:
    """JS that marks panels as out of date at once: ``pending`` (press Explain), ``updating`` or cleared (None)."""
    return f"() => {{ {marking(state, *panels)} return []; }}"


# The maps are current; the counterfactual panel is being recomputed (a cancelled run's end cleared its mark).
MAPS_DONE = f"() => {{ {marking(None, 'maps')} {marking('updating', 'cf')} return []; }}"
# Marks sent by the running handler (Handlers.marks): "<n> maps= cf=updating" (empty: cleared).
MARKS_JS = f"""(value) => {{
  const ids = {PANELS!r};
  for (const part of (value || '').split(' ').slice(1)) {{
    const [panel, state] = part.split('=');
    const e = document.getElementById(ids[panel]);
    if (e) {{ e.classList.remove('pending', 'updating'); if (state) e.classList.add(state); }}
  }}
  return [];
}}"""
# A link's view is restored only when the page was opened with a query: the load presses the hidden "open the
# link" button then (a plain visit runs no server event, so no control waits on one); that event's inputs
# are the model picker and the query.
OPEN_LINK_JS = """() => {
  if (window.location.search.length <= 1) return [];
  const press = (tries) => { const button = document.getElementById('link-open');
    if (button) button.click(); else if (tries > 0) setTimeout(() => press(tries - 1), 50); };
  press(200);
  return [];
}"""
QUERY_JS = "(choice, query) => [choice, window.location.search.slice(1)]"


def wire(ui: UI, h: Handlers) -> None:
    c = ui.c
    p = PaperHandlers(h)
    # The status bar is the one progress indicator. Gradio's page still refreshes the loading status of each of
    # an event's progress targets (its outputs, by default) on every streamed message: with Explain's outputs (218
    # when each method had its own components), about 0.4 s a message. One hidden target instead (the marks box)
    # makes that a few milliseconds.
    hidden = {**PRIVATE, "show_progress": "hidden", "show_progress_on": [c["marks"]]}
    status = {c["status"], c["cancel_btn"]}
    model_inputs = [c["model_choice"], c["custom_spec"], c["layer"], c["target"], c["methods"]]
    model_outputs = {c[k] for k in ("model_info", "alert", "layer", "target", "shown_spec", "methods")} | status
    # One event per action, whatever triggers it: the page's start-up work grows with events x components.
    work_events = [gr.on([c["model_choice"].input, c["custom_spec"].submit], h.on_model, model_inputs, model_outputs,
                         **hidden)]

    # always_last: a new run waits for the one still going (which stops early: Handlers.supersede), never dropped
    cf_outputs = {c["pairs"], *status, *(c[k] for k in ("metrics", "curves", "cf_results", "files", "session",
                                                     "link_query", "alert", "marks"))}
    cf = {"fn": h.on_counterfactuals, "inputs": [c["session"]], "inputs_kwargs": setting_widgets(c, *PANEL_STAGES),
          **hidden, "trigger_mode": "always_last", "outputs": cf_outputs}
    # Explain: the maps, then the counterfactual panel in the same event (one round trip; marks from the handler)
    explain_outputs = {c["maps"], *cf_outputs,
                       *(c[k] for k in ("note", "predictions", "cbar", "model_info", "layer", "target", "methods",
                                        "shown_spec", "link_note"))}
    explain_inputs = [c[k] for k in ("image", "model_choice", "custom_spec", "layer", "target", "shown_spec",
                                     "session")]
    display = setting_widgets(c, "display")

    def then_counterfactuals(event: Any) -> None:
        """The counterfactual panel after ``event`` (the panel's handler marks it current when done)."""
        work_events.extend([event, event.success(None, js=MAPS_DONE, **PRIVATE).success(**cf)])

    c["marks"].change(None, [c["marks"]], None, js=MARKS_JS, **PRIVATE)
    c["explain_btn"].click(None, js=mark("updating", "maps", "cf"), **PRIVATE)
    # first the older runs stop (an instant call, sent before the queued event), then the new one (always_last:
    # it waits for the older run, which stops after its current stage, and is never dropped)
    c["explain_btn"].click(h.supersede_explain, None, None, queue=False, **hidden)
    work_events.append(c["explain_btn"].click(h.on_explain_all, explain_inputs, explain_outputs,
                                              inputs_kwargs=setting_widgets(c), trigger_mode="always_last", **hidden))
    explain_widgets = [w for name, w in setting_widgets(c, "explain").items() if name not in OWN_EVENTS]
    gr.on([c["image"].change, c["custom_spec"].submit,
           *(w.input for w in (c["model_choice"], c["layer"], c["target"], *explain_widgets))],
          None, js=mark("pending", "maps", "cf"), **PRIVATE)  # the maps no longer match: press Explain

    restyle_out = {c["maps"], c["cbar"], c["files"], c["link_query"]}
    gr.on([w.change for w in display.values()], h.on_restyle, [c["session"]], restyle_out, inputs_kwargs=display,
          trigger_mode="always_last", **hidden)
    # The visitor's own changes only: a value set by a handler (a link, a protocol) brings its own panel run.
    # A slider recomputes when let go; while it moves, the results on screen are stale.
    panel_widgets = [w for name, w in setting_widgets(c, "counterfactual").items() if name not in OWN_EVENTS]
    new_panel = [w.release if isinstance(w, gr.Slider) else w.input for w in panel_widgets]
    gr.on([c["upsampling"].input, c["protocol"].input, *new_panel], None, js=mark("updating", "cf"), **PRIVATE)
    # the visitor's own change only: a link's upsampling is explained by the link's own run
    then_counterfactuals(c["upsampling"].input(h.on_upsampling, [c["session"], c["upsampling"]],
                                                {c["maps"], c["note"], c["session"]},
                                                inputs_kwargs=display, **hidden))
    work_events.append(gr.on(new_panel, **cf))
    gr.on([w.input for w in panel_widgets if isinstance(w, gr.Slider)], None, js=mark("pending", "cf"), **PRIVATE)
    brought = {c[name] for name in PROTOCOL_SETTINGS if name in c}
    chosen = c["protocol"].input(h.on_protocol, [c["protocol"]], brought, **hidden)
    work_events.extend([chosen, chosen.success(**cf)])

    link_restored = {*setting_widgets(c).values(), *(c[k] for k in ("model_choice", "custom_spec", "image",
                                                                   "link_alert", "link_state"))}
    link_explain_in = [c[k] for k in ("link_state", "image", "model_choice", "custom_spec")]
    c["demo_load"](None, None, None, js=f"() => {{ ({DISABLE_JS})(); return ({OPEN_LINK_JS})(); }}", **PRIVATE)
    opened = c["link_open"].click(p.on_link, [c["model_choice"], c["link_query"]], link_restored, js=QUERY_JS,
                                  **hidden).then(
        p.on_link_model, [c["link_state"], *model_inputs, c["shown_spec"]], model_outputs, **hidden)
    explained = opened.success(p.on_link_explain, link_explain_in, explain_outputs, inputs_kwargs=display, **hidden)
    work_events.extend([opened, explained])
    c["link_query"].change(None, [c["link_query"]], [c["link"]], js=LINK_JS, **PRIVATE)
    c["copy_link"].click(None, [c["link"]], None, js=COPY_JS, **PRIVATE)
    c["figure_btn"].click(p.on_figure_button, [c["session"], c["figure_options"]],
                          {c["figure_files"], c["figure_preview"]}, inputs_kwargs=display, **PRIVATE)
    c["model_choice"].key_up(p.on_search, None, {c["model_choice"], c["hub_note"]}, trigger_mode="always_last",
                             **hidden)
    c["layer"].change(h.on_methods_layer, [c["shown_spec"], c["layer"], c["methods"]], {c["methods"]}, **hidden)
    # A new explanation or new panel settings: a panel still being computed for the old ones stops after its
    # current stage, and the new run (deferred until then: always_last) takes its place.
    gr.on([c["upsampling"].input, c["protocol"].input, *new_panel], h.supersede, None, None, queue=False, **hidden)
    c["cancel_btn"].click(h.on_cancel, None, {*status, c["alert"]}, cancels=work_events,
                          js=mark("pending", "maps", "cf"), **PRIVATE)


def build_demo() -> tuple[gr.Blocks, UI, Handlers]:
    """The Blocks app (not launched), its components and handlers. The bundled model is loaded here, so its
    layers, classes and methods are in the page when it opens."""
    ui = UI()
    c = ui.c
    loaded = preload()
    with gr.Blocks(title="MI CAM Explorer", delete_cache=(3600, 7200)) as demo:
        c["session"] = gr.State(None, time_to_live=3600)  # this visitor's last explanation (dropped after an hour)
        c["shown_spec"] = gr.State(loaded.spec if loaded else None)  # the model filling the pickers
        c["link_state"] = gr.State(None)  # the view a permalink asked for
        gr.Markdown(page.HEADER, elem_id="header")
        with gr.Row(elem_id="status-bar", equal_height=True):
            c["status"] = gr.HTML(visible=False, elem_id="status", scale=6)
            c["cancel_btn"] = gr.Button("Cancel", visible=False, size="sm", scale=1, min_width=90,
                                        elem_id="cancel-btn")
        c["alert"] = gr.Markdown(visible=False, elem_id="alert")
        c["link_alert"] = gr.Markdown(visible=False, elem_id="link-alert")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=280, elem_id="inputs"):
                inputs_column(ui, loaded)
            with gr.Column(scale=9, min_width=320, elem_id="maps-panel"):
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
        streaming.named_outputs_only(demo)
        handlers = Handlers(ui)
        wire(ui, handlers)
        sanity_panel.wire(ui)
        params_panel.wire(ui)
        api_button.click(api.api_explain, api_in, api_out, api_name="explain",
                         api_description="Explain one image: overlays of the chosen methods (default "
                                         f"{text.method_list(DEFAULT_METHODS)}), top-5 predictions and a JSON "
                                         "report with counterfactual metrics.")
        agent_button.click(agent.explain, agent_in, agent_out, api_name="explain_json",
                           api_description="Explain one image with MI CAM and other CAM methods, and test each "
                                           "map by keeping or removing its region. The image is a data: URI "
                                           "(data:image/jpeg;base64,...) or an http(s) URL; the answer is the "
                                           "JSON report as text (the MCP tool `explain`).")
    return demo, ui, handlers


def preload() -> LoadedModel | None:
    """The bundled model, loaded before the page is built (None, logged, when it cannot be)."""
    try:
        return work.load(BUNDLED_SPEC)
    except MicamError as err:
        log.warning("could not preload %s: %s", BUNDLED_SPEC, err)
        return None
