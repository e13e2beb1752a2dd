"""What papers need from the page: permalinks, figure export, live Hub model search.

A link carries the whole view in its query string (no state on the server, so links survive a
restart); an uploaded image cannot travel in a link, an example can (found by its file's hash).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import gradio as gr

from micam_core.figure import export_figure, figure_stem
from micam_core.hub import search_models
from micam_core.models import normalize_spec
from micam_core.permalink import missing_parts, parse_query
from micam_core.settings import SETTINGS

from . import text, views, work
from .handlers import Handlers, fail, session_view, user_message

log = logging.getLogger("micam_app")

MIN_SEARCH_CHARS = 2
# The figure's options as one group of boxes (shown -> value); Checkbox widgets would cost every page load a type.
FIGURE_OPTIONS = {"with the counterfactual row and curves": "cf", "caption inside the image": "caption"}


class PaperHandlers:
    """Handlers for links, figures and search, next to the page's main handlers."""

    def __init__(self, main: Handlers) -> None:
        self.main = main
        self.c = main.ui.c
        self.nothing = main.nothing

    # --- permalinks -------------------------------------------------------------------------------
    def on_link(self, choice: str | None, query_string: str | None) -> dict:
        """Page opened with a query (``query_string``, the page's ``location.search``, sent only when there is one,
        so a plain visit runs no event and its controls are ready at once): restore the controls from it
        (explained next when it names an example).

        A link with parts refused or missing still opens its view, with a sentence saying what is missing."""
        query = dict(parse_qsl((query_string or "").lstrip("?"), keep_blank_values=True))
        if not query:
            return {self.c["link_state"]: None}
        state, messages = parse_query(query, views.EXAMPLES)
        c = self.c
        spec = state["model"]
        curated = spec in {v for _, v in views.POPULAR_MODELS}
        out = {c["model_choice"]: spec if curated and spec != choice else gr.update(),
               c["custom_spec"]: "" if curated else spec,
               **{c[name]: list(value) if isinstance(value, tuple) else value  # every setting that has a widget
                  for name, value in state.items() if name in SETTINGS and name in c},
               c["link_state"]: {k: v for k, v in state.items() if k != "example_path"}}
        if state["example_path"] is not None:
            out[c["image"]] = str(state["example_path"])
        words = text.link_messages(messages, missing_parts(query))
        if words:
            out[c["link_alert"]] = gr.update(value=words, visible=True)
        return out

    def on_link_model(self, link_state: dict | None, choice: str, custom: str, layer: str, target: str,
                      methods: list[str], shown_spec: str | None) -> Iterator[dict]:
        """After the controls are restored: load the link's model when it is not the one in the pickers."""
        try:
            same = not link_state or normalize_spec(views.resolve_spec(choice, custom)) == shown_spec
        except Exception:  # the model box says why when it is loaded
            same = False
        if same:
            yield self.nothing("shown_spec")
            return
        yield from self.main.on_model(choice, custom, layer, target, methods)

    def on_link_explain(self, link_state: dict | None, image: str | None, choice: str, custom: str,
                        request: gr.Request | None = None, **display: Any) -> Iterator[dict]:
        """After the controls are restored: explain the link's view when it names an example (maps, then the
        counterfactual panel, as the Explain button does).

        ``display``: the display widgets' values by name (the link's other settings come from ``link_state``)."""
        if not link_state or not link_state.get("example") or not image:
            yield self.nothing()
            return
        try:
            shown = work.load(views.resolve_spec(choice, custom)).spec
        except Exception as err:  # the model box already says why in a sentence (on_model): nothing to explain
            log.info("link view not explained: %s", user_message(err))
            yield self.nothing()
            return
        # The link's checked values go straight in; its model counts as shown, so its layer and target hold.
        settings = {k: v for k, v in link_state.items() if k in SETTINGS}
        yield from self.main.on_explain_all(image, choice, custom, link_state["layer"], link_state["target"], shown,
                                            None, request, **{**settings, **display})

    # --- figure -----------------------------------------------------------------------------------
    def on_figure_button(self, session: dict | None, options: list[str] | None, **display: Any) -> dict:
        """The figure button: :meth:`on_figure` with the options ticked (``FIGURE_OPTIONS``' values)."""
        chosen = set(options or ())
        return self.on_figure(session, "cf" in chosen, "caption" in chosen, **display)

    def on_figure(self, session: dict | None, with_counterfactuals: bool, caption_inside: bool = False,
                  **display: Any) -> dict:
        """Export the current view as a figure for a paper: PDF, SVG, 300-dpi PNG, caption (.txt, .tex) and
        BibTeX, named by model, image and methods. ``display``: the display widgets' values by name."""
        try:
            if not session or session.get("exp") is None:
                raise ValueError("Explain an image first; the figure shows the current view.")
            view = session_view(session, **display)
            loaded = work.load(view.model)
            faith = session.get("faith") if with_counterfactuals else None
            exp = session["exp"]
            stem = figure_stem(loaded.spec, session.get("example") or "upload", exp.methods)
            paths = export_figure(exp, session["folder"], stem, model=loaded.spec,
                                  revision=loaded.revision, cmap=view.cmap, opacity=view.opacity, faith=faith,
                                  counterfactuals=faith is not None, curves=faith is not None,
                                  caption=bool(caption_inside))
        except Exception as err:
            raise fail(err) from None
        png = next((p for p in paths if str(p).endswith(".png")), None)
        return {self.c["figure_files"]: gr.update(value=[str(p) for p in paths], visible=True),
                self.c["figure_preview"]: gr.update(value=png, visible=True)}

    # --- live Hub search --------------------------------------------------------------------------
    def on_search(self, data: gr.KeyUpData) -> dict:
        """Typing in the model box: timm image classifiers on the Hub, most downloaded first."""
        query = (data.input_value or "").strip() if data is not None else ""
        if len(query) < MIN_SEARCH_CHARS or query.startswith(("bundled:", "local-dir:")):
            return {self.c["hub_note"]: gr.skip()}
        choices, note = hub_choices(query)
        return {self.c["model_choice"]: gr.update(choices=choices), self.c["hub_note"]: note}


def hub_choices(query: str) -> tuple[list[tuple[str, str]], str]:
    """The model picker's choices for ``query`` (curated first, then Hub hits) and a note for the visitor."""
    result = search_models(query, limit=20)
    found = [(m.describe(), m.spec) for m in result.models]
    note = text.md(result.message, 300) if result.message else f"{len(found)} timm classifiers on the Hub match."
    return views.POPULAR_MODELS + found, note
