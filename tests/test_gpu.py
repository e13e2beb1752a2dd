"""ZeroGPU: duration estimates, CPU-only results, and the app's GPU functions across a real process boundary."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import fake_spaces
import numpy as np
import pytest
import torch

from conftest import EXAMPLES
from micam_core import Explanation, Faithfulness
from micam_core.gpu import (
    MAX_SECONDS,
    MIN_SECONDS,
    analyse_seconds,
    cpu_result,
    device_tensors,
    explain_seconds,
    forward_images,
    request_seconds,
    to_cpu,
)


def test_durations_grow_with_the_work_and_stay_in_bounds():
    assert forward_images(5, 32) == 5 * (4 + 66)
    assert MIN_SECONDS <= explain_seconds(3) <= analyse_seconds(3, 8) <= analyse_seconds(3, 64) <= MAX_SECONDS
    assert explain_seconds(3) < explain_seconds(3, extra_passes=1281)  # Score-CAM on 1280 channels
    assert analyse_seconds(1, 32) < analyse_seconds(3, 32)
    assert analyse_seconds(3, 32, model_bytes=100 * 2**20) < analyse_seconds(3, 32, model_bytes=2**30)
    assert request_seconds(10**9) == MAX_SECONDS and MIN_SECONDS <= request_seconds(0) <= 15
    assert request_seconds(-5, -1) == request_seconds(0)
    for value in (explain_seconds(3), analyse_seconds(3, 32)):
        assert isinstance(value, int) and value % 5 == 0


@dataclass
class Holder:
    name: str
    tensors: dict
    items: list


def test_to_cpu_and_device_tensors():
    grad = torch.ones(3, requires_grad=True) * 2
    holder = Holder("x", {"a": grad, "b": np.zeros(2)}, [torch.zeros(1), (torch.ones(1), "s")])
    moved = to_cpu(holder)
    assert not moved.tensors["a"].requires_grad and isinstance(moved.items[1], tuple)
    assert device_tensors(moved) == []
    meta = Holder("y", {"m": torch.empty(2, device="meta")}, [[torch.empty(1, device="meta")]])
    assert device_tensors(meta) == ["result.tensors['m']: meta", "result.items[0][0]: meta"]
    assert cpu_result(lambda: {"t": grad})()["t"].requires_grad is False


def returns_meta_tensor(n: int):
    return {"t": torch.empty(n, device="meta")}


@pytest.mark.slow
def test_fake_spaces_refuses_tensors_off_the_cpu():
    fn = fake_spaces.GPU(duration=lambda n: 10 + n)(returns_meta_tensor)
    with pytest.raises(TypeError, match="off the CPU"):
        fn(3)
    assert fn.durations == [13]


@pytest.mark.slow
def test_app_gpu_functions_through_a_process_boundary():
    from micam_app import work
    from micam_core.view import View

    explain_fn = fake_spaces.GPU(duration=lambda view, image: explain_seconds(len(view.methods)))(work.gpu_explain)
    analyse_fn = fake_spaces.GPU(duration=lambda view, exp: analyse_seconds(len(exp.maps), view.steps))(
        work.gpu_analyse)
    view = View().replace(methods=("micam", "gradcam", "migradcam"), steps=4)  # the arguments cross as the view
    try:
        exp = explain_fn(view, str(EXAMPLES / "chelsea_cat.jpg"))
        assert isinstance(exp, Explanation) and set(exp.maps) == {"micam", "gradcam", "migradcam"}
        assert exp.maps["micam"].shape == (224, 224)
        faith = analyse_fn(view, exp)
        assert isinstance(faith, Faithfulness) and faith.target == exp.target
        assert {"micam", "gradcam", "migradcam", "random", "centre"} <= set(faith.results)
        # the page's stages: keep/remove of every method, then each map, across the same boundary
        pairs = fake_spaces.GPU(duration=work.keep_remove_duration)(work.gpu_keep_remove)(view, exp)
        assert set(pairs.kept) == set(view.methods) and device_tensors(pairs) == []
        scored = fake_spaces.GPU(duration=work.score_duration)(work.gpu_score)(view, exp, "centre", None, None)
        assert scored.ends is not None and scored.results["centre"].curves.deletion_auc == pytest.approx(
            faith.results["centre"].curves.deletion_auc, abs=1e-5)
    finally:
        fake_spaces.shutdown()
    assert explain_fn.durations == [explain_seconds(3)] and analyse_fn.durations == [analyse_seconds(3, 4)]
    assert analyse_fn.sizes[0] > 100_000  # the explanation itself crossed over, pickled
    for result in (exp, faith):
        assert device_tensors(result) == []
        assert pickle.loads(pickle.dumps(result)) is not None
