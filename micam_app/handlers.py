"""Event handlers of the page. Each returns, or yields as its work goes on, a dict keyed by component; failures
show a sentence in the page's alert box and raise ``gr.Error`` (a toast that closes itself).

Widget values become a :class:`~micam_core.view.View` through :func:`micam_core.view.checked`, as at every
other entrance. The session state holds this visitor's last explanation: ``{"spec", "view", "exp", "faith",
"folder", "example"}``; a handler loads the model once per click and passes it on.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from micam_core import SETTINGS, LoadedModel, MicamError
from micam_core.errors import shorten
from micam_core.outputs import new_download_dir, write_results
from micam_core.protocols import PROTOCOL_SETTINGS, get_protocol
from micam_core.render import colorbar, curves_figure, overlay
from micam_core.report import build_report
from micam_core.view import View, checked, part

from . import blocks, text, views, work
from .runs import Runs

log = logging.getLogger("micam_app")
TOAST_SECONDS = 8  # toasts close themselves
PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # events of the page, not endpoints of the API
PANEL_STAGES = ("counterfactual", "display")  # the settings the counterfactual panel reads
PANEL_START = "Counterfactuals: keep and remove each map's region, and classify again ..."


@dataclass
class UI:
    """The components the handlers update (filled in by the layout)."""

    c: dict[str, Any] = field(default_factory=dict)  # single components by name


def user_message(err: Exception) -> str:
    """A readable sentence for any failure (MicamError messages are already sentences)."""
    if isinstance(err, MicamError):
        return str(err)
    log.exception("unexpected failure")
    return f"Unexpected error ({type(err).__name__}). Please try again or choose another model."


def fail(err: Exception, for_page: bool = True) -> gr.Error:
    """The error to raise; its toast closes itself (the page keeps the sentence in its alert box). For the page
    the message is escaped (Gradio shows toasts as HTML)."""
    message = user_message(err)
    return gr.Error(text.toast(message) if for_page else shorten(message, 300), duration=TOAST_SECONDS,
                    print_exception=not isinstance(err, MicamError))  # a visitor's mistake is no server error


def colorbar_html(cmap: str) -> str:
    """The colour bar of ``cmap`` (a checked value) as an inline image."""
    data = blocks.data_uri(colorbar(cmap, width=512, height=14), "PNG")
    return (f'<div class="cbar"><span>low</span><img alt="colour bar ({cmap})" src="{data}">'
            "<span>high</span></div>")


def picked_layer(value: str | None) -> str | None:
    """The layer picker's value as a layer name (``None``: the default layer, also for a name a link mangled)."""
    try:
        return part("layer", value)
    except MicamError:
        return None


def setting_widgets(c: Mapping[str, Any], *stages: str) -> dict[str, Any]:
    """The page's setting widgets by setting name, in :data:`SETTINGS` order (``stages``: only those stages').

    Handlers take them as keywords (``inputs_kwargs``), so a new setting's widget is read once it is on the page.
    """
    return {name: c[name] for name, s in SETTINGS.items() if name in c and (not stages or s.stage in stages)}


def session_view(session: dict | None, **values: Any) -> View:
    """The session's view with the widgets' ``values`` (checked; a refusal raises its sentence)."""
    return checked(values, base=(session or {}).get("view"))


class Handlers:
    """The page's handlers, bound to its components."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self.runs = Runs()
        self._marks = itertools.count()

    def supersede(self, request: gr.Request) -> None:
        """New panel settings: the session's running panel stops after its current stage."""
        self.runs.start(request)

    def supersede_explain(self, request: gr.Request) -> None:
        """Explain pressed: the session's running Explain stops after its maps or its panel's current stage."""
        self.runs.start_explain(request)

    def marks(self, **panels: str | None) -> dict:
        """Mark panels (``maps``, ``cf``) ``updating`` or ``pending``, or clear them (None), through the page's
        hidden marks box (numbered, so every update is a change). Only the run that is current sends marks, so a
        stopped run never clears the marks of the one that replaced it."""
        value = " ".join([str(next(self._marks)), *(f"{p}={state or ''}" for p, state in panels.items())])
        return {self.ui.c["marks"]: value} if "marks" in self.ui.c else {}

    def nothing(self, name: str = "session") -> dict:
        """No change (Gradio reads an empty dict as one value, so name one output component and skip it)."""
        return {self.ui.c[name]: gr.skip()}

    # --- the status bar: one progress indicator, with a cancel ----------------------------------------
    def status(self, message: str = "", done: float | None = None) -> dict:
        """Show ``message`` (and a bar at ``done`` in [0, 1]) in the status bar; empty hides it."""
        c = self.ui.c
        if not message:
            return {c["status"]: gr.update(value="", visible=False), c["cancel_btn"]: gr.update(visible=False)}
        return {c["status"]: gr.update(value=text.status_html(message, done), visible=True),
                c["cancel_btn"]: gr.update(visible=True)}

    def failed(self, err: Exception, *panels: str) -> tuple[dict, gr.Error]:
        """The screen after a failure (status hidden, alert shown, ``panels`` marked out of date) and the toast."""
        message = user_message(err)
        return {**self.status(), **self.marks(**dict.fromkeys(panels, "pending")),
                self.ui.c["alert"]: gr.update(value=text.alert(message), visible=True)}, fail(err)

    def on_cancel(self) -> dict:
        """Cancel pressed: Gradio stops the running work; the bar goes, a note says what stopped."""
        return {**self.status(), self.ui.c["alert"]: gr.update(value=text.CANCELLED, visible=True)}

    # --- model ------------------------------------------------------------------------------------
    def pickers(self, loaded: LoadedModel, layer: str | None, target: str | None, methods: Any,
                choices: bool = True) -> dict:
        """The layer, class and method pickers for ``loaded`` (``choices=False``: their values only, when they
        already show this model's choices: 1001 class names need not travel again)."""
        layers, targets = views.layer_choices(loaded), views.target_choices(loaded)
        layer = layer if layer in {v for _, v in layers} else views.AUTO_LAYER
        target = target if target in {v for _, v in targets} else views.TOP1
        c = self.ui.c
        if not choices:
            return {c["layer"]: layer, c["target"]: target,
                    c["methods"]: views.runnable(loaded, picked_layer(layer), methods)}
        return {c["layer"]: gr.update(choices=layers, value=layer),
                c["target"]: gr.update(choices=targets, value=target),
                c["methods"]: gr.update(choices=views.method_choices(loaded, picked_layer(layer)),
                                        value=views.runnable(loaded, picked_layer(layer), methods))}

    def on_model(self, choice: str, custom: str, layer: str, target: str, methods: list[str]) -> Iterator[dict]:
        """Load the chosen model; fill the layer, class and method pickers."""
        c = self.ui.c
        spec = views.resolve_spec(choice, custom)
        yield self.status(f"Loading the model {shorten(spec, 80)} ...")
        try:
            loaded = work.load(spec)
        except Exception as err:
            message = user_message(err)
            gr.Warning(text.toast(message), duration=TOAST_SECONDS)
            yield {**self.status(), c["model_info"]: text.model_failure(spec, message),
                   c["alert"]: gr.update(value=text.alert(message), visible=True),
                   c["layer"]: gr.update(choices=[("auto", views.AUTO_LAYER)], value=views.AUTO_LAYER),
                   c["target"]: gr.update(choices=[(views.TOP1_LABEL, views.TOP1)], value=views.TOP1),
                   c["shown_spec"]: None}
            return
        yield {**self.status(), c["model_info"]: text.describe_model(loaded),
               c["alert"]: gr.update(value="", visible=False), c["shown_spec"]: loaded.spec,
               **self.pickers(loaded, layer, target, methods)}

    # --- explain ----------------------------------------------------------------------------------
    def on_explain(self, image: str | None, choice: str, custom: str, layer: str, target: str,
                   shown_spec: str | None, session: dict | None, **settings: Any) -> Iterator[dict]:
        """Explain button: check the settings, load the model, compute the chosen maps (counterfactuals follow).

        ``settings``: the setting widgets' values by name (:func:`setting_widgets`), methods' parameters included.
        """
        c = self.ui.c
        try:
            view = checked({"model": views.resolve_spec(choice, custom), "layer": layer, "target": target, **settings})
            if not image:
                raise MicamError("Add an image first: upload one, use the webcam or click an example.")
            computing = self.status(f"Computing the maps ({text.method_list(view.methods)}): one forward and one "
                                    "partial backward pass ...", 0.05)
            loading = not work.is_loaded(view.model)  # else one message less (each costs the page a moment)
            yield {**(self.status("Loading the model ...", 0.02) if loading else computing),
                   **self.cf_cleared(view.methods, view.protocol)}
            loaded = work.load(view.model)
            same_model = shown_spec == loaded.spec
            view = view.replace(model=loaded.spec, example=views.example_stem(image),
                                **({} if same_model else {"layer": None, "target": None}))
            if loading:
                yield computing
            exp = work.explain_view(loaded, image, view)
        except Exception as err:
            screen, error = self.failed(err, "maps", "cf")
            yield screen
            raise error from None
        session = {"spec": loaded.spec, "view": view, "exp": exp, "faith": None, "folder": str(new_download_dir()),
                   "example": view.example}
        out = {**self.overlay_updates(exp, view.cmap, view.opacity),
               c["note"]: text.display_note(exp), c["predictions"]: views.label_dict(exp.top(5)),
               c["cbar"]: colorbar_html(view.cmap), c["alert"]: gr.update(value="", visible=False),
               c["model_info"]: text.describe_model(loaded), c["shown_spec"]: loaded.spec, c["session"]: session,
               c["link_query"]: views.view_query(session, loaded.default_layer, view),
               c["link_note"]: text.link_note(view.example), **self.status("Maps ready. Counterfactuals next ...", 0.1)}
        out.update(self.pickers(loaded, layer if same_model else None, target if same_model else None, view.methods,
                                choices=not same_model))
        yield out

    def on_explain_all(self, image: str | None, choice: str, custom: str, layer: str, target: str,
                       shown_spec: str | None, session: dict | None, request: gr.Request | None = None,
                       **settings: Any) -> Iterator[dict]:
        """Explain button: the maps (:meth:`on_explain`), then in the same event the counterfactual panel
        (:meth:`panel`): one round trip. A newer Explain of the page stops it after its maps (which it then never
        shows) or after its panel's current stage; panel settings changed while the maps were computed are taken."""
        c = self.ui.c
        current = self.runs.begin_maps(request)
        panel = {k: v for k, v in settings.items() if k in SETTINGS and SETTINGS[k].stage in PANEL_STAGES}
        early = None
        try:
            for update in self.on_explain(image, choice, custom, layer, target, shown_spec, session, **settings):
                if c["session"] in update:
                    if not current():
                        log.info("explanation superseded by a newer Explain; its maps are not shown")
                        return
                    session = update[c["session"]]
                    early = self.start_keep_remove(session, panel)  # computed while the maps travel to the page
                    update = {**update, **self.marks(maps=None, cf="updating"), **self.status(PANEL_START, 0.15)}
                yield update
        finally:
            deferred = self.runs.maps_done(request)
        if current():
            yield from self.panel(session, self.runs.start(request), cleared=True, early=early,
                                  **{**panel, **deferred})

    @staticmethod
    def start_keep_remove(session: dict, settings: dict) -> work.Early | None:
        """The panel's keep/remove stage for ``settings``, started in the background (None: nothing to start, or
        settings the panel will refuse with its own sentence)."""
        try:
            return work.start_keep_remove(work.load(session["spec"]), session["exp"], session_view(session, **settings))
        except MicamError:
            return None

    def overlay_updates(self, exp: Any, cmap: str, opacity: float) -> dict:
        """The maps grid: the explanation's methods' overlays."""
        return {self.ui.c["maps"]: blocks.maps_html({m: overlay(exp.crop, exp.maps[m], cmap, opacity)
                                                      for m in exp.methods})}

    # --- counterfactuals --------------------------------------------------------------------------
    def on_protocol(self, protocol: str) -> dict:
        """A protocol was chosen: the threshold, fill and steps widgets take its values."""
        try:
            chosen = get_protocol(checked({"protocol": protocol}).protocol)
        except MicamError as err:
            raise fail(err) from None
        return {self.ui.c[name]: getattr(chosen, name) for name in PROTOCOL_SETTINGS if name in self.ui.c}

    def cf_cleared(self, methods: tuple[str, ...], protocol: str, note: str = text.UPDATING) -> dict:
        """The counterfactual panel emptied at once (the results on screen no longer match the controls); the
        metrics table takes ``protocol``'s columns. The table and the curves show (hidden until the first
        explanation)."""
        c = self.ui.c
        return {c["metrics"]: views.metrics_html({}, methods, protocol), c["curves"]: None,
                c["cf_results"]: gr.update(visible=True), c["pairs"]: blocks.pairs_html(methods, note=note)}

    def cf_kept(self, part: work.Partial, exp: Any, view: View) -> dict:
        """Each method's keep/remove images, predictions and verdict, as soon as they exist."""
        return {self.ui.c["pairs"]: blocks.pairs_html(exp.methods, part.kept, exp.target_label, view.threshold)}

    def on_counterfactuals(self, session: dict | None, request: gr.Request | None = None,
                           **settings: Any) -> Iterator[dict]:
        """Counterfactual panel, metrics, curves and downloads for the session's current explanation, in stages:
        keep/remove of every method first, then the metrics map by map (the protocol's), then the curves and the
        downloads. ``settings``: the counterfactual and display widgets' values by name. A newer run of the same
        browser session (``request``) stops this one after its current stage."""
        if self.runs.defer(request, settings):  # the page's maps are being computed: their panel takes these
            yield self.nothing()
            return
        yield from self.panel(session, self.runs.start(request), **settings)

    def panel(self, session: dict | None, newest: Callable[[], bool], cleared: bool = False,
              early: work.Early | None = None, **settings: Any) -> Iterator[dict]:
        """The counterfactual panel of :meth:`on_counterfactuals`, stopped when ``newest()`` turns False
        (``cleared``: the panel on screen is already empty, as Explain left it; ``early``: its keep/remove stage,
        already started)."""
        c = self.ui.c
        if not session or session.get("exp") is None:
            yield {**self.nothing(), **self.marks(cf=None)}
            return
        exp = session["exp"]
        try:
            view = session_view(session, **settings)
            if not cleared:  # (after Explain, its maps' message said all this)
                yield {**self.cf_cleared(exp.methods, view.protocol), **self.status(PANEL_START, 0.15)}
            loaded = work.load(session["spec"])
            faith, shown, out = None, False, {}
            for part in work.analyse_stages(loaded, exp, view, early):
                if not newest():
                    log.info("counterfactual panel superseded by a newer run; stopped")
                    return
                # rows only once a map is scored (before that they are the "scoring ..." rows already shown)
                out = ({c["metrics"]: views.metrics_html(part.scored, exp.methods, view.protocol)} if part.scored
                       else {})
                if part.kept and not shown:  # the pictures travel once
                    out.update(self.cf_kept(part, exp, view))
                    shown = True
                faith = part.faith
                if faith is None:
                    done = len(part.scored) / max(1, part.total)
                    out.update(self.status(f"Metrics: {len(part.scored)} of {part.total} maps scored (protocol "
                                           f"{view.protocol}) ...", 0.2 + 0.75 * done))
                    yield out
            figure = curves_figure(faith.curves(), title=f"Target: {faith.target_label}", labels=faith.labels(),
                                   road=faith.road_curves(),
                                   protocol=faith.protocol.describe())
            session = {**session, "view": view, "faith": faith}
            yield {**out, c["curves"]: figure, c["session"]: session,  # the last stage's rows travel with the curves
                   c["link_query"]: views.view_query(session, loaded.default_layer, view), **self.status(),
                   **self.marks(cf=None)}
            yield {c["files"]: self.downloads(loaded, session, view, figure)}
        except Exception as err:
            screen, error = self.failed(err, "cf")
            yield screen
            raise error from None

    def downloads(self, loaded: LoadedModel, session: dict, view: View, curves: Any = None) -> list[str]:
        """Overlays, raw maps and the manifest in this session's folder (unchanged files are not rewritten)."""
        faith = session.get("faith")
        report = build_report(loaded, session["exp"], counterfactuals=faith.to_report() if faith else None)
        paths = write_results(session["folder"], "explanation", session["exp"], report, cmap=view.cmap,
                              opacity=view.opacity, curves=curves)
        return [str(p) for p in paths]

    # --- re-rendering without the model ------------------------------------------------------------
    def on_restyle(self, session: dict | None, **display: Any) -> dict:
        """A display setting changed (opacity, colour map): redraw the overlays from the stored maps (no model call)."""
        c = self.ui.c
        try:
            view = session_view(session, **display)
        except MicamError as err:
            raise fail(err) from None
        if not session or session.get("exp") is None:
            return {c["cbar"]: colorbar_html(view.cmap)}
        loaded = work.load(session["spec"])
        return {**self.overlay_updates(session["exp"], view.cmap, view.opacity), c["cbar"]: colorbar_html(view.cmap),
                c["files"]: self.downloads(loaded, session, view),
                c["link_query"]: views.view_query(session, loaded.default_layer, view)}

    def on_upsampling(self, session: dict | None, upsampling: str, **display: Any) -> dict:
        """Display upsampling changed: re-derive the maps from the stored low-resolution maps (no forward pass)."""
        c = self.ui.c
        if not session or session.get("exp") is None:
            return self.nothing()
        try:
            view = session_view(session, upsampling=upsampling, **display)
            exp = session["exp"].with_upsampling(view.upsampling)
        except MicamError as err:
            raise fail(err) from None
        return {**self.overlay_updates(exp, view.cmap, view.opacity), c["note"]: text.display_note(exp),
                c["session"]: {**session, "view": view, "exp": exp, "faith": None}}

    def on_methods_layer(self, shown_spec: str | None, layer: str, methods: Any) -> dict:
        """Layer changed: the costs and availability in the method selector follow it."""
        if not shown_spec:
            return {self.ui.c["methods"]: gr.skip()}
        try:
            loaded = work.load(shown_spec)
        except MicamError:
            return {self.ui.c["methods"]: gr.skip()}
        return {self.ui.c["methods"]: gr.update(choices=views.method_choices(loaded, picked_layer(layer)),
                                                value=views.runnable(loaded, picked_layer(layer), methods))}
