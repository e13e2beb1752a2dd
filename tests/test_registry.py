"""Every method of the registry against independent implementations (pytorch-grad-cam, torchcam)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import EigenCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

from micam_core import DEFAULT_METHODS, METHOD_LABELS, METHODS, REGISTRY, explain, from_module
from micam_core.cams import first_component
from micam_core.capture import capture
from micam_core.layers import get_module
from micam_core.maps import minmax
from micam_core.registry import AT_LAYER, SINGLE_PASS, Method, needs_of, register

ORACLES = {"gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM, "hirescam": HiResCAM}


def reference_map(cls, loaded, crop, layer: str, target: int, **kwargs) -> np.ndarray:
    x = loaded.to_input([crop]).contiguous()
    with cls(model=loaded.model, target_layers=[get_module(loaded.model, layer)], **kwargs) as cam:
        if cls is ScoreCAM:
            cam.batch_size = 64
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    return minmax(torch.from_numpy(out)).numpy()


def normalised(saliency: np.ndarray) -> np.ndarray:
    return minmax(torch.from_numpy(saliency)).numpy()


def test_registry_lists_every_method_once_with_a_label():
    # The first nine are pinned on purpose: old API clients and links rely on their ids and order.
    assert METHODS[:9] == ("micam", "gradcam", "migradcam", "gradcampp", "xgradcam", "layercam", "hirescam",
                           "eigencam", "scorecam")
    assert set(METHOD_LABELS) == set(METHODS) and len(set(METHOD_LABELS.values())) == len(METHODS)
    assert DEFAULT_METHODS == ("micam", "gradcam", "migradcam")
    assert {"micam", "eigencam"} <= {m for m in METHODS if not REGISTRY[m].class_specific}
    assert "scorecam" not in SINGLE_PASS and set(METHODS[:8]) <= set(SINGLE_PASS)


@pytest.mark.parametrize("method", sorted(ORACLES))
@pytest.mark.parametrize("fixture,layer,target", [("bundled", None, None), ("resnet18_random", "layer3", 7)])
def test_gradient_methods_match_pytorch_grad_cam(request, cat_path, method, fixture, layer, target):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, target=target, layer=layer, methods=(method,))
    ref = reference_map(ORACLES[method], loaded, exp.crop, exp.layer, exp.target)
    assert np.abs(normalised(exp.maps[method]) - ref).max() <= 1e-4


def test_score_cam_matches_pytorch_grad_cam(cat_path):
    # A small random resnet at 64 px: one masked pass per channel stays cheap for both implementations.
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=10, pretrained_cfg_overlay={"input_size": (3, 64, 64)})
    small = from_module(model, spec="resnet10t-random-64px", device="cpu")
    exp = explain(small, cat_path, target=3, layer="layer3", methods=("scorecam",))
    ref = reference_map(ScoreCAM, small, exp.crop, exp.layer, exp.target)
    assert np.abs(normalised(exp.maps["scorecam"]) - ref).max() <= 1e-4
    assert 0 < exp.extra_forward_passes <= 257  # one per live channel of layer3 (256), plus one shared


def test_eigen_cam_matches_pytorch_grad_cam_up_to_the_documented_sign(bundled, coffee_path):
    """pytorch-grad-cam keeps whatever sign NumPy's SVD returns; we orient the component so that it
    correlates positively with the summed activation. Where the signs agree the maps are equal;
    where they differ ours equals pytorch-grad-cam's projection negated (then ReLU)."""
    exp = explain(bundled, coffee_path, methods=("eigencam",))
    ref = reference_map(EigenCAM, bundled, exp.crop, exp.layer, exp.target)
    cap = capture(bundled.model, exp.layer, bundled.to_input([exp.crop]), lambda lg: lg.argmax(1).tolist(),
                  want_logit_grad=False, want_prob_grad=False)
    theirs = get_2d_projection(cap.activations.numpy())[0]
    ours = first_component(cap.activations)[0].numpy()
    sign = 1.0 if np.dot(theirs.ravel(), ours.ravel()) > 0 else -1.0
    np.testing.assert_allclose(ours, sign * theirs, rtol=1e-3, atol=1e-4 * np.abs(theirs).max())
    cells = cap.activations[0].reshape(cap.activations.shape[1], -1).numpy()
    assert np.dot(ours.ravel(), cells.sum(0) - cells.sum(0).mean()) >= 0  # our convention
    if sign > 0:
        assert np.abs(normalised(exp.maps["eigencam"]) - ref).max() <= 1e-4


def test_eigen_cam_sign_follows_activation_not_svd_routine():
    torch.manual_seed(0)
    acts = torch.relu(torch.randn(2, 16, 5, 5))
    np.testing.assert_allclose(first_component(acts).numpy(), first_component(acts.clone()).numpy())
    proj = first_component(acts)
    total = acts.sum(1)
    for b in range(2):
        centred = total[b] - total[b].mean()
        assert float((proj[b] * centred).sum()) >= 0


def test_gradcam_matches_torchcam_to_float_precision(resnet18_random, cat_path):
    torchcam = pytest.importorskip("torchcam.methods")
    exp = explain(resnet18_random, cat_path, target=5, methods=("gradcam", "xgradcam", "layercam"))
    x = resnet18_random.to_input([exp.crop]).contiguous()
    # (torchcam's Grad-CAM++ differs from the paper's and pytorch-grad-cam's: not an oracle.)
    for name, cls, tol in [("gradcam", torchcam.GradCAM, 5e-7), ("xgradcam", torchcam.XGradCAM, 1e-4),
                           ("layercam", torchcam.LayerCAM, 1e-4)]:
        with cls(resnet18_random.model, target_layer=exp.layer) as extractor:
            scores = resnet18_random.model(x)
            cam = extractor(5, scores)[0][0].detach()
        ours = minmax(torch.from_numpy(exp.lowres[name])).numpy()
        assert np.abs(ours - minmax(cam).numpy()).max() <= tol, name


def test_one_capture_computes_only_what_the_methods_need():
    assert needs_of(("micam",)) == {"mi"}
    assert needs_of(("eigencam",)) == frozenset()
    assert needs_of(("gradcam", "layercam", "gradcampp")) == {"grad_logit"}
    assert needs_of(("migradcam",)) == {"mi", "grad_prob"}
    assert needs_of(("scorecam", "micam")) == {"mi"}  # Score-CAM's masked passes are its own, not the capture's


def runnable(loaded) -> tuple[str, ...]:
    return tuple(m for m in SINGLE_PASS if REGISTRY[m].why_not(loaded) is None)


def test_any_subset_in_one_call_equals_each_alone(bundled, cat_path):
    methods = runnable(bundled)
    assert "refinecam" in methods and "legrad" not in methods  # LeGrad: ViTs only
    together = explain(bundled, cat_path, target=285, methods=methods)
    assert together.methods == methods
    for method in methods:
        alone = explain(bundled, cat_path, target=285, methods=(method,))
        np.testing.assert_allclose(together.maps[method], alone.maps[method], atol=1e-5, err_msg=method)


def test_class_agnostic_methods_ignore_the_target(bundled, cat_path):
    a = explain(bundled, cat_path, target=281, methods=runnable(bundled))
    b = explain(bundled, cat_path, target=967, methods=runnable(bundled))
    for method in runnable(bundled):
        same = np.array_equal(a.maps[method], b.maps[method])
        assert same == (not REGISTRY[method].class_specific), method


def test_at_layer_methods_stop_their_backward_at_the_layer():
    """The set the "all single-pass methods together <= 2x a forward pass" target is about (bench/speed.py)."""
    assert {"fullgrad", "guidedgradcam", "refinecam", "legrad", "scorecam"}.isdisjoint(AT_LAYER)
    assert {"micam", "gradcam", "shapleycam", "finercam", "cam", "kpcacam", "fem", "micambinned"} <= set(AT_LAYER)
    assert {"refinecam", "legrad"} <= set(SINGLE_PASS)  # served by the shared pass, below the layer


def test_a_layers_or_attention_need_comes_with_its_taps():
    with pytest.raises(ValueError, match="taps"):
        register(Method(id="needstaps", label="x", class_specific=False, compute=lambda x: None, reference="r",
                        formula="f", needs=frozenset({"layers"})))
