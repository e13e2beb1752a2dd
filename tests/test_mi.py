"""mutual_information against the oracle: a loop of sklearn's mutual_info_score per channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import mutual_info_score

from micam_core import explain, mutual_information
from micam_core.capture import capture

RTOL = 1e-9


def sklearn_loop(gray: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """The authors' definition: nearest-upsample each channel, every distinct value a category."""
    up = F.interpolate(torch.as_tensor(acts)[None], size=gray.shape, mode="nearest")[0].numpy()
    return np.array([mutual_info_score(gray.ravel(), up[k].ravel()) for k in range(acts.shape[0])])


def assert_same(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    zero = ref == 0
    assert np.all(ours[zero] == 0.0), "channels with MI exactly 0 must give exactly 0"
    rel = np.abs(ours[~zero] - ref[~zero]) / np.abs(ref[~zero])
    assert rel.max(initial=0.0) <= RTOL, f"max relative error {rel.max()}"


def textured_gray(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    gray = rng.integers(0, 256, (h, w)).astype(np.uint8)
    gray[: h // 2] //= 5  # uneven histogram, some empty grey levels
    return gray


@pytest.mark.parametrize("size,feat", [((224, 224), (7, 7)), ((225, 230), (7, 9)), ((50, 37), (5, 6)),
                                       ((64, 64), (64, 64)), ((97, 61), (13, 4))])
def test_random_maps_with_ties(size, feat):
    rng = np.random.default_rng(sum(size) + sum(feat))
    gray = textured_gray(rng, *size)
    acts = rng.normal(size=(12, *feat)).astype(np.float32)
    acts[0:4] = np.maximum(acts[0:4], 0)  # ReLU: the zero cells of each channel form one category
    acts[4] = 0.0  # an all-zero channel: one category, MI 0
    acts[5] = np.clip(acts[5] * 4, 0, 6)  # ReLU6: zeros and saturated sixes tie
    acts[6] = np.round(acts[6])  # many small groups of ties
    acts[7] = 3.25  # constant non-zero channel
    assert_same(mutual_information(gray, acts), sklearn_loop(gray, acts))


def test_relu6_saturation_ties_change_the_value():
    rng = np.random.default_rng(1)
    gray = textured_gray(rng, 56, 56)
    base = rng.uniform(0, 12, size=(1, 7, 7)).astype(np.float32)
    clipped = np.minimum(base, 6.0)  # several cells tie at 6
    assert (clipped == 6.0).sum() > 2
    ours = mutual_information(gray, np.concatenate([base, clipped]))
    assert_same(ours, sklearn_loop(gray, np.concatenate([base, clipped])))
    assert ours[1] < ours[0], "merging tied cells must lower MI"


def test_constant_image_gives_zero():
    gray = np.full((32, 32), 77, np.uint8)
    acts = np.random.default_rng(2).normal(size=(3, 4, 4)).astype(np.float32)
    assert_same(mutual_information(gray, acts), sklearn_loop(gray, acts))


@pytest.mark.slow
def test_real_maps_from_the_bundled_model(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=("micam",))
    x = bundled.to_input([exp.crop])
    cap = capture(bundled.model, bundled.default_layer, x, lambda logits: logits.argmax(1).tolist(),
                  want_logit_grad=False, want_prob_grad=False)
    acts = cap.activations[0].numpy()
    gray = np.array(exp.crop.convert("L"))
    ours = mutual_information(gray, acts)
    assert_same(ours, sklearn_loop(gray, acts))
    assert np.allclose(exp.weights["micam"], ours, rtol=1e-6), "explain must use these MI weights"


def test_real_maps_of_an_earlier_layer(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=("micam",), layer="blocks.4")
    x = bundled.to_input([exp.crop])
    cap = capture(bundled.model, "blocks.4", x, lambda logits: [0], want_logit_grad=False, want_prob_grad=False)
    acts = cap.activations[0, :40].numpy()  # 14 x 14 maps
    gray = np.array(exp.crop.convert("L"))
    assert_same(mutual_information(gray, acts), sklearn_loop(gray, acts))


@pytest.mark.parametrize("gray,acts,message", [
    (np.zeros((8, 8), np.float32), np.zeros((1, 2, 2), np.float32), "uint8"),
    (np.zeros((8, 8), np.uint8), np.zeros((2, 2), np.float32), "K x h x w"),
    (np.zeros((8, 8), np.uint8), np.full((1, 2, 2), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4), np.uint8), np.zeros((1, 8, 8), np.float32), "larger"),
])
def test_bad_inputs_are_refused_clearly(gray, acts, message):
    with pytest.raises(ValueError, match=message):
        mutual_information(gray, acts)
