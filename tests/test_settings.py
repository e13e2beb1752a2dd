"""The settings record: one validation, a sentence naming the setting for every bad value."""

from __future__ import annotations

import math

import pytest

from micam_core import DEFAULTS, METHODS, SETTINGS, SettingError, validate, validate_all
from micam_core.cli import build_parser


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
    from micam_core.flags import view_of

    parser = build_parser()
    assert view_of(parser.parse_args(["explain", "x.png"])).settings == DEFAULTS
    every = [f"--{name.replace('_', '-')}" for name in SETTINGS]
    assert all(flag in parser.format_help() or flag in _explain_help(parser) for flag in every)
    args = parser.parse_args(["explain", "x.png", "--steps", "8", "--alpha", "0.3"])
    assert (view_of(args).steps, view_of(args).opacity) == (8, 0.3)


def _explain_help(parser) -> str:
    return next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["explain"].format_help()
