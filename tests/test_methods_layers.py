"""RefineCAM (several layers) and LeGrad (attention of ViT blocks) against pytorch-grad-cam, torchcam and a
hand-written forward pass, on tiny random models at 64 px."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import RefineCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from micam_core import REGISTRY, MicamError, explain, from_module
from micam_core.legrad import legrad_blocks
from micam_core.maps import minmax
from micam_core.refine import refine_layers
from micam_core.tokens import layout_of, to_map

torchcam = pytest.importorskip("torchcam.methods")
torchvision = pytest.importorskip("torchvision.models")
SIZE = 64
CONFIG = {"input_size": (3, SIZE, SIZE), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear",
          "crop_pct": 1.0, "crop_mode": "center"}


def tiny(model):
    torch.manual_seed(0)
    return from_module(model, spec=type(model).__name__, data_config=CONFIG, device="cpu")


@pytest.fixture(scope="module")
def tiny_cnn():
    torch.manual_seed(0)
    return tiny(timm.create_model("test_resnet", num_classes=10))


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    return tiny(timm.create_model("test_vit", num_classes=10))


@pytest.fixture(scope="module")
def torchvision_vit():
    torch.manual_seed(0)
    return tiny(torchvision.VisionTransformer(image_size=SIZE, patch_size=16, num_layers=3, num_heads=2,
                                              hidden_dim=32, mlp_dim=64, num_classes=10))


@pytest.mark.parametrize("fixture,layer,expected", [
    ("tiny_cnn", "layer4", ["layer4", "layer3", "layer2"]),
    ("tiny_cnn", "layer3", ["layer3", "layer2", "layer1"]),
    ("tiny_vit", "blocks.5.norm1", ["blocks.5.norm1", "blocks.4", "blocks.3"]),
])
def test_refinecam_matches_pytorch_grad_cam(request, cat_path, fixture, layer, expected):
    loaded = request.getfixturevalue(fixture)
    assert refine_layers(loaded, layer, 3) == expected  # the chosen layer is the deepest
    exp = explain(loaded, cat_path, target=3, layer=layer, methods=("refinecam",))
    x = loaded.to_input([exp.crop]).contiguous()
    reshape = None
    if fixture == "tiny_vit":
        layout = layout_of(loaded.model, "blocks.4", (1, 17, 64), (SIZE, SIZE))
        reshape = lambda t: to_map(t, layout)  # noqa: E731
    modules = [loaded.model.get_submodule(n) for n in reversed(expected)]
    with torch.enable_grad():
        ref = RefineCAM(loaded.model, modules, reshape)(x, [ClassifierOutputTarget(3)])[0]
    assert np.abs(minmax(torch.from_numpy(exp.maps["refinecam"])).numpy() - ref).max() <= 1e-4
    assert exp.extra_forward_passes == 0  # the shared pass records the shallower layers too


def test_refinecam_needs_a_shallower_layer(tiny_cnn, cat_path):
    first = tiny_cnn.layers[-1].name  # the shallowest layer with a map
    reason = REGISTRY["refinecam"].why_not(tiny_cnn, first)
    assert reason and "shallower" in reason and REGISTRY["refinecam"].why_not(tiny_cnn) is None
    with pytest.raises(MicamError, match="RefineCAM cannot run here"):
        explain(tiny_cnn, cat_path, layer=first, methods=("refinecam",))


def test_legrad_matches_torchcam_on_a_torchvision_vit(torchvision_vit, cat_path):
    """torchcam's LeGrad takes torchvision blocks; given the model's own head as the projection, maps are equal."""
    model = torchvision_vit.model
    layer = "encoder.layers.encoder_layer_1"
    assert legrad_blocks(model, layer) == ["encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_2"]
    exp = explain(torchvision_vit, cat_path, target=3, layer=layer, methods=("legrad",))
    x = torchvision_vit.to_input([exp.crop]).contiguous()
    with torchcam.LeGrad(model, legrad_blocks(model, layer),
                         score_projection=lambda t: model.heads(model.encoder.ln(t)[:, 0])) as extractor:
        model(x)
        ref = extractor(3)[0][0]
    assert np.abs(minmax(torch.from_numpy(exp.lowres["legrad"])).numpy() - ref.numpy()).max() <= 1e-4


def hand_legrad(model, x: torch.Tensor, target: int, first: int) -> torch.Tensor:
    """LeGrad written out on timm's ViT: attention computed by hand, s^l through the model's norm and head."""
    with torch.enable_grad():
        tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        maps = []
        for i, block in enumerate(model.blocks):
            a = block.attn
            h = block.norm1(tokens)
            b, n, c = h.shape
            q, k, v = a.qkv(h).reshape(b, n, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
            probs = ((a.q_norm(q) * a.scale) @ a.k_norm(k).transpose(-2, -1)).softmax(-1)
            out = a.proj(a.norm((probs @ v).transpose(1, 2).reshape(b, n, c)))
            tokens = tokens + block.ls1(out)
            tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
            if i >= first:
                score = model.forward_head(model.norm(tokens))[0, target]
                grad = torch.autograd.grad(score, probs, retain_graph=True)[0]
                maps.append(torch.relu(grad).mean(dim=(1, 2))[0, model.num_prefix_tokens:])
    return torch.stack(maps).mean(0).reshape(4, 4).detach()


@pytest.mark.parametrize("fused", [True, False])
def test_legrad_on_timm_vit_equals_the_formula_written_out(tiny_vit, cat_path, fused):
    """Fused attention is answered by the formula in this thread; unfused, the probabilities are read in place."""
    loaded = tiny_vit
    if not fused:
        import copy

        model = copy.deepcopy(tiny_vit.model)
        for block in model.blocks:
            block.attn.fused_attn = False
        loaded = from_module(model, spec="test_vit, unfused", data_config=CONFIG, device="cpu")
    flags = [block.attn.fused_attn for block in loaded.model.blocks]
    exp = explain(loaded, cat_path, target=2, layer="blocks.3", methods=("legrad",))
    ref = hand_legrad(loaded.model, loaded.to_input([exp.crop]), 2, first=3)
    np.testing.assert_allclose(exp.lowres["legrad"], ref.numpy(), rtol=1e-4, atol=1e-7 * float(ref.abs().max()))
    assert [block.attn.fused_attn for block in loaded.model.blocks] == flags


def test_legrad_is_refused_on_cnns_with_a_sentence(tiny_cnn, cat_path):
    reason = REGISTRY["legrad"].why_not(tiny_cnn)
    assert reason and "vision-transformer" in reason
    with pytest.raises(MicamError, match="LeGrad cannot run here: .*ViT"):
        explain(tiny_cnn, cat_path, methods=("legrad",))
    assert REGISTRY["legrad"].group == "transformer" and REGISTRY["refinecam"].group == "multilayer"


@pytest.mark.parametrize("fixture,layer,methods", [
    ("tiny_cnn", "layer3", ("refinecam", "migradcam", "finercam", "shapleycam", "fullgrad")),
    ("tiny_vit", "blocks.3", ("legrad", "refinecam", "migradcam", "finercam")),
    ("torchvision_vit", "encoder.layers.encoder_layer_1", ("legrad", "gradcam", "gradcampp")),
])
def test_layers_and_attention_share_the_pass_with_other_methods(request, cat_path, fixture, layer, methods):
    """RefineCAM's layers and LeGrad's attention ride on the one capture, whatever else it carries (copies of
    the layer for several gradients, the full graph for FullGrad): each map equals the method run alone."""
    loaded = request.getfixturevalue(fixture)
    together = explain(loaded, cat_path, target=3, layer=layer, methods=methods)
    for method in methods:
        alone = explain(loaded, cat_path, target=3, layer=layer, methods=(method,))
        np.testing.assert_allclose(together.maps[method], alone.maps[method], atol=1e-5, err_msg=method)
    assert together.extra_forward_passes == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in loaded.model.modules())


def test_legrad_changes_nothing_other_threads_see(tiny_vit, cat_path):
    """Fused attention stays on for the model during LeGrad's pass; only the explaining thread's calls are
    answered by the formula (a torch-function mode is per thread)."""
    import threading

    from torch.overrides import _get_current_function_mode_stack

    attn = tiny_vit.model.blocks[3].attn
    seen = []

    def other_thread_modes() -> int:
        out = []
        worker = threading.Thread(target=lambda: out.append(len(_get_current_function_mode_stack())))
        worker.start()
        worker.join()
        return out[0]

    handle = attn.register_forward_hook(
        lambda m, _i, _o: seen.append((m.fused_attn, len(_get_current_function_mode_stack()), other_thread_modes())))
    try:
        explain(tiny_vit, cat_path, target=2, layer="blocks.3", methods=("legrad",))
    finally:
        handle.remove()
    fused = timm.layers.use_fused_attn()
    assert seen == [(fused, int(fused), 0)]
