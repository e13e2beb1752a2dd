"""The settings record: one validation, a sentence naming the setting for every bad value."""

from __future__ import annotations

import math

import pytest

from micam_core import DEFAULTS, METHODS, SETTINGS, SettingError, validate, validate_all
from micam_core.cli import build_parser
from micam_core.protocols import get_protocol


@pytest.mark.parametrize("name,value", [
    ("steps", "abc"), ("steps", math.nan), ("steps", math.inf), ("steps", 0), ("steps", 1), ("steps", 101),
    ("steps", 8.5), ("steps", True), ("steps", "1e308"), ("opacity", "abc"), ("opacity", math.nan),
    ("opacity", -5), ("opacity", math.inf), ("threshold", "abc"), ("threshold", 3.0), ("threshold", [0.5]),
    ("fill", "pink"), ("cmap", "<script>"), ("upsampling", "nearest"), ("methods", "micam,nope"),
    ("methods", ","), ("methods", 5),
])
def test_bad_values_get_a_sentence_naming_the_setting(name, value):
    with pytest.raises(SettingError) as excinfo:
        validate(name, value)
    message = str(excinfo.value)
    assert f"({name})" in message and SETTINGS[name].label in message
    assert message.endswith(".") and len(message) < 400


def test_long_values_are_not_echoed_whole():
    with pytest.raises(SettingError) as excinfo:
        validate("fill", "x" * 200_000)
    assert len(str(excinfo.value)) < 300


@pytest.mark.parametrize("name,value,expected", [
    ("steps", "8", 8), ("steps", 64.0, 64), ("opacity", " 0.25 ", 0.25), ("threshold", 0, 0.0),
    ("methods", "gradcam, micam,gradcam", ("gradcam", "micam")), ("methods", ["eigencam"], ("eigencam",)),
    ("fill", None, "black"), ("steps", "", 32),
])
def test_good_values_are_parsed(name, value, expected):
    assert validate(name, value) == expected


def test_defaults_are_valid_and_complete():
    assert validate_all({}) == DEFAULTS
    assert set(SETTINGS["methods"].choices) == set(METHODS)
    with pytest.raises(SettingError, match="Unknown setting"):
        validate_all({"colour": "red"})


def test_command_line_reads_the_same_record():
    args = build_parser().parse_args(["explain", "x.png"])
    assert args.steps is None and args.fill is None  # the protocol's own unless given
    protocol = get_protocol(args.protocol)
    assert args.protocol == DEFAULTS["protocol"]
    assert (protocol.steps, protocol.fill, protocol.threshold) == (DEFAULTS["steps"], DEFAULTS["fill"],
                                                                   DEFAULTS["threshold"])
    assert args.methods == ",".join(DEFAULTS["methods"])
