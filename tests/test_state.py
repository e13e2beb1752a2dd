"""The caller's model is left exactly as it was; concurrent calls do not mix."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from micam_core import LayerError, MicamError, TargetError, explain
from micam_core.models import from_module


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                     for m in model.modules()),
        "grad_mode": torch.is_grad_enabled(),
    }


def assert_unchanged(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    assert before["grad_mode"] == after["grad_mode"]
    for a, b in zip(before["grads"], after["grads"]):
        assert (a is None and b is None) or torch.equal(a, b)
    for a, b in zip(before["params"] + before["buffers"], after["params"] + after["buffers"]):
        assert torch.equal(a, b)


@pytest.fixture()
def tiny_model():
    """A small CNN in a deliberately unusual state: mixed train/eval, frozen stem, existing grads."""
    import timm

    torch.manual_seed(3)
    loaded = from_module(timm.create_model("resnet10t", num_classes=5), spec="tiny", device="cpu",
                         data_config={"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.25,) * 3,
                                      "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"})
    model = loaded.model
    model.train()
    model.layer2.eval()
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    model.fc.weight.grad = torch.full_like(model.fc.weight, 0.5)
    return loaded


def test_state_and_hooks_unchanged_after_100_calls_some_failing(tiny_model):
    rng = np.random.default_rng(0)
    before = snapshot(tiny_model.model)
    failures = 0
    for i in range(100):
        image = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)
        try:
            if i % 4 == 1:
                explain(tiny_model, image, target=99)  # fails after the forward pass
            elif i % 4 == 2:
                explain(tiny_model, image, layer="fc")  # fails inside the hook (not a feature map)
            elif i % 4 == 3:
                explain(tiny_model, image, layer="no.such.layer")
            else:
                explain(tiny_model, image)
        except (TargetError, LayerError):
            failures += 1
    assert failures == 75
    assert_unchanged(before, snapshot(tiny_model.model))


def test_batchnorm_statistics_untouched_in_train_mode(tiny_model):
    before = snapshot(tiny_model.model)
    explain(tiny_model, np.zeros((64, 64, 3), np.uint8))
    assert_unchanged(before, snapshot(tiny_model.model))  # buffers equal: ran in eval mode


def test_works_inside_no_grad_and_inference_mode(tiny_model):
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ref = explain(tiny_model, image)
    with torch.no_grad():
        inside = explain(tiny_model, image)
        assert not torch.is_grad_enabled()
    with torch.inference_mode():
        inside_inference = explain(tiny_model, image)
    for method in ref.maps:
        np.testing.assert_array_equal(ref.maps[method], inside.maps[method])
        np.testing.assert_array_equal(ref.maps[method], inside_inference.maps[method])


def test_failure_inside_forward_restores_grad_mode(tiny_model):
    def boom(*_):
        raise RuntimeError("boom")

    handle = tiny_model.model.fc.register_forward_hook(boom)  # after the tapped layer
    before = snapshot(tiny_model.model)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            explain(tiny_model, np.zeros((64, 64, 3), np.uint8))
        assert_unchanged(before, snapshot(tiny_model.model))
    finally:
        handle.remove()


@pytest.mark.slow
def test_two_threads_get_the_same_results_as_sequential(bundled, cat_path, coffee_path):
    images = {"cat": cat_path, "coffee": coffee_path}
    sequential = {name: explain(bundled, path) for name, path in images.items()}
    results: dict[str, list] = {name: [] for name in images}
    errors: list[BaseException] = []
    start = threading.Barrier(len(images))

    def work(name):
        try:
            start.wait()
            for _ in range(8):
                results[name].append(explain(bundled, images[name]))
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(name,)) for name in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, runs in results.items():
        assert len(runs) == 8
        for run in runs:
            assert run.target == sequential[name].target
            for method in run.maps:
                np.testing.assert_allclose(run.maps[method], sequential[name].maps[method], atol=1e-5)
    assert sum(len(m._forward_hooks) for m in bundled.model.modules()) == 0


def test_empty_input_is_refused(bundled):
    with pytest.raises(MicamError, match="No image"):
        explain(bundled, [])
