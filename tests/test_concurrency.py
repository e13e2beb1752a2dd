"""Overlapping requests with different images, models and targets each get exactly their own result."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from conftest import EXAMPLES

REQUESTS = [  # (image, model, options)
    ("chelsea_cat.jpg", "bundled:efficientnet_lite0", {}),
    ("coffee.jpg", "bundled:efficientnet_lite0", {"target": "cup"}),
    ("rocket.jpg", "bundled:efficientnet_lite0", {"target": "657"}),
    ("astronaut.jpg", "bundled:efficientnet_lite0", {"layer": "blocks.5"}),
    ("chelsea_cat.jpg", "hf-hub:micam-test/tiny-resnet", {}),
    ("coffee.jpg", "hf-hub:micam-test/tiny-resnet", {"target": "3"}),
    ("rocket.jpg", "hf-hub:micam-test/tiny-mobilenet", {}),
    ("astronaut.jpg", "hf-hub:micam-test/tiny-mobilenet", {"target": "2"}),
    ("chelsea_cat.jpg", "bundled:efficientnet_lite0", {"target": "Egyptian cat", "upsampling": "bilinear"}),
    ("astronaut.jpg", "hf-hub:micam-test/tiny-resnet", {"fill": "blur"}),
]


class Overlap:
    """Wraps functions so that each call is held a little and the most calls in flight at once are counted."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s, self.in_flight, self.peak, self.lock = hold_s, 0, 0, threading.Lock()

    def slowed(self, original):
        def run(*args, **kwargs):
            with self.lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                time.sleep(self.hold_s)  # widen the window so that requests really overlap
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.in_flight -= 1
        return run


def submit(client, image: str, model: str, options: dict):
    return client.submit(handle_file(str(EXAMPLES / image)), model, api_name="/explain", steps=4, **options)


def summary(result) -> dict:
    report = result[4]
    return {
        "overlays": [np.asarray(Image.open(path), dtype=np.int16) for path in result[:3]],
        "spec": report["model"]["spec"], "layer": report["layer"], "target": report["target"]["index"],
        "predictions": [(p["index"], p["probability"]) for p in report["predictions"]],
        "metrics": {name: (facts["deletion_auc"], facts["insertion_auc"], facts["average_drop_pct"],
                           facts["flipped_when_removed"]) for name, facts in report["methods"].items()
                    if "deletion_auc" in facts},
    }


def assert_same(alone: dict, together: dict, where: str) -> None:
    assert (alone["spec"], alone["layer"], alone["target"]) == (together["spec"], together["layer"],
                                                                together["target"]), where
    for (i, p), (j, q) in zip(alone["predictions"], together["predictions"]):
        assert i == j and p == pytest.approx(q, abs=1e-5), where
    for name, values in alone["metrics"].items():
        other = together["metrics"][name]
        assert values[:3] == pytest.approx(other[:3], abs=1e-3) and values[3] == other[3], (where, name)
    for a, b in zip(alone["overlays"], together["overlays"]):
        assert a.shape == b.shape and np.abs(a - b).max() <= 2, where


@pytest.mark.slow
def test_overlapping_requests_each_get_their_own_result(client, hub_models, monkeypatch):
    from micam_app import work

    alone = [summary(submit(client, *request).result()) for request in REQUESTS]

    overlap = Overlap(hold_s=0.3)
    monkeypatch.setattr(work, "gpu_explain", overlap.slowed(work.gpu_explain))
    jobs = [submit(client, *request) for request in REQUESTS]
    together = [summary(job.result(timeout=600)) for job in jobs]
    assert overlap.peak >= 2, "the requests did not overlap"
    for request, a, b in zip(REQUESTS, alone, together):
        assert_same(a, b, str(request))
    assert len({s["spec"] for s in together}) == 3


ROAD_AND_SANITY = [("chelsea_cat.jpg", "top-1"), ("coffee.jpg", "3"), ("rocket.jpg", "5")]


def _road_and_sanity(spec: str, image: str, target: str) -> dict:
    """A ROAD request and the sanity checks of its explanation, through the work functions the app calls."""
    from micam_app import sanity_panel, work
    from micam_core.view import parse

    view, messages = parse({"model": spec, "target": target, "protocol": "road", "methods": "gradcam,micam"},
                           link=True)
    assert not messages, messages
    loaded = work.load(view.model)
    exp = work.explain_view(loaded, str(EXAMPLES / image), view)
    faith = work.analyse_view(loaded, exp, view)
    steps = sanity_panel.bounded_plan(loaded, exp)  # as the panel's handler runs them
    checks = sanity_panel.gpu_sanity(loaded.spec, exp, sanity_panel.checks_seconds(loaded, exp, steps))
    return {"maps": exp.maps, "road": faith.road_curves(), "sanity": checks.to_report()}


@pytest.fixture(scope="module")
def small_input_model() -> str:
    """A tiny CNN at 64 px in the session's Hub cache (ROAD's imputation solves grow with the pixels)."""
    import timm
    import torch

    from conftest import add_to_hub_cache

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_050", num_classes=7)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "crop_pct": 1.0}
    return "hf-hub:" + add_to_hub_cache("micam-test/tiny-64px", model=model)


@pytest.mark.slow
def test_overlapping_road_and_sanity_requests_each_get_their_own_result(small_input_model, monkeypatch):
    from micam_app import sanity_panel, work

    spec = small_input_model
    alone = [_road_and_sanity(spec, *request) for request in ROAD_AND_SANITY]
    overlap = Overlap(hold_s=0.2)
    monkeypatch.setattr(work, "gpu_analyse", overlap.slowed(work.gpu_analyse))
    monkeypatch.setattr(sanity_panel, "sanity_checks", overlap.slowed(sanity_panel.sanity_checks))
    together: list[dict | None] = [None] * len(ROAD_AND_SANITY)

    def job(i: int) -> None:
        together[i] = _road_and_sanity(spec, *ROAD_AND_SANITY[i])

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(ROAD_AND_SANITY))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert overlap.peak >= 2, "the requests did not overlap"
    for request, a, b in zip(ROAD_AND_SANITY, alone, together):
        assert b is not None, request
        for name, saliency in a["maps"].items():
            np.testing.assert_allclose(saliency, b["maps"][name], atol=1e-5, err_msg=str(request))
        for name, curves in a["road"].items():
            for order in ("morf", "lerf"):
                assert curves[order] == pytest.approx(b["road"][name][order], abs=1e-5), (request, name)
        _same_numbers(a["sanity"], b["sanity"], str(request))
    assert len({str(t["road"]) for t in together}) == len(ROAD_AND_SANITY)  # different requests, different results


def _same_numbers(a, b, path: str = "") -> bool:
    """Nested reports equal, numbers to 1e-5 (seconds taken left out)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        return all(_same_numbers(a[k], b[k], f"{path}.{k}") for k in a if k != "seconds")
    if isinstance(a, list):
        assert len(a) == len(b), path
        return all(_same_numbers(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, float):
        assert a == pytest.approx(b, abs=1e-5, nan_ok=True), path
        return True
    assert a == b, path
    return True
