"""The app's sanity-check panel: cost in words before anything runs, verdicts in words after."""

from __future__ import annotations

import gradio as gr
import pytest

from micam_app import sanity_panel, work
from micam_core import BUNDLED_SPEC, explain


@pytest.fixture(scope="module")
def session(cat_path) -> dict:
    loaded = work.load(BUNDLED_SPEC)
    return {"spec": loaded.spec, "exp": explain(loaded, cat_path, methods=("micam", "gradcam", "eigencam"))}


def test_cost_is_told_before_anything_runs(session, monkeypatch):
    def boom(*_args, **_kwargs):
        raise AssertionError("the cost must not run the checks")

    monkeypatch.setattr(sanity_panel, "sanity_checks", boom)
    text = sanity_panel.on_cost(session)
    assert text.startswith("**Cost:**") and "3 forward and backward passes" in text and "the 3 maps" in text
    assert "classifier, conv\\_head \\+ bn2" in text  # the parts randomised, escaped for Markdown
    assert sanity_panel.on_cost(None) == sanity_panel.NO_EXPLANATION


def test_run_tells_each_map_in_words_and_draws_the_figure(session):
    markdown, figure = sanity_panel.on_run(session)
    assert "Grad-CAM passes" in markdown and "Random map \\(baseline\\) ignores the model" in markdown
    assert "Eigen-CAM: maps for" in markdown and "by construction" in markdown
    assert figure["visible"] and figure["value"].size[0] > 500
    with pytest.raises(gr.Error, match="Explain an image first"):
        sanity_panel.on_run(None)


@pytest.mark.slow
def test_the_panel_is_on_the_page():
    import app

    assert {"sanity_btn", "sanity_cost", "sanity_result", "sanity_plot"} <= set(app.UI.c)


def test_a_click_loads_the_model_once_and_asks_the_gpu_for_its_cost(session, monkeypatch):
    loads, calls = [], []
    original = work.load
    monkeypatch.setattr(work, "load", lambda spec: loads.append(spec) or original(spec))

    def gpu(spec, exp, seconds):  # the GPU function finds the model in its own process by spec
        calls.append((spec, seconds))
        raise sanity_panel.MicamError("stopped here")

    monkeypatch.setattr(sanity_panel, "gpu_sanity", gpu)
    with pytest.raises(gr.Error, match="stopped here"):
        sanity_panel.on_run(session)
    assert loads == [session["spec"]] and calls[0][0] == session["spec"]
    assert 10 <= calls[0][1] <= 120  # seconds within ZeroGPU's request range (micam_core.gpu)
