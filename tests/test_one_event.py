"""Explain is one event: maps, then the counterfactual panel in the same stream; runs of a page supersede each other
without ever clearing the newer run's marks; a plain visit runs no load event on the server."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
pytest.importorskip("gradio")

import app  # noqa: E402
from micam_app import blocks, handlers  # noqa: E402
from micam_app.runs import Runs  # noqa: E402

CAT = ROOT / "examples" / "chelsea_cat.jpg"
SETTINGS = {"methods": ["micam"], "upsampling": "paper", "threshold": 0.5, "fill": "black", "steps": 2,
            "cmap": "jet", "opacity": 0.5}


def explain_all(request, **settings):
    return app.HANDLERS.on_explain_all(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                       request, **{**SETTINGS, **settings})


def marks_of(update: dict) -> str | None:
    return update.get(app.UI.c["marks"])


@pytest.fixture
def upload(monkeypatch):
    """The cat as an upload: computed every time, never served from the example cache."""
    monkeypatch.setattr(handlers.views, "example_stem", lambda image: None)


def test_explain_streams_maps_then_pairs_then_curves_in_one_event(upload):
    c = app.UI.c
    steps = list(explain_all(SimpleNamespace(session_hash="one-event")))
    maps = next(i for i, s in enumerate(steps) if s.get(c["maps"]) is not None)
    shown = next(i for i, s in enumerate(steps) if blocks.has_photos(s.get(c["pairs"]), "micam"))
    curves = next(i for i, s in enumerate(steps) if s.get(c["curves"]) is not None)
    assert maps < shown < curves and c["files"] in steps[-1]
    assert marks_of(steps[maps]).split()[1:] == ["maps=", "cf=updating"]  # maps current, panel on its way
    assert marks_of(steps[curves]).split()[1:] == ["cf="]
    assert steps[curves][c["session"]]["faith"].threshold == 0.5


def test_the_pairs_are_computed_while_the_maps_travel_to_the_page(upload, monkeypatch):
    """The keep/remove stage starts before the maps are handed to the page (Gradio then encodes and sends them),
    and the panel takes that stage instead of computing it again."""
    c, calls, started = app.UI.c, [], threading.Event()
    original = handlers.work.gpu_keep_remove

    def counted(view, exp):
        calls.append(view.threshold)
        started.set()
        return original(view, exp)

    monkeypatch.setattr(handlers.work, "gpu_keep_remove", counted)
    run = explain_all(SimpleNamespace(session_hash="early"))
    for update in run:
        if update.get(c["maps"]) is not None:
            assert started.wait(60), "the keep/remove stage runs while the maps travel"
            break
    rest = list(run)
    assert any(blocks.has_photos(s.get(c["pairs"]), "micam") for s in rest) and calls == [0.5]


def test_a_panel_setting_changed_during_the_maps_goes_to_their_panel(upload):
    """The page still holds the old session while the maps are computed: the new threshold is handed to the
    Explain run, whose panel uses it (the setting's own run computes nothing and marks nothing)."""
    c = app.UI.c
    page = SimpleNamespace(session_hash="deferred")
    run = explain_all(page)
    first = next(run)  # cleared, "Loading the model ..."
    assert c["session"] not in first
    app.HANDLERS.supersede(page)  # the threshold slider released ...
    own = list(app.HANDLERS.on_counterfactuals(None, page, threshold=0.7, fill="black", steps=2, cmap="jet",
                                               opacity=0.5))
    assert own == [app.HANDLERS.nothing()], "the setting's own run leaves the page alone (no marks either)"
    out = {}
    for update in run:
        out.update(update)
    assert out[c["session"]]["faith"].threshold == 0.7


def test_a_newer_explain_stops_the_older_before_its_maps_and_marks(upload):
    """Explain pressed again while the maps are computed: the older run shows neither its maps nor any mark (a
    stopped run never clears the newer run's "Updating" badge); pressed during the panel, it stops there."""
    c = app.UI.c
    page = SimpleNamespace(session_hash="twice")
    older = explain_all(page)
    next(older)
    app.HANDLERS.supersede_explain(page)
    rest = list(older)
    assert all(s.get(c["maps"]) is None and marks_of(s) is None for s in rest)
    assert all(c["session"] not in s for s in rest)
    older = explain_all(page)
    for update in older:
        if blocks.has_photos(update.get(c["pairs"]), "micam"):
            break
    app.HANDLERS.supersede_explain(page)
    assert list(older) == [], "stopped after its panel's current stage, without a mark"


def test_runs_of_other_pages_and_without_a_page_are_independent():
    runs = Runs(max_sessions=2)
    a, b = SimpleNamespace(session_hash="a"), SimpleNamespace(session_hash="b")
    newest_a, newest_b, anonymous = runs.start(a), runs.start(b), runs.start(None)
    runs.start_explain(a)
    assert not newest_a() and newest_b() and anonymous()
    current = runs.begin_maps(b)
    assert runs.defer(b, {"threshold": 0.3}) and not runs.defer(a, {"threshold": 0.3})
    assert runs.maps_done(b) == {"threshold": 0.3} and runs.maps_done(b) == {} and current()
    runs.start(SimpleNamespace(session_hash="c"))  # a third page: the least recently used one is forgotten
    assert not runs.defer(None, {}) and runs.maps_done(None) == {}


def test_a_plain_visit_runs_no_load_event_on_the_server():
    """Every load event is JavaScript only: the controls are filled when the page is built and are never held
    disabled by a pending event; a link's query starts the restoring events (through a hidden box) only when
    there is one."""
    config = app.demo.get_config_file()
    loads = [d for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert loads and all(not d["backend_fn"] for d in loads)
    link_open = app.UI.c["link_open"]._id
    restoring = [d for d in config["dependencies"] if [link_open, "click"] in [list(t) for t in d["targets"]]]
    assert restoring and restoring[0]["backend_fn"]


def test_a_link_query_restores_the_controls():
    from micam_app.paper import PaperHandlers

    c = app.UI.c
    links = PaperHandlers(app.HANDLERS)
    assert links.on_link("bundled:efficientnet_lite0", "") == {c["link_state"]: None}
    out = links.on_link("bundled:efficientnet_lite0", "?example=coffee&threshold=0.4&methods=micam,gradcam")
    assert out[c["threshold"]] == 0.4 and out[c["methods"]] == ["micam", "gradcam"]
    assert out[c["image"]].endswith("coffee.jpg") and out[c["link_state"]]["example"] == "coffee"


def test_a_streamed_update_sends_what_gradio_would_rebuilding_only_what_it_names(monkeypatch):
    """Only the components an update names are postprocessed (micam_app.streaming); the page gets the same. Gradio
    itself rebuilds every output an update leaves out (each with its config and JSON schema)."""
    import asyncio

    import gradio as gr
    from gradio.state_holder import SessionState
    from PIL import Image

    c = app.UI.c
    fn = next(f for f in app.demo.fns.values() if f.name == "on_explain_all")
    assert len(fn.outputs) > 15
    rebuilt = []
    original = SessionState._update_config
    monkeypatch.setattr(SessionState, "_update_config", lambda self, key: rebuilt.append(key) or original(self, key))

    def postprocessed(postprocess) -> tuple[list, int]:
        update = {**app.HANDLERS.status("Metrics ...", 0.4), c["metrics"]: "<table><tr><td>x</td></tr></table>",
                  c["curves"]: Image.new("RGB", (32, 32), "red"), c["pairs"]: blocks.pairs_html(["gradcam"]),
                  c["layer"]: gr.update(choices=[("auto: x", "auto")], value="auto"), c["session"]: {"exp": None}}
        rebuilt.clear()
        return asyncio.run(postprocess(fn, update, SessionState(app.demo))), len(rebuilt)

    fast, fast_rebuilt = postprocessed(app.demo.postprocess_data)
    slow, slow_rebuilt = postprocessed(lambda *a: gr.Blocks.postprocess_data(app.demo, *a))
    assert fast == slow
    assert fast_rebuilt == 3 and slow_rebuilt > 10  # the updates' own: status, Cancel, layer
