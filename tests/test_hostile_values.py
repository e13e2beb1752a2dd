"""Hostile values through the API as a visitor sends them: a sentence naming the setting, before any model work."""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from conftest import EXAMPLES

CAT = EXAMPLES / "chelsea_cat.jpg"


def refused(client, **options) -> str:
    with pytest.raises(Exception) as excinfo:
        client.predict(handle_file(str(CAT)), "bundled:efficientnet_lite0", api_name="/explain", **options)
    message = str(excinfo.value)
    assert "upstream Gradio app has raised an exception" not in message, message
    assert "Traceback" not in message and "Unexpected error" not in message, message
    return message


@pytest.fixture
def no_model_work(monkeypatch):
    from micam_app import work

    def boom(*_args, **_kwargs):
        raise AssertionError("a bad setting reached the model")

    monkeypatch.setattr(work, "gpu_explain", boom)
    monkeypatch.setattr(work, "gpu_analyse", boom)


@pytest.mark.parametrize("options,name", [
    ({"steps": "abc"}, "steps"), ({"steps": "NaN"}, "steps"), ({"steps": "inf"}, "steps"), ({"steps": 0}, "steps"),
    ({"opacity": "abc"}, "opacity"), ({"opacity": "nan"}, "opacity"), ({"opacity": -5}, "opacity"),
    ({"opacity": "inf"}, "opacity"), ({"threshold": "abc"}, "threshold"), ({"threshold": None}, "threshold"),
    ({"methods": "micam,<img src=x>"}, "methods"), ({"colormap": "x" * 5000}, "cmap"),
    ({"upsampling": "cubic"}, "upsampling"), ({"fill": ""}, "fill"),
])
@pytest.mark.slow
def test_bad_values_refused_before_model_work(client, no_model_work, options, name):
    message = refused(client, **options)
    assert f"({name})" in message and len(message) < 400


def test_superscript_digit_target_is_a_name_not_an_index(client):
    message = refused(client, target="²")
    assert "target class '²' is not one of this model's class names" in message


def test_long_target_is_not_echoed_whole(client):
    message = refused(client, target="q" * 5000)
    assert len(message) < 400 and "…" in message


def test_chosen_methods_come_back_in_their_places(client):
    result = client.predict(handle_file(str(CAT)), "bundled:efficientnet_lite0", api_name="/explain",
                            steps=4, methods="eigencam,layercam")
    assert result[0] is None and result[1] is None and result[2] is None
    report = result[4]
    assert list(report["methods"])[:2] == ["eigencam", "layercam"]
    assert report["settings"]["methods"] == ["eigencam", "layercam"]
    from micam_app.api import API_OVERLAYS_LAST

    filled = {m for m, path in zip(API_OVERLAYS_LAST, result[5:]) if path}
    assert filled == {"eigencam", "layercam"}
