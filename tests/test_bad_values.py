"""Every bad value of the newer settings (protocols, method parameters) gets a sentence at every entrance.

The link, ``micam explain`` and ``micam evaluate`` each read them through the records; the API and the
MCP tool take no method parameters, but their extra-pass methods meet the cost limit at any layer.
"""

from __future__ import annotations

import base64
import html

import pytest

from conftest import EXAMPLES
from micam_core.cli import main
from micam_core.permalink import example_index, parse_query
from micam_core.settings import SETTINGS

BAD = [("protocol", "nosuch"), ("protocol", "<b>road</b>"), ("sscam_samples", "1000"), ("sscam_samples", "0"),
       ("sscam_samples", "nan"), ("sscam_std", "-1"), ("sscam_seed", "1e20"), ("iscam_samples", "-1"),
       ("smoothgradcampp_samples", "65"), ("refinecam_layers", "9"), ("refinecam_layers", "1"),
       ("finercam_strength", "inf"), ("finercam_comparisons", "11"), ("micambinned_bins", "1"),
       ("steps", "100000"), ("threshold", "nan")]
CAT = EXAMPLES / "chelsea_cat.jpg"


@pytest.mark.parametrize("name, value", BAD)
def test_a_link_refuses_the_value_in_a_sentence_and_keeps_the_default(name, value):
    state, messages = parse_query({"example": "chelsea_cat", name: value}, example_index(EXAMPLES))
    assert len(messages) == 1 and "<b>" not in messages[0], messages
    said = html.unescape(messages[0].replace("\\", ""))  # the message is escaped for Markdown
    assert f"{SETTINGS[name].label} ({name})" in said and "must be" in said, said
    assert state.get(name, SETTINGS[name].default) == SETTINGS[name].default


def test_unknown_link_parameters_such_as_sanity_are_named_not_run():
    state, messages = parse_query({"example": "chelsea_cat", "sanity": "maybe"}, example_index(EXAMPLES))
    assert len(messages) == 1 and "sanity" in messages[0], messages


@pytest.mark.parametrize("name, value", BAD)
def test_micam_explain_refuses_the_value_in_a_sentence(name, value, tmp_path, capsys):
    flag = "--" + name.replace("_", "-")
    assert main(["explain", str(CAT), "--out", str(tmp_path), flag, value]) != 0
    said = capsys.readouterr()
    assert f"{SETTINGS[name].label} ({name})" in said.err and "Traceback" not in said.err + said.out, said
    assert not list(tmp_path.iterdir())  # refused before any model work


@pytest.mark.parametrize("argv, words", [
    (["--protocol", "nosuch"], "Evaluation protocol (protocol) must be one of"),
    (["--sscam-samples", "1000"], "SS-CAM samples (sscam_samples) must be"),
    (["--refinecam-layers", "9"], "RefineCAM layers (refinecam_layers) must be")])
def test_micam_evaluate_refuses_the_value_in_a_sentence(argv, words, tmp_path, capsys):
    assert main(["evaluate", "--images", str(EXAMPLES), "--out", str(tmp_path / "run"), *argv]) != 0
    said = capsys.readouterr()
    assert words in said.err and "Traceback" not in said.err + said.out, said
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").iterdir())


def test_micam_evaluate_sanity_is_a_switch(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--images", str(EXAMPLES), "--out", str(tmp_path / "run"), "--sanity", "maybe"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: maybe" in capsys.readouterr().err


@pytest.mark.parametrize("entrance", ["api", "mcp"])
@pytest.mark.parametrize("method", ["sscam", "iscam", "ablationcam", "scorecam"])
def test_the_api_and_mcp_refuse_an_extra_pass_method_over_the_limit_at_a_deep_layer(entrance, method, monkeypatch):
    """``blocks.1.0.conv_pwl`` (24 channels, two dots: not in the picker) costs SS-CAM 35 x 24 passes."""
    import gradio as gr

    from micam_app import agent, api, work

    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", "20")

    def boom(*_args, **_kwargs):
        raise AssertionError("a request over the limit reached the model")

    monkeypatch.setattr(work, "gpu_explain", boom)
    with pytest.raises(gr.Error) as refused:
        if entrance == "api":
            api.api_explain(str(CAT), layer="blocks.1.0.conv_pwl", methods=method)
        else:
            uri = "data:image/jpeg;base64," + base64.b64encode(CAT.read_bytes()).decode()
            agent.explain(uri, layer="blocks.1.0.conv_pwl", methods=method)
    message = str(refused.value.message)
    assert "extra forward passes" in message and "allows 20 per request" in message, message
