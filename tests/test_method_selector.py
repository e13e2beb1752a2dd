"""The method selector: grouped by family, each method with its cost; methods that cannot run here listed with why."""

from __future__ import annotations

import timm
import torch

from micam_app import views
from micam_app.layout import DISABLE_JS
from micam_core import DEFAULT_METHODS, METHODS, REGISTRY, from_module
from micam_core.registry import FAMILIES

CONFIG = {"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
          "crop_pct": 1.0, "crop_mode": "center"}


def tiny(name: str):
    torch.manual_seed(0)
    return from_module(timm.create_model(name, num_classes=10), spec=name, data_config=CONFIG, device="cpu")


def test_choices_are_grouped_by_family_in_the_families_order():
    choices = views.method_choices()
    assert sorted(m for _, m in choices) == sorted(METHODS)
    families = [REGISTRY[m].group for _, m in choices]
    assert families == sorted(families, key=list(FAMILIES).index)  # one block per family, in FAMILIES order
    assert set(families) == set(FAMILIES)
    for shown, method in choices:
        assert shown.startswith(f"{FAMILIES[REGISTRY[method].group].split(' (')[0]} › {REGISTRY[method].label} · ")
    assert dict((m, s) for s, m in choices)["gradcam"].endswith(" · shared pass")
    assert set(DEFAULT_METHODS) == {"micam", "gradcam", "migradcam"}


def test_costs_and_unavailable_methods_on_a_cnn_and_a_vit(monkeypatch):
    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", "1000")
    cnn, vit = tiny("test_resnet"), tiny("test_vit")
    on_cnn = {m: s for s, m in views.method_choices(cnn, "layer2")}  # 48 channels
    assert on_cnn["refinecam"].endswith(" · shared pass") and on_cnn["smoothgradcampp"].endswith(" · +4 passes")
    assert "+49 passes, ~" in on_cnn["ablationcam"] and views.UNAVAILABLE not in on_cnn["ablationcam"]
    assert views.UNAVAILABLE + "it reads the attention maps" in on_cnn["legrad"]  # listed, with the reason
    assert views.UNAVAILABLE + "1680 forward passes on this layer, over this server's limit of 1000" in on_cnn["sscam"]
    assert views.runnable(cnn, "layer2", ["micam", "legrad", "sscam", "ablationcam"]) == ["micam", "ablationcam"]
    on_vit = {m: s for s, m in views.method_choices(vit, None)}
    assert views.UNAVAILABLE not in on_vit["legrad"]
    first = cnn.layers[-1].name
    assert "shallower" in {m: s for s, m in views.method_choices(cnn, first)}["refinecam"]


def test_the_page_greys_out_what_the_labels_mark():
    assert repr(views.UNAVAILABLE) in DISABLE_JS and "disabled" in DISABLE_JS and "#methods label" in DISABLE_JS
