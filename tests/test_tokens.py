"""Token and channels-last models: layouts, default layers, oracles, MI exactness, refusals, the zoo."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timm.data import resolve_data_config

from micam_core import METHODS, REGISTRY, NotACNNError, explain, from_module, mutual_information
from micam_core.capture import capture
from micam_core.cost import layer_channels
from micam_core.layers import get_module
from micam_core.methods import minmax
from micam_core.registry import SINGLE_PASS
from micam_core.tokens import Layout, infer_layout, to_map


def small(name: str, size: int | None = None, **kwargs):
    """A random-weight timm model with 5 classes, fed ``size`` px images (its default size if None)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = timm.create_model(name, pretrained=False, num_classes=5,
                                  **({"img_size": size} if size else {}), **kwargs)
    config = resolve_data_config({}, model=model)
    if size:
        config["input_size"] = (3, size, size)
    return from_module(model, spec=name, data_config=config, device="cpu")


# --- layouts --------------------------------------------------------------------------------------------
def test_layouts_from_shapes():
    vit = infer_layout((2, 197, 192), (224, 224), prefix_hint=1)
    assert vit == Layout("NLC", (197, 192), 192, 14, 14, 1)
    assert infer_layout((2, 201, 64), (224, 224), prefix_hint=5).prefix == 5  # class + 4 registers
    wide = infer_layout((2, 24 * 16 + 1, 8), (384, 256), prefix_hint=1)  # not square
    assert wide.describe() == "8 x 24 x 16 tokens, 1 prefix token dropped"
    assert infer_layout((2, 7, 7, 768), (224, 224)).kind == "NHWC"
    assert infer_layout((2, 768, 7, 7), (224, 224)).kind == "NCHW"
    assert infer_layout((2, 64, 56, 56), (224, 224)).kind == "NCHW"
    assert infer_layout((2, 56, 56, 56), (224, 224), nhwc_hint=True).kind == "NHWC"  # ambiguous: the model says
    assert infer_layout((2, 768), (224, 224)) is None
    assert infer_layout((2, 768, 1, 1), (224, 224)) is None
    assert infer_layout((2, 197, 192), (8, 8)) is None  # more patches than pixels


def test_to_map_drops_prefix_tokens_and_keeps_row_major_order():
    x = torch.arange(2 * 7 * 3, dtype=torch.float32).reshape(2, 7, 3)  # 1 class token + 2 x 3 grid
    out = to_map(x, Layout("NLC", (7, 3), 3, 2, 3, 1))
    assert out.shape == (2, 3, 2, 3)
    assert torch.equal(out[1, 2, 1, 0], x[1, 1 + 3, 2])  # token (row 1, col 0) is patch 3
    y = torch.randn(1, 4, 5, 6)
    assert torch.equal(to_map(y, Layout("NHWC", (4, 5, 6), 6, 4, 5)), y.permute(0, 3, 1, 2))


# --- default layers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs,default,layout,prefix", [
    ("vit_tiny_patch16_224", {}, "blocks.11.norm1", "NLC", 1),  # class-token pooled: last block is dead
    ("vit_tiny_patch16_224", {"global_pool": "avg", "class_token": False}, "blocks.11", "NLC", 0),
    ("deit_tiny_distilled_patch16_224", {}, "blocks.11.norm1", "NLC", 2),
    ("vit_tiny_patch16_224", {"reg_tokens": 4}, "blocks.11.norm1", "NLC", 5),
    ("swin_tiny_patch4_window7_224", {}, "layers.3", "NHWC", 0),
])
def test_default_layer_per_family(name, kwargs, default, layout, prefix):
    loaded = small(name, **kwargs)
    info = next(i for i in loaded.layers if i.name == loaded.default_layer)
    assert (loaded.default_layer, info.layout, info.prefix) == (default, layout, prefix)
    assert info.height * info.width > 1
    names = loaded.candidate_layers
    assert all(f"{'layers' if 'swin' in name else 'blocks'}.{i}" in names for i in range(2))


def test_token_gradient_of_the_last_vit_block_is_zero_so_it_is_not_the_default():
    loaded = small("vit_tiny_patch16_224", 96)
    x = torch.randn(1, 3, 96, 96)
    dead = capture(loaded.model, "blocks.11", x, lambda lg: [0])
    alive = capture(loaded.model, loaded.default_layer, x, lambda lg: [0])
    assert dead.grad_logit.abs().max() == 0 and alive.grad_logit.abs().max() > 0
    assert alive.activations.shape == (1, 192, 6, 6)


# --- Grad-CAM oracle: pytorch-grad-cam with a reshape_transform -------------------------------------------
def tokens_to_grid(prefix: int, h: int, w: int):
    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:, :].reshape(t.shape[0], h, w, t.shape[2]).transpose(2, 3).transpose(1, 2)
    return reshape


@pytest.mark.parametrize("name,kwargs,reshape", [
    ("vit_tiny_patch16_224", {}, tokens_to_grid(1, 14, 14)),
    ("deit_tiny_distilled_patch16_224", {}, tokens_to_grid(2, 14, 14)),
    ("vit_tiny_patch16_224", {"reg_tokens": 4}, tokens_to_grid(5, 14, 14)),
    ("swin_tiny_patch4_window7_224", {}, lambda t: t.permute(0, 3, 1, 2)),
])
@pytest.mark.slow
def test_gradcam_on_token_models_matches_pytorch_grad_cam(cat_path, name, kwargs, reshape):
    loaded = small(name, **kwargs)
    exp = explain(loaded, cat_path, target=3, methods=("gradcam",))
    x = loaded.to_input([exp.crop]).contiguous()
    with GradCAM(model=loaded.model, target_layers=[get_module(loaded.model, exp.layer)],
                 reshape_transform=reshape) as cam:
        ref = minmax(torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(3)])[0])).numpy()
    ours = minmax(torch.from_numpy(exp.maps["gradcam"])).numpy()
    assert ref.max() == 1.0, "the reference map must not be blank"
    assert np.abs(ours - ref).max() <= 1e-4


# --- MI on tokens: exact --------------------------------------------------------------------------------
def test_mi_on_vit_tokens_equals_sklearn(cat_path):
    from sklearn.metrics import mutual_info_score

    loaded = small("vit_tiny_patch16_224")
    exp = explain(loaded, cat_path, methods=("micam",))
    store = {}
    handle = get_module(loaded.model, exp.layer).register_forward_hook(lambda m, i, o: store.setdefault("t", o))
    with torch.no_grad():
        loaded.model(loaded.to_input([exp.crop]))
    handle.remove()
    grid = store["t"][0, 1:].reshape(14, 14, -1).permute(2, 0, 1)  # drop the class token, 192 x 14 x 14
    gray = np.array(exp.crop.convert("L"))
    coarse = (grid * 2).round()  # ties between cells, so that channels differ in MI
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for acts in (grid, coarse):
            up = F.interpolate(acts[None], size=gray.shape, mode="nearest")[0].numpy()
            ref = np.array([mutual_info_score(gray.ravel(), up[k].ravel()) for k in range(0, 192, 8)])
            np.testing.assert_allclose(mutual_information(gray, acts.numpy())[::8], ref, rtol=1e-9, atol=1e-12)
            assert acts is grid or np.ptp(ref) > 0.05
    # Distinct values in every cell: every channel splits the image the same way, so the MI is the same.
    np.testing.assert_allclose(exp.weights["micam"], mutual_information(gray, grid.numpy()), rtol=1e-6)
    assert exp.weights["micam"].shape == (192,)


# --- refusals -------------------------------------------------------------------------------------------
def test_model_without_any_grid_is_refused_naming_it():
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    with pytest.raises(NotACNNError, match=r"Sequential cannot be explained: none of its layers.*grid"):
        from_module(mlp, data_config={**resolve_data_config({}, model=mlp), "input_size": (3, 32, 32)})


def test_feature_extractor_is_not_an_image_classifier():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64)
    with pytest.raises(NotACNNError, match="VisionTransformer is not an image classifier"):
        from_module(model, data_config={**resolve_data_config({}, model=model), "input_size": (3, 64, 64)})


# --- the zoo: one small random-weight model per family, every method, default layer ----------------------
FAMILIES = [
    ("vit_tiny_patch16_224", 96, {}),  # class-token pooling
    ("vit_tiny_patch16_224", 96, {"global_pool": "avg", "class_token": False}),
    ("deit_tiny_distilled_patch16_224", 96, {}),
    ("vit_tiny_patch16_224", 96, {"reg_tokens": 4}),
    ("eva02_tiny_patch14_224", 98, {}),
    ("swin_tiny_patch4_window7_224", None, {"depths": (1, 1, 1, 1)}),
    ("swinv2_tiny_window8_256", None, {"depths": (1, 1, 1, 1)}),
    ("maxvit_nano_rw_256", None, {}),
    ("coatnet_nano_rw_224", None, {}),
    ("convnext_atto", None, {}),
    ("levit_128s", None, {}),
    ("mixer_s32_224", 96, {}),
    ("poolformer_s12", None, {}),
    ("efficientformer_l1", None, {}),
    ("mobilevit_xxs", None, {}),
    ("fastvit_t8", None, {}),
    ("pvt_v2_b0", None, {}),
    ("twins_svt_small", None, {"depths": (1, 1, 1, 1)}),
    ("xcit_nano_12_p16_224", 96, {}),
    ("cait_xxs24_224", 96, {"depth": 2}),
    ("beit_base_patch16_224", 96, {"depth": 2, "embed_dim": 96, "num_heads": 2}),
    ("hiera_tiny_224", None, {}),
    ("tiny_vit_5m_224", None, {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,size,kwargs", FAMILIES, ids=lambda v: v if isinstance(v, str) else "")
def test_zoo_family_gives_finite_maps_of_the_input_size(cat_path, name, size, kwargs):
    """Every single-pass method that the registry says can run here (Score-CAM's K passes: the next test)."""
    loaded = small(name, size, **kwargs)
    methods = tuple(m for m in SINGLE_PASS if REGISTRY[m].why_not(loaded) is None)
    assert {"micam", "gradcam", "migradcam"} <= set(methods)
    exp = explain(loaded, cat_path, methods=methods)
    assert set(exp.maps) == set(methods)
    for method, saliency in exp.maps.items():
        assert saliency.shape == loaded.input_size, method
        assert np.isfinite(saliency).all(), method
    assert loaded.default_layer in loaded.candidate_layers


@pytest.mark.slow
@pytest.mark.parametrize("name,size,kwargs", [FAMILIES[0], FAMILIES[11]], ids=["vit", "mixer"])
def test_every_method_on_token_models(cat_path, name, size, kwargs):
    """Every method that can run here; the sampling ones (tens of passes per channel) are checked on a
    smaller token layer in tests/test_methods_passes.py."""
    loaded = small(name, size, **kwargs)
    channels = layer_channels(loaded, None)
    methods = tuple(m for m in METHODS if REGISTRY[m].why_not(loaded) is None
                    and REGISTRY[m].extra_passes(channels) <= channels + 1)
    assert {"scorecam", "ablationcam"} <= set(methods)
    exp = explain(loaded, cat_path, methods=methods)
    assert set(exp.maps) == set(methods)
    for method, saliency in exp.maps.items():
        assert saliency.shape == loaded.input_size and np.isfinite(saliency).all(), method


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MICAM_SLOW"), reason="walks all of timm (about 30 min on 2 CPUs); "
                    "set MICAM_SLOW=1 to run; docs/methods.md records its result")
def test_zoo_walk_over_all_timm_modules():
    from bench.zoo import walk

    rows = walk()
    ok = sum(r.status == "ok" for r in rows)
    assert ok >= 0.95 * len(rows), [r for r in rows if r.status != "ok"]
    assert all(r.status != "failed" for r in rows), [r for r in rows if r.status == "failed"]
