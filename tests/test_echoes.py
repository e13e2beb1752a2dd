"""User text quoted back in an error is capped; Hub ids and revisions are checked strictly.

Through the running app's ``explain`` endpoint (gradio_client) and, for the helpers, directly.
"""

from __future__ import annotations

import pytest
from gradio_client import handle_file

from conftest import EXAMPLES
from micam_core.errors import ECHO_LIMIT, shorten

CAT = EXAMPLES / "chelsea_cat.jpg"
MAX_MESSAGE = 400  # a sentence around at most ECHO_LIMIT characters of echoed text


def message_of(client, model: str = "bundled:efficientnet_lite0", **kwargs) -> str:
    kwargs.setdefault("steps", 2)
    with pytest.raises(Exception) as excinfo:
        client.predict(handle_file(str(CAT)), model, api_name="/explain", **kwargs)
    return str(excinfo.value)


def test_shorten():
    assert shorten("resnet50") == "resnet50"
    cut = shorten("x" * 200_000)
    assert len(cut) == ECHO_LIMIT and cut.endswith("…")


@pytest.mark.parametrize("spec", ["x" * 200_000, "org/" + "n" * 5000, "hf-hub:org/name@" + "r" * 5000,
                                  "local-dir:/" + "d" * 5000, "a b " * 2000])
@pytest.mark.slow
def test_long_model_specs_are_not_echoed_whole(client, spec):
    message = message_of(client, spec)
    assert len(message) < MAX_MESSAGE, message[:500]
    assert "…" in message


@pytest.mark.parametrize("options,words", [({"target": "q" * 5000}, "not one of this model's class names"),
                                           ({"target": "9" * 5000}, "out of range"),
                                           ({"layer": "blocks." * 1000}, "no layer named")])
def test_long_targets_and_layers_are_not_echoed_whole(client, options, words):
    message = message_of(client, **options)
    assert words in message and len(message) < MAX_MESSAGE, message[:500]


@pytest.mark.parametrize("spec", ["hf-hub:org/name@../../x", "org/name@/etc", "org/name@a/../../b", "org/name@",
                                  "org/name@main;rm", "org/..", "../org/name", "org/name--x", "org/name@v1..2"])
def test_bad_ids_and_revisions_are_refused(spec):
    from micam_core import ModelLoadError
    from micam_core.models import normalize_spec

    with pytest.raises(ModelLoadError, match="not a valid"):
        normalize_spec(spec)


@pytest.mark.parametrize("spec", ["timm/resnet50.a1_in1k", "hf-hub:org/name@main", "org/name@v1.0",
                                  "org/name@refs/pr/1", "org/name@0123456789abcdef0123456789abcdef01234567",
                                  "org/_private-ish.name"])
def test_good_ids_and_revisions_pass(spec):
    from micam_core.models import normalize_spec

    assert normalize_spec(spec).startswith("hf-hub:")
