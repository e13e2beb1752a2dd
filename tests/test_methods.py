"""MI CAM, MI-Grad-CAM and Grad-CAM: oracles, target (in)dependence, batching, predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from micam_core import TargetError, explain, mutual_information
from micam_core.layers import get_module
from micam_core.methods import minmax


def pytorch_grad_cam_map(loaded, crop, layer: str, target: int) -> np.ndarray:
    x = loaded.to_input([crop]).contiguous()
    with GradCAM(model=loaded.model, target_layers=[get_module(loaded.model, layer)]) as cam:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    return minmax(torch.from_numpy(out)).numpy()


@pytest.mark.parametrize("fixture,layer,target", [
    ("bundled", None, None), ("bundled", "blocks.5", 281), ("resnet18_random", None, 7),
    ("resnet18_random", "layer3", 999),
])
def test_gradcam_matches_pytorch_grad_cam(request, cat_path, fixture, layer, target):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, target=target, layer=layer)
    ref = pytorch_grad_cam_map(loaded, exp.crop, exp.layer, exp.target)
    ours = minmax(torch.from_numpy(exp.maps["gradcam"])).numpy()
    assert np.abs(ours - ref).max() <= 1e-4


def independent_gradients(loaded, crop, layer: str, target: int):
    """Plain full autograd (no tricks): activations, d logit / dA and d softmax / dA."""
    store = {}
    handle = get_module(loaded.model, layer).register_forward_hook(
        lambda m, i, o: store.__setitem__("a", o) or o.retain_grad())
    try:
        x = loaded.to_input([crop])
        logits = loaded.model(x)
        acts = store["a"]
        g_logit = torch.autograd.grad(logits[0, target], acts, retain_graph=True)[0]
        g_prob = torch.autograd.grad(torch.softmax(logits, 1)[0, target], acts)[0]
    finally:
        handle.remove()
        loaded.model.zero_grad(set_to_none=True)
    return acts.detach()[0], g_logit[0], g_prob[0]


def test_weights_follow_the_definitions(bundled, cat_path):
    exp = explain(bundled, cat_path, target=285)
    acts, g_logit, g_prob = independent_gradients(bundled, exp.crop, exp.layer, 285)
    mi = mutual_information(np.array(exp.crop.convert("L")), acts.numpy())
    np.testing.assert_allclose(exp.weights["micam"], mi, rtol=1e-6)
    np.testing.assert_allclose(exp.weights["gradcam"], g_logit.mean((1, 2)).numpy(), rtol=1e-4, atol=1e-7)
    expected = g_prob.mean((1, 2)).numpy() * mi / mi.sum()
    np.testing.assert_allclose(exp.weights["migradcam"], expected, rtol=1e-4, atol=1e-9)


def test_micam_ignores_the_target_and_the_others_do_not(bundled, cat_path):
    a = explain(bundled, cat_path, target="tabby")
    b = explain(bundled, cat_path, target=967)  # espresso
    assert a.target == 281 and b.target == 967
    np.testing.assert_array_equal(a.maps["micam"], b.maps["micam"])
    np.testing.assert_array_equal(a.weights["micam"], b.weights["micam"])
    for method in ("gradcam", "migradcam"):
        assert np.abs(a.maps[method] - b.maps[method]).max() > 0.05, method


def test_maps_are_normalised_float32_at_input_size(bundled, coffee_path):
    exp = explain(bundled, coffee_path)
    assert exp.crop.size == (224, 224)
    assert exp.target == exp.predicted
    for saliency in exp.maps.values():
        assert saliency.dtype == np.float32 and saliency.shape == (224, 224)
        assert saliency.min() == 0.0 and saliency.max() == 1.0
    assert exp.weights["micam"].shape == (1280,)
    assert abs(float(exp.probs.sum()) - 1.0) < 1e-5


def test_batch_gives_the_same_as_one_by_one(bundled, cat_path, coffee_path):
    batch = explain(bundled, [cat_path, coffee_path], target=[None, "cup"])
    singles = [explain(bundled, cat_path), explain(bundled, coffee_path, target="cup")]
    assert [e.target for e in batch] == [singles[0].target, 968]
    for got, want in zip(batch, singles):
        for method in got.maps:
            np.testing.assert_allclose(got.maps[method], want.maps[method], atol=1e-4)
            np.testing.assert_allclose(got.weights[method], want.weights[method], rtol=1e-3, atol=1e-8)


def test_upsampling_modes(bundled, cat_path):
    paper = explain(bundled, cat_path)
    bilinear = explain(bundled, cat_path, upsampling="bilinear")
    np.testing.assert_array_equal(paper.maps["gradcam"], bilinear.maps["gradcam"])
    assert np.abs(paper.maps["micam"] - bilinear.maps["micam"]).max() > 0.01
    switched = paper.with_upsampling("bilinear")
    np.testing.assert_allclose(switched.maps["micam"], bilinear.maps["micam"], atol=1e-6)


@pytest.mark.parametrize("target,message", [(1000, "out of range"), ("not-a-class", "not one of"),
                                            ("tabbby cat", "Did you mean")])
def test_bad_targets_are_explained(bundled, cat_path, target, message):
    with pytest.raises(TargetError, match=message):
        explain(bundled, cat_path, target=target)


@pytest.mark.parametrize("image,expected", [("chelsea_cat.jpg", {281, 282, 285}), ("coffee.jpg", {967, 968}),
                                            ("rocket.jpg", {657, 744})])
def test_bundled_model_recognises_real_photos(bundled, image, expected):
    from conftest import EXAMPLES

    exp = explain(bundled, EXAMPLES / image, methods=("micam",))
    assert expected & {i for i, _, _ in exp.top(5)}
