"""Cost limits computed for every layer a request can name: a number of passes, or a refusal.

Round 3 found that ``blocks.6.0.se`` (two dots, so not in the picker) had no computed cost and
Score-CAM ran 746 passes under a limit of 100; here every module ``named_modules`` reaches is tried,
on a CNN and a ViT, and the passes are checked against each layer's output measured with a hook.
"""

from __future__ import annotations

import pytest
import timm
import torch

from micam_core import LayerError, MicamError, from_module
from micam_core.cost import extra_passes
from micam_core.gpu import explain_seconds
from micam_core.registry import REGISTRY
from micam_core.tokens import infer_layout, model_hints


def _maps_by_hook(loaded) -> dict[str, int]:
    """Channels of every module whose output is a map or a token grid (one hooked forward pass)."""
    shapes: dict[str, tuple] = {}

    def hook(name):
        def record(_module, _inputs, out) -> None:
            if isinstance(out, torch.Tensor):
                shapes.setdefault(name, tuple(out.shape))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in loaded.model.named_modules() if n]
    with torch.no_grad():
        loaded.model(torch.zeros(1, *loaded.data_config["input_size"]))
    for h in handles:
        h.remove()
    hints = model_hints(loaded.model)
    out = {}
    for name, shape in shapes.items():
        layout = infer_layout(shape, loaded.input_size, **hints)
        if layout is not None:
            out[name] = layout.channels
    return out


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return from_module(timm.create_model("mobilenetv3_small_050", num_classes=7), device="cpu")


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return from_module(timm.create_model("vit_tiny_patch16_224", num_classes=3), device="cpu")


@pytest.mark.parametrize("which", ["cnn", "vit"])
def test_every_named_module_has_a_cost_or_is_refused(which, request):
    loaded = request.getfixturevalue(which)
    maps = _maps_by_hook(loaded)
    deep = [n for n in maps if n.count(".") >= 2]
    assert deep, "the test needs layers deeper than the picker's"
    for name, _ in loaded.model.named_modules():
        if not name:
            continue
        try:
            passes = extra_passes(loaded, name, ["scorecam"])
        except LayerError as err:
            identity = isinstance(loaded.model.get_submodule(name), torch.nn.Identity)
            assert name not in maps or identity, f"{name} gives a map but was refused: {err}"
            continue
        assert isinstance(passes, int)
        if name in maps:  # the hook's channels are the cost (layers skipped by the hook keep the load-time value)
            assert passes == maps[name] + 1, name
    assert extra_passes(loaded, deep[0], ["gradcam", "micam"]) == 0  # no Score-CAM, no extra passes


def test_deep_layer_names_have_their_channels(cnn, vit):
    assert extra_passes(cnn, "blocks.2.0.se", ["scorecam"]) == cnn.model.get_submodule(
        "blocks.2.0.se").conv_expand.out_channels + 1
    assert extra_passes(vit, "blocks.1.mlp.fc1", ["scorecam"]) == 4 * 192 + 1  # hidden width of the MLP
    with pytest.raises(LayerError, match="no layer named"):
        extra_passes(vit, "blocks.1.mlp.nothing", ["scorecam"])
    with pytest.raises(LayerError, match="no feature map"):
        extra_passes(cnn, "blocks.2.0.se.conv_reduce", ["scorecam"])  # B x C x 1 x 1: no map


def _served(monkeypatch, loaded):
    from micam_app import work

    monkeypatch.setattr(work, "load", lambda spec: loaded)
    return work


@pytest.mark.parametrize("which,layer", [("cnn", "blocks.2.0.se"), ("vit", "blocks.1.mlp.fc1")])
def test_the_limit_holds_for_deep_layers_and_the_gpu_duration_follows(which, layer, request, monkeypatch):
    loaded = request.getfixturevalue(which)
    work = _served(monkeypatch, loaded)
    passes = extra_passes(loaded, layer, ["scorecam"])
    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", str(passes - 1))
    with pytest.raises(MicamError, match=f"{passes} extra forward passes"):
        work.check_cost(loaded, layer, ("scorecam",))
    with pytest.raises(MicamError, match="forward passes"):  # the GPU function itself refuses too
        work.gpu_explain(_view(layer, "scorecam"), None)
    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", str(passes))
    work.check_cost(loaded, layer, ("scorecam",))
    duration = work.explain_duration(_view(layer, "scorecam"), None)
    assert duration == explain_seconds(1, loaded.num_bytes, passes)
    assert duration >= work.explain_duration(_view(layer, "gradcam"), None)
    if which == "vit":  # 769 passes: more than the 15 s the uncounted layer was given in round 3
        assert duration > 15
    assert work.explain_duration(_view("no.such.layer", "scorecam"), None) == explain_seconds(
        1, loaded.num_bytes, 0)  # refused at once inside gpu_explain


def _view(layer: str, method: str):
    from micam_core.view import View

    return View(layer=layer).replace(methods=(method,))


EXTRA_PASS_METHODS = [m for m, record in REGISTRY.items() if not record.single_pass]


def test_a_methods_parameters_count_in_its_cost(cnn, monkeypatch):
    """SS-CAM's samples multiply its passes: a link asking for more samples cannot slip under the limit."""
    from micam_core.view import parse

    work = _served(monkeypatch, cnn)
    layer = "blocks.2.0.se"
    view, messages = parse({"methods": "sscam", "sscam_samples": "100", "layer": layer}, link=True)
    assert not messages and view.params()["sscam"]["samples"] == 100
    channels = extra_passes(cnn, layer, ["scorecam"]) - 1
    assert extra_passes(cnn, layer, ["sscam"], view.params()) == 100 * channels
    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", str(100 * channels - 1))  # over the default 35 samples' cost
    with pytest.raises(MicamError, match=f"{100 * channels} extra forward passes"):
        work.gpu_explain(view, None)
    assert work.explain_duration(view, None) == explain_seconds(1, cnn.num_bytes, 100 * channels - 1)


def _model_and_layer(method: str, request) -> tuple:
    """A model the method runs on and a deep layer of it (its default layer where the deep one does not do)."""
    for which, deep in (("cnn", "blocks.2.0.se"), ("vit", "blocks.1.mlp.fc1")):
        loaded = request.getfixturevalue(which)
        for layer in (deep, loaded.default_layer):
            if not REGISTRY[method].why_not(loaded, layer):
                return loaded, layer
    raise AssertionError(f"{method} runs on neither test model")


@pytest.mark.parametrize("method", EXTRA_PASS_METHODS)
def test_every_extra_pass_method_is_refused_over_the_limit_at_a_deep_layer(method, monkeypatch, request):
    loaded, layer = _model_and_layer(method, request)
    work = _served(monkeypatch, loaded)
    view = _view(layer, method)
    passes = extra_passes(loaded, view.layer, [method], view.params())
    assert passes >= 1
    monkeypatch.setenv("MICAM_MAX_EXTRA_PASSES", str(passes - 1) if passes > 1 else "0.5")
    with pytest.raises(MicamError, match="forward passes"):
        work.gpu_explain(view, None)


@pytest.mark.parametrize("method", EXTRA_PASS_METHODS)
def test_the_counted_passes_bound_what_a_method_spends(method, cat_path, request):
    """The record's bound is an upper bound of the passes the method really spends (small parameters)."""
    from micam_core import explain

    loaded, layer = _model_and_layer(method, request)
    params = {p.name: p.minimum for p in REGISTRY[method].params if p.name == "samples"}
    params |= {p.name: 2 for p in REGISTRY[method].params if p.name == "layers"}
    exp = explain(loaded, cat_path, layer=layer, methods=[method], params={method: params})
    bound = extra_passes(loaded, layer, [method], {method: params})
    assert 0 < exp.extra_forward_passes <= bound, (exp.extra_forward_passes, bound)
