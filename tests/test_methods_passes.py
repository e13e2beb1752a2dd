"""Methods with extra passes (Ablation-CAM, SS-CAM, IS-CAM, SmoothGrad-CAM++) against pytorch-grad-cam and torchcam,
on a tiny CNN and a tiny ViT at 64 px (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import AblationCAM
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from micam_core import REGISTRY, explain, from_module, load_image
from micam_core.afterlayer import _full_batch, run_after
from micam_core.capture import capture
from micam_core.cost import extra_passes
from micam_core.maps import minmax
from micam_core.registry import MapInputs
from micam_core.tokens import layout_of

torchcam = pytest.importorskip("torchcam.methods")
SIZE = 64
CONFIG = {"input_size": (3, SIZE, SIZE), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
          "crop_pct": 1.0, "crop_mode": "center"}
# (fixture, layer): a CNN block with a ReLU output, and a ViT block (token layer, negative values).
CASES = [("tiny_cnn", "layer2"), ("tiny_vit", "blocks.3")]


@pytest.fixture(scope="module")
def tiny_cnn():
    torch.manual_seed(0)
    return from_module(timm.create_model("test_resnet", num_classes=10), spec="test-resnet", data_config=CONFIG,
                       device="cpu")


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return from_module(timm.create_model("test_vit", num_classes=10), spec="test-vit", data_config=CONFIG,
                       device="cpu")


def tokens_to_map(loaded, layer):
    """pytorch-grad-cam / torchcam reshape_transform for token layers (ours, via the layout)."""
    if "blocks" not in layer:
        return None
    x = torch.zeros(1, 3, SIZE, SIZE)
    out = []
    handle = loaded.model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: out.append(o.shape))
    with torch.no_grad():
        loaded.model(x)
    handle.remove()
    layout = layout_of(loaded.model, layer, tuple(out[0]), (SIZE, SIZE))
    from micam_core.tokens import to_map
    return lambda t: to_map(t, layout)


def shared_inputs(loaded, crop, layer: str, target: int) -> MapInputs:
    """The MapInputs ``explain`` builds (to call a record's compute with chosen parameters)."""
    batch = loaded.to_input([crop])
    cap = capture(loaded.model, layer, batch, lambda _: [target], want_logit_grad=True, want_prob_grad=False)
    return MapInputs(activations=cap.activations, grays=[np.array(crop.convert("L"))], targets=cap.targets,
                     grad_logit=cap.grad_logit, batch=batch, model=loaded.model, logits=cap.logits, layer=layer,
                     loaded=loaded)


def torchcam_map(cls, loaded, crop, layer, target, seed=None, **kwargs) -> np.ndarray:
    x = loaded.to_input([crop]).contiguous()
    with cls(loaded.model, layer, input_shape=(3, SIZE, SIZE), reshape_transform=tokens_to_map(loaded, layer),
             **kwargs) as extractor:
        scores = loaded.model(x)
        if seed is not None:
            torch.manual_seed(seed)
        return extractor(class_idx=target, scores=scores)[0][0].detach().numpy()


@pytest.mark.parametrize("fixture,layer", CASES)
def test_ablation_cam_matches_pytorch_grad_cam(request, cat_path, fixture, layer):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, target=3, layer=layer, methods=("ablationcam",))
    x = loaded.to_input([exp.crop]).contiguous()
    extra = {"ablation_layer": AblationLayerVit()} if fixture == "tiny_vit" else {}
    with AblationCAM(loaded.model, [loaded.model.get_submodule(layer)], tokens_to_map(loaded, layer), **extra) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])[0]
    assert np.abs(minmax(torch.from_numpy(exp.maps["ablationcam"])).numpy() - ref).max() <= 1e-4
    channels = exp.weights["ablationcam"].shape[0]
    assert 0 < exp.extra_forward_passes <= channels + 1 == extra_passes(loaded, layer, ["ablationcam"])


def test_ablation_skips_dead_channels_and_runs_only_after_the_layer(tiny_cnn, cat_path):
    """layer2 of the random CNN has channels that are zero everywhere: no pass, weight exactly 0."""
    exp = explain(tiny_cnn, cat_path, target=3, layer="layer2", methods=("ablationcam",))
    inputs = shared_inputs(tiny_cnn, exp.crop, "layer2", 3)
    dead = inputs.activations[0].flatten(1).amax(1) <= 0
    assert bool(dead.any())
    assert np.all(exp.weights["ablationcam"][dead.numpy()] == 0)
    assert exp.extra_forward_passes == int((~dead).sum()) + 1
    calls = []
    handle = tiny_cnn.model.conv1.register_forward_hook(lambda _m, _i, o: calls.append(o.shape[0]))
    explain(tiny_cnn, cat_path, target=3, layer="layer2", methods=("ablationcam",))
    handle.remove()
    assert max(calls) == 1  # the layers before the target layer ran once per image, never per channel


def test_run_after_falls_back_to_full_batches_when_the_prefix_cannot_broadcast(tiny_cnn):
    """A replacement whose batch-1 prefix disagrees with the captured score is redone on full copies."""
    image = torch.zeros(3, SIZE, SIZE)
    with torch.no_grad():
        logit = float(tiny_cnn.model(image[None])[0, 2])
    out = run_after(tiny_cnn.model, "layer2", image, lambda o: o.expand(3, *o.shape[1:]), 3,
                    expected=(0, 2, logit + 100.0))
    assert out.shape[0] == 3 and "layer2" in _full_batch[tiny_cnn.model]
    _full_batch[tiny_cnn.model].discard("layer2")


@pytest.mark.parametrize("fixture,layer", CASES)
def test_is_cam_matches_torchcam(request, cat_path, fixture, layer):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, target=4, layer=layer, methods=("iscam",))
    inputs = shared_inputs(loaded, exp.crop, layer, 4)
    ours, _ = REGISTRY["iscam"].compute(inputs, samples=3)
    ref = torchcam_map(torchcam.ISCAM, loaded, exp.crop, layer, 4, num_samples=3)
    assert np.abs(minmax(ours[0]).numpy() - ref).max() <= 1e-4
    default, _ = REGISTRY["iscam"].compute(shared_inputs(loaded, exp.crop, layer, 4), samples=10)
    np.testing.assert_allclose(minmax(torch.from_numpy(exp.lowres["iscam"])).numpy(), minmax(default[0]).numpy(),
                               atol=1e-6)
    assert exp.extra_forward_passes <= REGISTRY["iscam"].extra_passes(inputs.activations.shape[1])


@pytest.mark.parametrize("fixture,layer", CASES)
def test_ss_cam_matches_torchcam_with_the_same_noise(request, cat_path, fixture, layer):
    loaded = request.getfixturevalue(fixture)
    crop = loaded.crop(load_image(cat_path))
    inputs = shared_inputs(loaded, crop, layer, 5)
    ours, _ = REGISTRY["sscam"].compute(inputs, samples=2, std=2.0, seed=7)
    ref = torchcam_map(torchcam.SSCAM, loaded, crop, layer, 5, seed=7, num_samples=2, std=2.0)
    assert np.abs(minmax(ours[0]).numpy() - ref).max() <= 1e-4
    assert inputs.extra_passes == 2 * inputs.activations.shape[1]
    other, _ = REGISTRY["sscam"].compute(shared_inputs(loaded, crop, layer, 5), samples=2, std=2.0, seed=8)
    again, _ = REGISTRY["sscam"].compute(shared_inputs(loaded, crop, layer, 5), samples=2, std=2.0, seed=7)
    assert torch.equal(again, ours) and not torch.equal(other, ours)  # seeded: reproducible, seed matters


@pytest.mark.parametrize("fixture,layer", CASES)
def test_smoothgrad_campp_matches_torchcam_with_the_same_noise(request, cat_path, fixture, layer):
    loaded = request.getfixturevalue(fixture)
    exp = explain(loaded, cat_path, target=6, layer=layer, methods=("smoothgradcampp",))
    ref = torchcam_map(torchcam.SmoothGradCAMpp, loaded, exp.crop, layer, 6, seed=0)  # default seed 0, 4 samples
    assert np.abs(minmax(torch.from_numpy(exp.lowres["smoothgradcampp"])).numpy() - ref).max() <= 1e-4
    assert exp.extra_forward_passes == 4


def test_extra_pass_costs_come_from_the_records(tiny_cnn):
    channels = 48  # layer2
    assert extra_passes(tiny_cnn, "layer2", ["ablationcam"]) == channels + 1
    assert extra_passes(tiny_cnn, "layer2", ["sscam"]) == 35 * channels
    assert extra_passes(tiny_cnn, "layer2", ["iscam"]) == 10 * channels + 1
    assert extra_passes(tiny_cnn, "layer2", ["smoothgradcampp"]) == 4
    assert REGISTRY["sscam"].extra_passes(channels, {"samples": 2}) == 2 * channels
    assert {REGISTRY[m].group for m in ("ablationcam", "sscam", "iscam", "smoothgradcampp")} == {"perturbation"}
