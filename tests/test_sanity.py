"""Sanity checks: cascading randomisation against pytorch-grad-cam on randomised copies, random logit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from test_registry import normalised, reference_map
from torch import nn

from micam_core import explain, from_module, randomised_copy, sanity_checks
from micam_core.errors import MicamError
from micam_core.randomise import target_step, units
from micam_core.sanity import UNCHANGED, random_class, random_logit_check, randomisation_check
from micam_core.similarity import similarity


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_similarity_matches_scipy_and_scikit_image():
    rng = np.random.default_rng(0)
    a = np.clip(rng.random((40, 50)) - 0.3, 0, 1)  # many ties at zero, as ReLU'd maps have
    b = np.clip(0.5 * a + 0.5 * rng.random((40, 50)) - 0.2, 0, 1)
    sim = similarity(a, b)
    assert sim.spearman == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-9)
    assert sim.ssim == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-9)
    assert math.isnan(similarity(a, np.zeros_like(a)).spearman)  # a constant map has no ranks
    assert similarity(a, a).spearman == pytest.approx(1.0) and similarity(a, a).ssim == pytest.approx(1.0)


def test_units_go_from_the_head_down_and_find_the_target_layer(bundled, resnet18_random):
    names = [u.name for u in units(bundled.model)]
    assert names[:3] == ["classifier", "conv_head + bn2", "blocks.6"] and names[-1] == "conv_stem + bn1"
    assert target_step(units(bundled.model), "bn2") == 2
    assert target_step(units(bundled.model), "blocks.6.0.conv_pwl") == 3
    res = units(resnet18_random.model)
    assert [u.name for u in res][:3] == ["fc", "layer4.1", "layer4.0"]
    assert target_step(res, "layer4") == 3  # every unit inside the layer is randomised at step 3


def test_randomised_copy_changes_exactly_the_top_units_and_never_the_original(bundled, cat_path):
    before = _state(bundled.model)
    same = randomised_copy(bundled, 0)
    assert same.model is not bundled.model and not _changed(before, _state(same.model))
    x = bundled.to_input([bundled.crop(Image.open(cat_path))])
    with torch.no_grad():
        assert torch.equal(same.model(x), bundled.model(x))
    copy2 = randomised_copy(bundled, 2, seed=0)
    changed = _changed(before, _state(copy2.model))
    assert {k.split(".")[0] for k in changed} == {"classifier", "conv_head", "bn2"}
    assert not _changed(_state(copy2.model), _state(randomised_copy(bundled, 2, seed=0).model))  # seeded
    assert _changed(_state(copy2.model), _state(randomised_copy(bundled, 2, seed=1).model))
    # timm's own initialisation of EfficientNet's classifier: uniform within 1/sqrt(fan_out), wider than
    # PyTorch's default 1/sqrt(fan_in); BatchNorm re-initialised to weight 1, bias 0, running var 1.
    w = copy2.model.classifier.weight.detach()
    assert 0.03 < float(w.abs().max()) <= 1 / math.sqrt(w.shape[0])
    assert torch.equal(copy2.model.bn2.running_var, torch.ones_like(copy2.model.bn2.running_var))
    randomisation_check(bundled, explain(bundled, cat_path, methods=("gradcam",)), depth=4)
    assert not _changed(before, _state(bundled.model))
    assert all(not m._forward_hooks for m in bundled.model.modules())
    with pytest.raises(MicamError, match="whole number from 0 to 10"):
        randomised_copy(bundled, 11)


def test_cascade_maps_equal_pytorch_grad_cam_on_each_randomised_copy(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=("micam", "gradcam"))
    result = randomisation_check(bundled, exp, depth=3)
    assert result.target_step == 2 and result.depth == 3
    for step in range(1, 4):
        copy = randomised_copy(bundled, step)
        ref = reference_map(GradCAM, copy, exp.crop, exp.layer, exp.target)
        assert np.abs(normalised(result.maps["gradcam"][step - 1]) - ref).max() <= 1e-4
        # MI CAM recomputed from scratch on the copy (no reused mutual information) gives the same map.
        fresh = explain(copy, cat_path, target=exp.target, methods=("micam",))
        assert np.abs(fresh.maps["micam"] - result.maps["micam"][step - 1]).max() <= 1e-5
        sim = similarity(exp.maps["gradcam"], result.maps["gradcam"][step - 1])
        assert result.similarity["gradcam"][step - 1] == sim
    # MI CAM ignores the classifier (step 1), Grad-CAM does not; both change once bn2 is random.
    assert result.similarity["micam"][0].spearman == pytest.approx(1.0)
    assert result.similarity["gradcam"][0].spearman < UNCHANGED
    assert result.passed("micam") and result.passed("gradcam")
    assert "passes" in result.verdict("gradcam") and "conv_head + bn2" in result.verdict("gradcam")
    assert result.passed("random") is False and "ignores the model" in result.verdict("random")


def test_the_verdict_fails_a_map_that_stays_as_it_was(resnet18_random, cat_path):
    exp = explain(resnet18_random, cat_path, layer="layer4", methods=("gradcam",))
    result = randomisation_check(resnet18_random, exp, depth=1)  # only fc: layer4 is not yet random
    assert result.target_step == 3 and result.depth == 1
    # Pretend the method ignored the model: its original map equal to a model-free baseline.
    result.similarity["gradcam"] = result.similarity["centre"]
    assert result.passed("gradcam") is False and "fails" in result.verdict("gradcam")


def test_fallback_initialisation_for_a_module_timm_cannot_rebuild(cat_path):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    loaded = from_module(net, class_names=[f"c{i}" for i in range(5)], device="cpu")
    assert [u.name for u in units(net)] == ["6", "2", "0"]
    before = _state(net)
    copy = randomised_copy(loaded, 2, seed=3)
    assert {k.split(".")[0] for k in _changed(before, _state(copy.model))} == {"6", "2"}
    assert not _changed(before, _state(net))
    checks = sanity_checks(loaded, explain(loaded, cat_path, layer="2", methods=("gradcam", "micam")))
    assert checks.randomisation.depth == 2 and set(checks.to_report()) == {"cascading_randomisation", "random_logit"}


def test_random_logit_class_agnostic_maps_are_identical_by_computation(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=("micam", "gradcam", "eigencam"))
    result = random_logit_check(bundled, exp, seed=0)
    assert result.other == random_class(1000, exp.target, 0) != exp.target
    other = explain(bundled, cat_path, target=result.other, methods=("gradcam",))
    assert np.abs(other.maps["gradcam"] - result.maps["gradcam"]).max() <= 1e-5
    for name in ("micam", "eigencam", "random", "centre"):
        assert result.identical(name) and "identical" in result.verdict(name)
    assert "by construction" in result.verdict("micam")
    assert result.similarity["gradcam"].spearman < UNCHANGED and "depends on the class" in result.verdict("gradcam")


def test_random_class_is_seeded_and_never_the_target():
    draws = {random_class(5, 2, seed) for seed in range(50)}
    assert draws == {0, 1, 3, 4}
    assert random_class(1000, 7, 3) == random_class(1000, 7, 3)
