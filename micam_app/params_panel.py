"""The methods' own parameters (Finer-CAM's strength, SS-CAM's samples, ...): widgets generated from the method
records (:class:`~micam_core.fields.Param`), in a collapsed accordion that shows only while a chosen method has
parameters, one row per such method.

Each widget is named by its setting (``<method id>_<name>``) in the page's components, so the Explain handler
reads it, links write and restore it, like every other setting widget.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from micam_core import DEFAULT_METHODS, METHODS, REGISTRY
from micam_core.fields import Setting

from .handlers import PRIVATE, UI

WITH_PARAMS = tuple(m for m in METHODS if REGISTRY[m].params)


def widget(s: Setting) -> Any:
    """The widget of one method parameter: a choice, or a number box (step from the record; its bounds are said
    in words and checked by the record, so a value out of range gets the same sentence as at every entrance)."""
    if s.kind == "choice":
        return gr.Dropdown(choices=list(s.choices), value=s.default, label=s.label, info=s.help,
                           elem_id=f"param-{s.name}", min_width=140)
    return gr.Number(value=s.default, step=s.step, label=s.label, info=f"{s.help}: {s.describe()}",
                     precision=0 if s.kind == "int" else None, elem_id=f"param-{s.name}", min_width=140)


def panel(ui: UI) -> None:
    """The accordion (closed; hidden while no chosen method has parameters)."""
    c = ui.c
    with gr.Accordion("Parameters of the chosen methods", open=False, visible=shown(DEFAULT_METHODS),
                      elem_id="method-params") as accordion:
        gr.Markdown("A change takes effect when you press Explain.", elem_classes="note")
        for m in WITH_PARAMS:
            with gr.Row(visible=m in DEFAULT_METHODS, elem_id=f"params-{m}") as row:
                for s in REGISTRY[m].settings():
                    c[s.name] = widget(s)
            c[f"params_row_{m}"] = row
    c["params_accordion"] = accordion


def shown(methods: Any) -> bool:
    """Whether any of ``methods`` has parameters (the accordion shows)."""
    return any(m in WITH_PARAMS for m in methods or ())


def on_methods(methods: list[str] | None, ui: UI) -> dict:
    """The methods chosen changed: show the accordion and the rows of the chosen methods that have parameters."""
    c = ui.c
    chosen = set(methods or ())
    return {c["params_accordion"]: gr.update(visible=shown(chosen)),
            **{c[f"params_row_{m}"]: gr.update(visible=m in chosen) for m in WITH_PARAMS}}


def wire(ui: UI) -> None:
    c = ui.c
    outputs = {c["params_accordion"], *(c[f"params_row_{m}"] for m in WITH_PARAMS)}
    c["methods"].change(lambda methods: on_methods(methods, ui), [c["methods"]], outputs, show_progress="hidden",
                        **PRIVATE)
