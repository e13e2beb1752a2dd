"""Permalinks (unit tests of micam_core.permalink): round trips, hostile parameters refused with escaped messages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from micam_core import DEFAULT_METHODS
from micam_core.permalink import DEFAULTS, PARAMS, build_query, echo, example_index, parse_query, permalink

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = example_index(ROOT / "examples")
METHODS = DEFAULT_METHODS


def parse(query: str | dict, **kwargs):
    pairs = dict(parse_qsl(query, keep_blank_values=True)) if isinstance(query, str) else query
    return parse_query(pairs, EXAMPLES, **kwargs)


def test_example_index_lists_stems_of_images_only():
    assert {"chelsea_cat", "coffee", "astronaut", "rocket"} <= set(EXAMPLES)
    assert "LICENSES" not in EXAMPLES
    assert EXAMPLES["chelsea_cat"] == ROOT / "examples" / "chelsea_cat.jpg"


def test_round_trip_every_parameter():
    state = {"model": "hf-hub:timm/resnet50.a1_in1k", "example": "chelsea_cat", "layer": "layer4.2",
             "target": "Egyptian cat", "methods": ("gradcam", "micam"), "upsampling": "bilinear",
             "protocol": "paper", "threshold": 0.35, "fill": "blur", "steps": 16, "cmap": "viridis",
             "opacity": 0.7}
    query = build_query(state)
    assert [k for k, _ in parse_qsl(query)] == list(PARAMS)
    parsed, messages = parse(query)
    assert messages == []
    assert {k: parsed[k] for k in PARAMS} == state
    assert parsed["example_path"] == EXAMPLES["chelsea_cat"]


def test_round_trip_target_index_and_defaults():
    parsed, messages = parse(build_query({"target": 285, "example": "coffee"}))
    assert messages == []
    assert parsed["target"] == 285
    assert parsed["model"] == DEFAULTS["model"] and parsed["steps"] == 32 and parsed["methods"] == METHODS


def test_a_protocol_in_a_link_brings_its_own_settings():
    parsed, messages = parse("example=chelsea_cat&protocol=paper&threshold=0.3")
    assert messages == [] and parsed["protocol"] == "paper"
    assert (parsed["steps"], parsed["fill"], parsed["threshold"]) == (100, "black", 0.3)


def test_empty_query_gives_defaults():
    parsed, messages = parse({})
    assert messages == [] and parsed["example_path"] is None
    assert {k: parsed[k] for k in PARAMS} == {**DEFAULTS, "methods": METHODS}


def test_permalink_replaces_existing_query():
    url = permalink("https://hf.space/app/?old=1#frag", {"example": "rocket", "steps": 8})
    parts = urlsplit(url)
    assert parts.path == "/app/" and dict(parse_qsl(parts.query)) == {"example": "rocket", "steps": "8"}


def test_example_lookup_is_exact_stem_only():
    for hostile in ("../app", "../../etc/passwd", "chelsea_cat.jpg", "/etc/passwd", "CHELSEA_CAT", "examples/coffee",
                    "chelsea_cat\x00", "..", "."):
        parsed, messages = parse({"example": hostile})
        assert parsed["example"] is None and parsed["example_path"] is None, hostile
        assert len(messages) == 1 and "must be the name of an example" in messages[0], hostile


@pytest.mark.parametrize("key, value", [
    ("threshold", "nan"), ("threshold", "NaN"), ("threshold", "inf"), ("threshold", "-inf"),
    ("threshold", "1e308"), ("threshold", "-0.1"), ("threshold", "1.5"), ("threshold", "0x10"),
    ("opacity", "1e309"), ("opacity", "-1"), ("steps", "1e308"), ("steps", "-8"), ("steps", "1"),
    ("steps", "101"), ("steps", "8.5"), ("steps", "9" * 5000), ("steps", "nan"),
])
def test_absurd_numbers_are_refused(key, value):
    parsed, messages = parse({key: value})
    assert parsed[key] == DEFAULTS[key]
    assert len(messages) == 1 and f"\\({key}\\) must be" in messages[0]


def test_choices_and_methods():
    parsed, messages = parse({"fill": "lava", "cmap": "<b>", "upsampling": "cubic", "methods": "micam,evil"})
    fill = "Ignored: Fill of masked pixels \\(fill\\) must be one of black, blur, mean; got &#x27;lava&#x27;."
    assert fill in messages
    assert (parsed["fill"], parsed["cmap"], parsed["upsampling"]) == ("black", "jet", "paper")
    assert parsed["methods"] == METHODS
    assert len(messages) == 4
    assert "&lt;b&gt;" in " ".join(messages) and "<b>" not in " ".join(messages)
    parsed, messages = parse({"methods": "migradcam,,micam,micam"})
    assert messages == [] and parsed["methods"] == ("migradcam", "micam")


def test_link_messages_are_the_sentences_of_every_other_entrance():
    from micam_core.view import parse as parse_view

    _, direct = parse_view({"threshold": "2"})
    _, linked = parse({"threshold": "2"})
    assert direct == ["Region threshold (map >= threshold) (threshold) must be a number from 0 to 1; got '2'."]
    assert linked == [f"Ignored: {echo(direct[0], 300)}"]


def test_script_in_class_name_is_refused_and_escaped():
    parsed, messages = parse({"target": "<script>alert(1)</script>"})
    assert parsed["target"] is None
    assert len(messages) == 1
    assert "<script>" not in messages[0] and "&lt;script&gt;" in messages[0]


@pytest.mark.parametrize("name", ["Egyptian cat", "jack-o'-lantern", "potter's wheel", "Granny Smith", "crème brûlée"])
def test_real_class_names_pass(name):
    parsed, messages = parse({"target": name})
    assert messages == [] and parsed["target"] == name


def test_models_and_layers():
    parsed, messages = parse({"model": "timm/convnext_tiny.fb_in1k", "layer": "stages.3"})
    assert messages == [] and parsed["model"] == "hf-hub:timm/convnext_tiny.fb_in1k" and parsed["layer"] == "stages.3"
    for hostile in ("local-dir:/etc", "../../x/y", "<img src=x onerror=alert(1)>", "bundled:../x"):
        parsed, messages = parse({"model": hostile})
        assert parsed["model"] == DEFAULTS["model"] and len(messages) == 1, hostile
        assert "<img" not in messages[0]
    parsed, messages = parse({"layer": "layer4;rm -rf /"})
    assert parsed["layer"] is None and len(messages) == 1


def test_overlong_values_are_capped_in_messages():
    parsed, messages = parse({"target": "A" * 250, "example": "B" * 5000, "Z" * 1000: "1"})
    assert parsed["target"] is None and parsed["example"] is None
    assert len(messages) == 3
    for message in messages:
        assert len(message) < 400, message


def test_unknown_parameters_and_many_messages():
    parsed, messages = parse({f"p{i}": "1" for i in range(100)})
    assert len(messages) == 21 and "more refused" in messages[-1]


def test_list_values_take_the_first():
    parsed, messages = parse({"steps": ["8", "16"], "fill": []})
    assert messages == [] and parsed["steps"] == 8 and parsed["fill"] == "black"


def test_echo_escapes_markup_and_control_characters():
    assert echo("<a href='x'>") == "&lt;a href=&#x27;x&#x27;&gt;"
    assert "\n" not in echo("a\nb\x1b[31m")
    assert echo("[link](javascript:x)").startswith("\\[link\\]\\(")
    assert len(echo("x" * 1000)) == 83


def test_default_methods_come_from_the_registry():
    from micam_core import METHODS as REGISTERED

    parsed, messages = parse_query({"methods": ",".join(REGISTERED[::-1])}, EXAMPLES)
    assert messages == [] and parsed["methods"] == REGISTERED[::-1]
    parsed, messages = parse_query({"methods": "micam,nonesuch"}, EXAMPLES)
    assert len(messages) == 1 and "nonesuch" in messages[0]
