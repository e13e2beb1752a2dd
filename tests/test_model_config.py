"""What a model's config may ask for: bounded before building, for Hub (stub: test_hub.py), local and cached models.

Round 3: crop_pct 0.01 took 2.5 GB for one explanation and 1e-9 an OverflowError; an input of
2048 x 2048 took 5.9 GB and 385 s. Every field is tried at its bounds and just outside them.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import timm
import torch

from conftest import add_to_hub_cache
from micam_core import ModelLoadError, load_model, policy
from micam_core.model_config import check_config

LO, HI = policy.INPUT_SIDE
C_LO, C_HI = policy.CROP_PCT
S_LO, S_HI = policy.STD_RANGE


def cfg(**pretrained) -> dict:
    return {"architecture": "resnet10t", "num_classes": 10, "pretrained_cfg": pretrained}


@pytest.mark.parametrize("config", [
    cfg(input_size=[3, LO, LO]), cfg(input_size=[3, HI, HI]), cfg(input_size=(3, HI, LO)),
    cfg(crop_pct=C_LO), cfg(crop_pct=C_HI), cfg(crop_pct=0.875),
    cfg(mean=[0, 0, 0], std=[S_LO, S_LO, S_LO]), cfg(mean=[1, 1, 1], std=[S_HI, 1, 1]),
    cfg(label_names=["x" * policy.MAX_LABEL_CHARS] * 10), {"architecture": "resnet10t", "num_classes": 0},
    {"architecture": "resnet10t", "num_classes": policy.MAX_CLASSES},
    {"architecture": "resnet10t", "input_size": [3, 224, 224], "crop_pct": 0.9},  # legacy single-dict form
])
def test_configs_at_the_bounds_are_accepted(config):
    check_config(config, "org/model")


@pytest.mark.parametrize("config, words", [
    (cfg(input_size=[3, LO - 1, LO]), f"input_size = [3, {LO - 1}, {LO}]; this server allows [3, H, W]"),
    (cfg(input_size=[3, HI + 1, HI]), f"from {LO} to {HI} px"),
    (cfg(input_size=[3, 2048, 2048]), "input_size"),
    (cfg(input_size=[1, 224, 224]), "3 channels (RGB)"),
    (cfg(input_size=[3, 224.5, 224]), "input_size"),
    (cfg(input_size="big"), "input_size"),
    (cfg(test_input_size=[3, 4096, 4096]), "test_input_size"),
    ({**cfg(), "model_args": {"img_size": 4096}}, "model_args.img_size"),
    (cfg(crop_pct=C_LO - 0.01), f"crop_pct = {C_LO - 0.01}; this server allows a number from {C_LO:g} to {C_HI:g}"),
    (cfg(crop_pct=C_HI + 0.01), "crop_pct"), (cfg(crop_pct=1e-9), "crop_pct = 1e-09"),
    (cfg(crop_pct=math.inf), "crop_pct = inf"), (cfg(crop_pct="0.9"), "crop_pct"),
    (cfg(mean=[math.nan, 0.5, 0.5]), "mean = [nan, 0.5, 0.5]; this server allows three finite numbers"),
    (cfg(mean=[-0.1, 0.5, 0.5]), "mean"), (cfg(mean=[0.5, 0.5]), "mean"),
    (cfg(std=[0, 0.2, 0.2]), "std = [0, 0.2, 0.2]"), (cfg(std=[S_LO / 2, 1, 1]), "std"),
    (cfg(std=[1e-300, 1, 1]), "std"), (cfg(std=[S_HI * 2, 1, 1]), "std"),
    (cfg(interpolation="<script>"), "interpolation"), (cfg(crop_mode="zoom"), "crop_mode"),
    ({"architecture": "resnet10t", "num_classes": policy.MAX_CLASSES + 1}, "num_classes"),
    ({"architecture": "resnet10t", "num_classes": -1}, "num_classes"),
    (cfg(label_names=["x" * (policy.MAX_LABEL_CHARS + 1)]), f"{policy.MAX_LABEL_CHARS + 1} characters"),
    (cfg(label_descriptions={"0": "y" * 10_000}), "label_descriptions"),
    (cfg(label_names="cat"), "label_names"),
])
def test_configs_outside_the_bounds_are_refused_naming_the_field(config, words):
    with pytest.raises(ModelLoadError) as err:
        check_config(config, "org/model")
    assert words in str(err.value) and str(err.value).startswith("org/model: its config gives ")


def _never_built(monkeypatch):
    from micam_core import sources

    def boom(*_a, **_k):
        raise AssertionError("a refused config must not be built")

    monkeypatch.setattr(sources, "_timm_pretrained", boom)
    monkeypatch.setattr(sources, "_check_built_size", boom)


def _save(folder, **pretrained):
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=3)
    model.pretrained_cfg = {**model.pretrained_cfg, **pretrained}
    save_for_hf(model, str(folder), safe_serialization=True)
    if "label_names" in pretrained:  # save_for_hf keeps label names only as its own argument
        config = json.loads((folder / "config.json").read_text())
        config["label_names"] = pretrained["label_names"]
        (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("field, value", [("crop_pct", 0.01), ("input_size", (3, 2048, 2048)),
                                          ("std", (0.0, 0.2, 0.2))])
def test_local_and_cached_models_are_refused_before_building(tmp_path, monkeypatch, field, value):
    folder = _save(tmp_path / "m", **{field: value})
    repo = add_to_hub_cache(f"micam-test/bad-{field.replace('_', '-')}",
                            files={p.name: p.read_bytes() for p in folder.iterdir()})
    _never_built(monkeypatch)
    for spec in (f"local-dir:{folder}", f"hf-hub:{repo}"):
        start = time.perf_counter()
        with pytest.raises(ModelLoadError, match=field):
            load_model(spec, device="cpu")
        assert time.perf_counter() - start < 2.0


def test_a_model_at_the_bounds_loads_and_its_label_names_are_plain(tmp_path, cat_path):
    names = ["$\\frac{a}{b}$", "=cmd|' /C calc'!A0", "tab\there\x07bell"]
    folder = _save(tmp_path / "m", input_size=(3, LO, LO), crop_pct=C_LO, label_names=names)
    config = json.loads((folder / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, LO, LO]
    loaded = load_model(f"local-dir:{folder}", device="cpu")
    assert loaded.input_size == (LO, LO) and loaded.data_config["crop_pct"] == C_LO
    assert loaded.class_names == ["$\\frac{a}{b}$", "=cmd|' /C calc'!A0", "tabherebell"]  # control characters dropped


def test_a_built_model_whose_data_config_is_out_of_bounds_is_refused(monkeypatch):
    from micam_core import models

    model = timm.create_model("resnet10t", num_classes=3)
    model.pretrained_cfg = {**model.pretrained_cfg, "crop_pct": 0.01}
    with pytest.raises(ModelLoadError, match="crop_pct"):
        models._wrap(model, "resnet10t", None, "cpu", 2**30)
