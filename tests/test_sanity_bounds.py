"""Sanity checks at bounded cost: the explanation's own method parameters, small masked batches, copies counted.

Round 3 measured the checks with Score-CAM at blocks.2 of the bundled model at +626 MB over steady (the
bound is 600 MB; bench/memory.py --work-cases), a private copy of each checked model kept after the run
(+164 MB for resnet50, outside the model cache's byte budget), and maps computed with each method's default
parameters whatever the explanation had used.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from micam_core import ModelCache, explain, from_module, randomise, sanity_checks
from micam_core.models import companion_bytes, model_bytes
from micam_core.sanity import SANITY_CHUNK, plan, random_logit_check, randomisation_check


class _Net(nn.Sequential):
    """A small CNN (timm cannot rebuild it: its fresh weights come from reset_parameters); 20 channels at "2"."""


@pytest.fixture(scope="module")
def tiny():
    return _tiny_loader("tiny")


def _tiny_loader(spec: str, **_) -> object:
    torch.manual_seed(len(spec))
    net = _Net(nn.Conv2d(3, 12, 8, stride=8), nn.ReLU(), nn.Conv2d(12, 20, 3, padding=1), nn.ReLU(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(20, 6))
    return from_module(net, spec=spec, class_names=[f"c{i}" for i in range(6)], device="cpu",
                       data_config={"input_size": (3, 64, 64), "interpolation": "bilinear", "crop_pct": 1.0,
                                    "crop_mode": "center", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)})


def test_the_checks_copies_count_in_the_model_cache_budget_and_go_with_the_model(cat_path):
    size = model_bytes(_tiny_loader("a").model)
    cache = ModelCache(max_models=3, max_bytes=int(2.5 * size), loader=_tiny_loader)
    a, _ = cache.get("a"), cache.get("b")
    assert cache.total_bytes() == 2 * size and companion_bytes(a.model) == 0
    sanity_checks(a, explain(a, cat_path, layer="2", methods=("gradcam",)), depth=2)
    fresh = sum(t.numel() * t.element_size() for t in randomise._fresh_cache[a.model][0].values())
    assert fresh > 0 and companion_bytes(a.model) == size + fresh  # the private copy and the fresh weights
    assert cache.total_bytes() == 3 * size + fresh > cache.max_bytes
    assert cache.get("a") is a and cache.specs() == ["a"]  # over the budget: b goes, not the model in use
    copy_ref, model_ref = weakref.ref(randomise._work_cache[a.model].model), weakref.ref(a.model)
    cache.clear()
    del a
    gc.collect()
    assert model_ref() is None and copy_ref() is None  # evicted: the copy goes with the model


def test_sanity_maps_use_the_explanations_parameters(tiny, cat_path):
    """SS-CAM with 2 samples: the checks' maps and costs use 2, not the record's default of 35."""
    params = {"sscam": {"samples": 2, "std": 0.5, "seed": 3}}
    exp = explain(tiny, cat_path, layer="2", methods=("sscam",), params=params)
    assert exp.params == params
    logit = random_logit_check(tiny, exp, baselines=False)
    same = explain(tiny, cat_path, layer="2", target=logit.other, methods=("sscam",), params=params)
    default = explain(tiny, cat_path, layer="2", target=logit.other, methods=("sscam",))
    assert np.abs(default.maps["sscam"] - same.maps["sscam"]).max() > 1e-3  # the parameters matter here
    assert np.abs(logit.maps["sscam"] - same.maps["sscam"]).max() <= 1e-5
    steps = plan(tiny, exp)
    assert steps.extra_passes == (len(steps.units) + 1) * 2 * 20  # samples x channels, per pass of the checks


def test_sanity_maps_use_a_single_pass_methods_parameter(bundled, cat_path):
    """MI CAM (binned) with 4 bins: once only the classifier is random, its map is the explanation's own."""
    exp = explain(bundled, cat_path, methods=("micambinned",), params={"micambinned": {"bins": 4}})
    default = explain(bundled, cat_path, methods=("micambinned",))
    assert np.abs(default.maps["micambinned"] - exp.maps["micambinned"]).max() > 1e-3
    result = randomisation_check(bundled, exp, depth=1, baselines=False)  # step 1: the head, not the layer
    assert np.abs(result.maps["micambinned"][0] - exp.maps["micambinned"]).max() <= 1e-5
    logit = random_logit_check(bundled, exp, baselines=False)  # class-agnostic: the identical map
    assert logit.identical("micambinned")


def test_masked_passes_run_in_small_batches_under_the_checks(tiny, cat_path):
    sizes: list[int] = []
    handle = tiny.model.register_forward_pre_hook(lambda _, args: sizes.append(args[0].shape[0]))
    try:
        exp = explain(tiny, cat_path, layer="2", methods=("scorecam",))
        alone = max(sizes)
        sizes.clear()
        checks = sanity_checks(tiny, exp, baselines=False)  # the hook travels with the copies
    finally:
        handle.remove()
    assert alone == 20  # the explanation: every channel of the layer in one batch
    assert max(sizes) == SANITY_CHUNK < alone
    other = explain(tiny, cat_path, layer="2", target=checks.random_logit.other, methods=("scorecam",))
    assert np.abs(checks.random_logit.maps["scorecam"] - other.maps["scorecam"]).max() <= 1e-5  # same values
