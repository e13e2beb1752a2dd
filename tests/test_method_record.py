"""The method record: keywords, parameters checked like settings, properties instead of string tests."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from micam_core import REGISTRY, SettingError
from micam_core.cost import extra_passes, layer_channels
from micam_core.fields import Param
from micam_core.registry import MapInputs, Method, compute_maps, register


def _scaled(x: MapInputs, gain: float = 1.0, mode: str = "sum") -> tuple[torch.Tensor, None]:
    cam = x.activations.sum(1) if mode == "sum" else x.activations.amax(1)
    return torch.relu(gain * cam), None


TOY = Method(id="toy", label="Toy", class_specific=False, compute=_scaled, reference="-", formula="-",
             params=(Param(name="gain", default=1.0, minimum=0.0, maximum=4.0, help="scale"),
                     Param(name="mode", default="sum", choices=("sum", "max"))),
             passes=lambda channels, gain, mode: 2 * channels)


def test_a_method_is_built_with_keywords_only():
    with pytest.raises(TypeError):
        Method("x", "X", False, _scaled, "-", "-")  # type: ignore[misc]


def test_a_duplicate_id_raises_and_leaves_the_registry_alone():
    before = dict(REGISTRY)
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(REGISTRY["gradcam"], label="Another Grad-CAM"))
    assert before == REGISTRY


@pytest.mark.parametrize("bad", [
    dict(id="Bad-Id"), dict(needs=frozenset({"forward_passes"})),
    dict(params=(Param(name="k", default=3),)),  # a number without bounds
    dict(params=(Param(name="k", default=9, minimum=0, maximum=4),)),  # default outside its range
])
def test_malformed_records_are_refused(bad):
    with pytest.raises(ValueError):
        register(dataclasses.replace(TOY, **bad))
    assert "toy" not in REGISTRY


def test_parameters_are_checked_with_the_settings_sentence():
    assert TOY.param_values() == {"gain": 1.0, "mode": "sum"}
    assert TOY.param_values({"gain": "2.5"}) == {"gain": 2.5, "mode": "sum"}
    with pytest.raises(SettingError, match=r"Toy gain \(toy_gain\) must be a number from 0 to 4; got '9'"):
        TOY.param_values({"gain": "9"})
    with pytest.raises(SettingError, match="one of sum, max"):
        TOY.param_values({"mode": "median"})
    with pytest.raises(SettingError, match="Toy has no parameter strength; it takes gain, mode"):
        TOY.param_values({"strength": 1})
    assert [s.name for s in TOY.settings()] == ["toy_gain", "toy_mode"]


def test_parameters_reach_compute_as_keywords():
    acts = torch.rand(1, 3, 4, 4)
    x = MapInputs(activations=acts, grays=[], targets=[0])
    record = REGISTRY.setdefault("toy", TOY)
    try:
        maps = compute_maps(["toy"], x, {"toy": {"gain": 2, "mode": "max"}})
        torch.testing.assert_close(maps["toy"][0], 2 * acts.amax(1))
        torch.testing.assert_close(compute_maps(["toy"], x)["toy"][0], acts.sum(1))
    finally:
        if REGISTRY.get("toy") is record:
            del REGISTRY["toy"]


def test_records_answer_for_themselves():
    assert REGISTRY["micam"].follows_display and not REGISTRY["gradcam"].follows_display
    assert REGISTRY["micam"].display_mode("paper") == "paper"
    assert REGISTRY["gradcam"].display_mode("paper") == "bilinear"
    assert REGISTRY["scorecam"].extra_passes(320) == 321 and REGISTRY["gradcam"].extra_passes(320) == 0
    assert REGISTRY["scorecam"].extra_passes(None) is None
    assert TOY.extra_passes(5, {"gain": 3}) == 10


def test_cost_asks_the_records(bundled):
    channels = layer_channels(bundled, None)
    assert extra_passes(bundled, None, ["gradcam", "micam"]) == 0
    assert extra_passes(bundled, None, ["gradcam", "scorecam"]) == REGISTRY["scorecam"].extra_passes(channels)
