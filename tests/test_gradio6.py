"""Gradio 6's migration guide: app-level parameters (theme, css, js, head) go to launch(), not gr.Blocks."""

from __future__ import annotations

import inspect
import warnings

import gradio as gr
import pytest


@pytest.mark.slow
def test_app_level_parameters_go_to_launch():
    import app
    from micam_app.layout import build_demo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_demo()
    moved = [str(w.message) for w in caught if "launch()" in str(w.message)]
    assert not moved, moved
    launch = set(inspect.signature(gr.Blocks.launch).parameters)
    assert {"theme", "css"} <= set(app.LAUNCH_KWARGS) <= launch
