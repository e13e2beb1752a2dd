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

    in_flight, peak = [0], [0]
    lock = threading.Lock()
    original = work.gpu_explain

    def counted(*args, **kwargs):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.3)  # widen the window so that requests really overlap
            return original(*args, **kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    monkeypatch.setattr(work, "gpu_explain", counted)
    jobs = [submit(client, *request) for request in REQUESTS]
    together = [summary(job.result(timeout=600)) for job in jobs]
    assert peak[0] >= 2, "the requests did not overlap"
    for request, a, b in zip(REQUESTS, alone, together):
        assert_same(a, b, str(request))
    assert len({s["spec"] for s in together}) == 3
