"""The methods of issue 17 (part one) against their oracles: pytorch-grad-cam 1.5.7, torchcam 0.5, scikit-learn.

Every map is compared after min-max normalisation (max abs difference <= 1e-4) on a CNN (random resnet18, the
bundled EfficientNet-Lite0) and, where the method reads token layers, a random ViT (tokens -> grid as ours).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    FEM,
    EigenGradCAM,
    FinerCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GuidedBackpropReLUModel,
    ShapleyCAM,
)
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection, get_2d_projection_kernel
from sklearn.metrics import mutual_info_score

from micam_core import REGISTRY, MicamError, explain, from_module, load_image
from micam_core.cams import first_component
from micam_core.cams_extra import kernel_first_component
from micam_core.cams_pixel import binned_mi, quantile_bins
from micam_core.capture import capture, twice_differentiable
from micam_core.layers import get_module
from micam_core.maps import minmax

NEW = ("gradcamew", "eigengradcam", "kpcacam", "fem", "shapleycam", "finercam", "cam", "fullgrad", "guidedgradcam",
       "micambinned")


@pytest.fixture(scope="module")
def vit():
    """A random ViT-Tiny (5 classes, 224 px: 14 x 14 tokens after one class token)."""
    torch.manual_seed(0)
    return from_module(timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5),
                       spec="vit-random", device="cpu")


def vit_grid(t: torch.Tensor) -> torch.Tensor:
    return t[:, 1:, :].reshape(t.shape[0], 14, 14, t.shape[2]).permute(0, 3, 1, 2)


def norm(saliency: np.ndarray) -> np.ndarray:
    return minmax(torch.from_numpy(np.asarray(saliency, dtype=np.float32))).numpy()


def oracle(cls, loaded, exp, reshape=None, **call) -> np.ndarray:
    """pytorch-grad-cam's map of ``cls`` for the explanation's crop, layer and target, min-max normalised."""
    x = loaded.to_input([exp.crop]).contiguous()
    cam = cls(model=loaded.model, target_layers=[get_module(loaded.model, exp.layer)], reshape_transform=reshape)
    with twice_differentiable():
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(exp.target)], **call)[0]
    cam.activations_and_grads.gradients = []  # ShapleyCAM's are views, which its release() cannot detach_()
    cam.activations_and_grads.activations = []
    cam.activations_and_grads.release()
    return norm(out)


class TokenShapleyCAM(ShapleyCAM):
    """pytorch-grad-cam's ShapleyCAM, whose weights (its own HVP code) are applied to the raw token activations
    on token layers (B x N x C: it raises); here they are applied to the reshaped ones, as its other methods do."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False):
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        grid = self.activations_and_grads.reshape_transform(activations).detach().numpy()
        return (weights[:, :, None, None] * grid).sum(axis=1)


CASES = [("resnet18_random", "layer3", None), ("bundled", None, None), ("vit", None, vit_grid)]


@pytest.mark.parametrize("method,cls", [("gradcamew", GradCAMElementWise), ("fem", FEM), ("shapleycam", ShapleyCAM)])
@pytest.mark.parametrize("fixture,layer,reshape", CASES, ids=["resnet18", "bundled", "vit"])
def test_layer_methods_match_pytorch_grad_cam(request, cat_path, method, cls, fixture, layer, reshape):
    loaded = request.getfixturevalue(fixture)
    if fixture == "vit" and method == "fem":
        layer = "blocks.10"  # FEM's map is blank after a LayerNorm (centred tokens: every weighted sum < 0)
    exp = explain(loaded, cat_path, layer=layer, methods=(method,))
    ref = oracle(TokenShapleyCAM if cls is ShapleyCAM and reshape else cls, loaded, exp, reshape)
    assert ref.max() == 1.0, "the reference map must not be blank"
    assert np.abs(norm(exp.maps[method]) - ref).max() <= 1e-4


def test_shapley_hvp_is_used_where_the_head_is_not_piecewise_linear(vit, resnet18_random, cat_path):
    """On a ViT (LayerNorm, GELU, attention) H A is not zero, so ShapleyCAM is not Grad-CAM; after a ReLU
    network's last layer it is zero (piecewise linear), and ShapleyCAM equals Grad-CAM there."""
    x = vit.to_input([vit.crop(load_image(cat_path))])
    cap = capture(vit.model, vit.default_layer, x, lambda lg: [1], want_prob_grad=False, extras=("hvp",))
    assert cap.hvp.abs().max() > 1e-3 * cap.grad_logit.abs().max()
    exp = explain(vit, cat_path, target=1, methods=("shapleycam", "gradcam"))
    assert np.abs(exp.maps["shapleycam"] - exp.maps["gradcam"]).max() > 1e-3
    exp = explain(resnet18_random, cat_path, layer="layer4", methods=("shapleycam", "gradcam"))
    np.testing.assert_allclose(exp.maps["shapleycam"], exp.maps["gradcam"], atol=1e-6)


@pytest.mark.parametrize("fixture,layer,reshape", CASES[::2], ids=["resnet18", "vit"])
def test_eigengradcam_matches_pytorch_grad_cam_up_to_the_documented_sign(request, cat_path, fixture, layer, reshape):
    """As Eigen-CAM: pytorch-grad-cam keeps NumPy's SVD sign; we orient the component to correlate positively
    with sum_k g_k A_k. The projections agree up to that sign, and the maps agree where the signs do."""
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, layer=layer, methods=("eigengradcam",))
    cap = capture(loaded.model, exp.layer, loaded.to_input([exp.crop]), lambda lg: [exp.target], want_prob_grad=False)
    cells = cap.grad_logit * cap.activations
    theirs = get_2d_projection(cells.numpy())[0]
    ours = first_component(cells)[0].numpy()
    sign = 1.0 if np.dot(theirs.ravel(), ours.ravel()) >= 0 else -1.0
    np.testing.assert_allclose(ours, sign * theirs, atol=1e-4 * np.abs(theirs).max())
    np.testing.assert_allclose(exp.lowres["eigengradcam"], np.maximum(ours, 0), atol=1e-6)
    total = cells[0].sum(0).numpy()
    assert np.dot(ours.ravel(), total.ravel() - total.mean()) >= 0  # our convention
    if sign > 0:
        ref = oracle(EigenGradCAM, loaded, exp, reshape)
        assert np.abs(norm(exp.maps["eigengradcam"]) - ref).max() <= 1e-4


@pytest.mark.parametrize("fixture,layer", [("resnet18_random", "layer3"), ("bundled", None), ("vit", None)],
                         ids=["resnet18", "bundled", "vit"])
def test_kpcacam_matches_scikit_learn_kernel_pca(request, cat_path, fixture, layer):
    """pytorch-grad-cam's get_2d_projection_kernel (KernelPCA, sigmoid kernel, gamma 1/K, sign of svd_flip), fed
    float64 activations: the sigmoid kernel is nearly constant, so the float32 it is given in KPCA_CAM moves its map
    by up to 2e-2 on some layers (a random SiLU resnet18's layer3); in float64 it equals ours."""
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, layer=layer, methods=("kpcacam",))
    cap = capture(loaded.model, exp.layer, loaded.to_input([exp.crop]), lambda lg: [0],
                  want_logit_grad=False, want_prob_grad=False)
    acts = cap.activations.numpy().astype(np.float64)
    theirs = get_2d_projection_kernel(acts)[0]
    np.testing.assert_allclose(kernel_first_component(cap.activations)[0].numpy(), theirs,
                               atol=1e-4 * np.abs(theirs).max())
    ref = scale_cam_image(scale_cam_image(np.maximum(theirs, 0)[None], exp.crop.size))  # BaseCAM's steps
    assert np.abs(norm(exp.maps["kpcacam"]) - norm(ref[0])).max() <= 1e-4


@pytest.mark.parametrize("strength,comparisons", [(1.0, 3), (0.6, 2)])
@pytest.mark.parametrize("fixture,layer,reshape", CASES[::2], ids=["resnet18", "vit"])
def test_finercam_matches_pytorch_grad_cam(request, cat_path, strength, comparisons, fixture, layer, reshape):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, layer=layer, methods=("finercam",),
                  params={"finercam": {"strength": strength, "comparisons": comparisons}})
    x = loaded.to_input([exp.crop]).contiguous()
    with FinerCAM(loaded.model, [get_module(loaded.model, exp.layer)], reshape_transform=reshape) as cam:
        ref = norm(cam(x, targets=None, alpha=strength, comparison_categories=list(range(1, comparisons + 1)),
                       target_idx=exp.target)[0])
    assert ref.max() == 1.0
    assert np.abs(norm(exp.maps["finercam"]) - ref).max() <= 1e-4


def test_finercam_against_torchcam(resnet18_random, cat_path):
    """torchcam's Finer-CAM scores y_c - gamma * mean_j y_j (plain mean, default gamma 0.6); pytorch-grad-cam's and
    ours weigh the compared classes by their softmax probabilities (default strength 1). With one compared class
    both are y_c - gamma y_j, and the maps agree; with several they differ (by 2.6e-4 here, more on trained models)."""
    from torchcam.methods import FinerCAM as TorchcamFinerCAM

    def both(comparisons: int) -> float:
        exp = explain(resnet18_random, cat_path, layer="layer3", methods=("finercam",),
                      params={"finercam": {"strength": 0.6, "comparisons": comparisons}})
        x = resnet18_random.to_input([exp.crop])
        with TorchcamFinerCAM(resnet18_random.model, "layer3", gamma=0.6, num_references=comparisons) as extractor:
            theirs = extractor(class_idx=exp.target, scores=resnet18_random.model(x))[0][0]
        return float((minmax(torch.from_numpy(exp.lowres["finercam"])) - theirs).abs().max())

    assert both(1) <= 1e-4
    assert both(3) > 1e-4


@pytest.mark.parametrize("fixture,layer", [("resnet18_random", "layer4"), ("bundled", None)],
                         ids=["resnet18", "bundled"])
def test_cam_matches_torchcam(request, cat_path, fixture, layer):
    from torchcam.methods import CAM

    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, layer=layer, methods=("cam",))
    with CAM(loaded.model, exp.layer, fc_layer=loaded.model.get_classifier()) as extractor:
        with torch.no_grad():
            loaded.model(loaded.to_input([exp.crop]))
        theirs = extractor(class_idx=exp.target)[0][0]
    assert float(theirs.max()) > 0.99  # not blank (torchcam divides by max + 1e-8)
    assert float((minmax(torch.from_numpy(exp.lowres["cam"])) - theirs).abs().max()) <= 1e-4


def test_cam_is_refused_with_a_sentence_without_gap_and_linear_head(resnet18_random, vit, cat_path):
    for loaded, layer in ((resnet18_random, "layer3"), (vit, None)):
        reason = REGISTRY["cam"].why_not(loaded, layer or loaded.default_layer)
        assert reason and reason.startswith("CAM needs") and reason.endswith(".")
        with pytest.raises(MicamError, match="CAM needs"):
            explain(loaded, cat_path, layer=layer, methods=("gradcam", "cam"))
    torch.manual_seed(0)
    pooled = from_module(timm.create_model("vit_tiny_patch16_224", num_classes=5, global_pool="avg",
                                           class_token=False, fc_norm=False), spec="vit-avg", device="cpu")
    assert REGISTRY["cam"].why_not(pooled, "norm") is None  # tokens averaged straight into the classifier
    assert REGISTRY["cam"].why_not(pooled, "blocks.11") is not None  # a LayerNorm follows


@pytest.mark.parametrize("fixture", ["resnet18_random", "bundled"])
def test_fullgrad_matches_pytorch_grad_cam_and_ignores_the_layer(request, cat_path, fixture):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, methods=("fullgrad",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FullGrad(loaded.model, []) as cam:
            ref = norm(cam(loaded.to_input([exp.crop]).contiguous(), [ClassifierOutputTarget(exp.target)])[0])
    assert np.abs(exp.maps["fullgrad"] - ref).max() <= 1e-4
    other = explain(loaded, cat_path, target=exp.target, layer=loaded.candidate_layers[-1], methods=("fullgrad",))
    np.testing.assert_array_equal(other.maps["fullgrad"], exp.maps["fullgrad"])
    assert "ignores the chosen layer" in REGISTRY["fullgrad"].note


@pytest.mark.parametrize("fixture,layer,reshape", CASES, ids=["resnet18", "bundled", "vit"])
def test_guided_gradcam_matches_guided_backprop_times_gradcam(request, cat_path, fixture, layer, reshape):
    """Guided Grad-CAM = sum over colours of |guided backprop| x Grad-CAM (upsampled, min-max), at pixel
    resolution. Guided ReLUs are the nn.ReLU modules, as pytorch-grad-cam (ReLU6 and GELU pass plain gradients)."""
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, layer=layer, methods=("guidedgradcam",))
    gradcam = oracle(GradCAM, loaded, exp, reshape)
    guided = GuidedBackpropReLUModel(copy.deepcopy(loaded.model), device="cpu")(  # it swaps the model's ReLUs
        loaded.to_input([exp.crop]).contiguous(), target_category=exp.target)
    ref = norm((np.abs(guided) * gradcam[..., None]).sum(-1))
    assert ref.max() == 1.0
    assert np.abs(exp.maps["guidedgradcam"] - ref).max() <= 1e-4
    assert exp.lowres["guidedgradcam"].shape == exp.maps["guidedgradcam"].shape  # pixel resolution


def test_guided_backprop_differs_from_the_plain_gradient_and_leaves_no_hooks(resnet18_random, cat_path):
    loaded = resnet18_random
    for p in loaded.model.parameters():
        p.grad = None  # the oracles' backward() calls accumulate into them; ours must not
    x = loaded.to_input([loaded.crop(load_image(cat_path))])
    both = capture(loaded.model, "layer3", x, lambda lg: [3], extras=("guided", "bias_grads", "hvp"))
    assert (both.guided_grad - both.input_grad).abs().max() > 1e-3 * both.input_grad.abs().max()
    plain = capture(loaded.model, "layer3", x, lambda lg: [3], extras=("bias_grads",))
    torch.testing.assert_close(plain.input_grad, both.input_grad)  # the guided hooks are gone
    alone = capture(loaded.model, "layer3", x, lambda lg: [3])
    torch.testing.assert_close(alone.grad_prob, both.grad_prob)
    torch.testing.assert_close(alone.grad_logit, both.grad_logit)
    assert all(p.grad is None for p in loaded.model.parameters())
    assert not any(m._forward_hooks for m in loaded.model.modules())


def test_binned_mi_equals_sklearn_on_the_binned_values(vit, cat_path):
    exp = explain(vit, cat_path, methods=("micambinned", "micam"), params={"micambinned": {"bins": 16}})
    cap = capture(vit.model, exp.layer, vit.to_input([exp.crop]), lambda lg: [0],
                  want_logit_grad=False, want_prob_grad=False)
    gray = np.array(exp.crop.convert("L"))
    acts = cap.activations[0]
    for bins in (16, 5):
        gray_bins = np.searchsorted(np.quantile(gray.astype(np.float64), np.arange(1, bins) / bins), gray.ravel(),
                                    side="right")
        np.testing.assert_array_equal(quantile_bins(torch.from_numpy(gray).reshape(1, -1), bins)[0].numpy(),
                                      gray_bins)
        ours = binned_mi(torch.from_numpy(gray), acts, bins).numpy()
        for k in range(0, acts.shape[0], 24):
            values = acts[k].numpy().astype(np.float64)
            cells = np.searchsorted(np.quantile(values, np.arange(1, bins) / bins), values, side="right")
            up = F.interpolate(torch.from_numpy(cells.astype(np.float32))[None, None], size=gray.shape)[0, 0]
            assert abs(mutual_info_score(gray_bins, up.numpy().ravel()) - ours[k]) <= 1e-9
    np.testing.assert_allclose(exp.weights["micambinned"], binned_mi(torch.from_numpy(gray), acts, 16).numpy(),
                               rtol=1e-6)
    # On tokens every value is distinct: exact MI is one number for all channels, the binned MI is not.
    assert np.ptp(exp.weights["micam"]) < 1e-6 * exp.weights["micam"].max()
    assert np.ptp(exp.weights["micambinned"]) > 0.1 * exp.weights["micambinned"].mean()


def test_new_records_are_complete(cat_path, bundled):
    for method in NEW:
        record = REGISTRY[method]
        assert record.label and record.reference and record.formula, method
    assert REGISTRY["micambinned"].settings()[0].name == "micambinned_bins"
    assert [s.name for s in REGISTRY["finercam"].settings()] == ["finercam_strength", "finercam_comparisons"]
    assert "extension" in REGISTRY["micambinned"].reference
    exp = explain(bundled, cat_path, methods=NEW)  # one shared pass for all ten
    for method in NEW:
        assert exp.maps[method].shape == bundled.input_size and np.isfinite(exp.maps[method]).all(), method


def test_notes_reach_the_page_and_the_report(bundled, cat_path):
    from micam_app.text import display_note
    from micam_core.report import build_report

    exp = explain(bundled, cat_path, methods=("gradcam", "fullgrad"))
    assert REGISTRY["fullgrad"].note in display_note(exp)
    report = build_report(bundled, exp)
    assert report["methods"]["fullgrad"]["note"] == REGISTRY["fullgrad"].note
    assert "note" not in report["methods"]["gradcam"]


def test_figure_caption_says_what_a_method_ignores(bundled, cat_path):
    from micam_core.figure import caption_text

    exp = explain(bundled, cat_path, methods=("fullgrad", "cam"))
    text = caption_text(exp, list(exp.maps), {m: REGISTRY[m].label for m in exp.maps})
    assert REGISTRY["fullgrad"].note in text and REGISTRY["cam"].note in text


def test_a_batch_gives_each_image_its_own_map(resnet18_random, cat_path, coffee_path):
    """The extras (HVP, bias and guided gradients, Finer-CAM's objective) are per image in a batch."""
    methods = ("shapleycam", "finercam", "fullgrad", "guidedgradcam", "micambinned", "kpcacam", "cam")
    both = explain(resnet18_random, [cat_path, coffee_path], target=[3, 5], layer="layer4", methods=methods)
    for exp, path, target in zip(both, (cat_path, coffee_path), (3, 5)):
        alone = explain(resnet18_random, path, target=target, layer="layer4", methods=methods)
        for method in methods:
            np.testing.assert_allclose(exp.maps[method], alone.maps[method], atol=1e-4, err_msg=method)


def test_extras_work_when_the_caller_is_in_inference_mode(resnet18_random, cat_path):
    methods = ("fullgrad", "guidedgradcam", "shapleycam", "finercam")
    plain = explain(resnet18_random, cat_path, target=3, layer="layer3", methods=methods)
    with torch.inference_mode():
        inside = explain(resnet18_random, cat_path, target=3, layer="layer3", methods=methods)
    for method in methods:
        np.testing.assert_allclose(inside.maps[method], plain.maps[method], atol=1e-6, err_msg=method)
