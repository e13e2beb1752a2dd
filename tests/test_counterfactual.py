"""Counterfactuals and faithfulness metrics: exact values on a hand-built model, oracles, batching."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from micam_core import MicamError, analyse, deletion_insertion, explain
from micam_core.counterfactual import blurred, pixels_of
from micam_core.methods import Explanation
from micam_core.models import LoadedModel

K, B = 6.0, 2.0  # logits = [K * m, B], m = mean brightness (0..1) of the top-left 8 x 8 quadrant
SIZE = 16


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class QuadrantModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.extend(x.detach().clone())
        m = x[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([K * m, torch.full_like(m, B)], dim=1)


def quadrant_loaded() -> LoadedModel:
    config = {"input_size": (3, SIZE, SIZE), "mean": (0.0,) * 3, "std": (1.0,) * 3,
              "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}
    return LoadedModel(model=QuadrantModel(), spec="test:quadrant", data_config=config,
                       class_names=["bright", "dark"], default_layer="", layers=[])


def quadrant_image() -> Image.Image:
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[:8, :8] = 255  # bright top-left quadrant, black elsewhere
    return Image.fromarray(pixels)


def quadrant_map() -> np.ndarray:
    saliency = np.zeros((SIZE, SIZE), np.float32)
    saliency[:8, :4] = 1.0  # ranked first (32 pixels, row-major)
    saliency[:8, 4:8] = 0.5  # ranked next (32 pixels)
    return saliency


def fake_explanation(loaded: LoadedModel, saliency: np.ndarray) -> Explanation:
    y = sig(K - B)
    return Explanation(crop=quadrant_image(), probs=np.array([y, 1 - y]), target=0, target_label="bright",
                       layer="-", maps={"micam": saliency}, weights={}, lowres={"micam": np.zeros((4, 4))},
                       class_names=loaded.class_names)


def blur_weight() -> float:
    """Side weight ``a`` of the 3-tap kernel the insertion start uses at 16 px (sigma = 5 * 16 / 224)."""
    sigma = 5.0 * SIZE / 224.0
    w1 = math.exp(-1.0 / (2.0 * sigma**2))
    return w1 / (1.0 + 2.0 * w1)


def trapezoid(ys: list[float]) -> float:
    dx = 1.0 / (len(ys) - 1)
    return dx * (ys[0] / 2 + sum(ys[1:-1]) + ys[-1] / 2)


def test_hand_computed_values():
    loaded = quadrant_loaded()
    result = analyse(loaded, fake_explanation(loaded, quadrant_map()), threshold=0.5, fill="black",
                     steps=8, baselines=False).results["micam"]
    y = sig(K * 1 - B)
    a = blur_weight()
    # Deletion, 32 pixels a step: left half of the quadrant, then the right half, then the black rest.
    deletion = [y, sig(K * 0.5 - B)] + [sig(-B)] * 7
    # Insertion starts from the blurred image: the quadrant's last row and column are darkened.
    m_blur = (49 + 14 * (1 - a) + (1 - a) ** 2) / 64
    m_half = (53 + 10 * (1 - a) + (1 - a) ** 2) / 64
    insertion = [sig(K * m_blur - B), sig(K * m_half - B)] + [y] * 7
    np.testing.assert_allclose(result.curves.deletion, deletion, atol=1e-6)
    np.testing.assert_allclose(result.curves.insertion, insertion, atol=1e-6)
    assert result.curves.deletion_auc == pytest.approx(trapezoid(deletion), abs=1e-6)
    assert result.curves.insertion_auc == pytest.approx(trapezoid(insertion), abs=1e-6)
    assert result.p_keep == pytest.approx(y, abs=1e-6)  # the kept region is the whole quadrant
    assert result.p_remove == pytest.approx(sig(-B), abs=1e-6)
    assert result.flipped  # class "dark" wins once the quadrant is black
    o = sig(K * 0.75 - B)  # saliency x image: half the quadrant at full, half at 0.5
    assert result.average_drop == pytest.approx(100 * (y - o) / y, abs=1e-4)
    assert result.increase is False
    assert result.paper_drop == pytest.approx(0.0, abs=1e-4)
    assert result.paper_increase == pytest.approx(100 * (y - sig(-B)) / y, abs=1e-4)
    assert result.region_fraction == pytest.approx(64 / 256)


def test_mean_fill_by_hand():
    loaded = quadrant_loaded()
    result = analyse(loaded, fake_explanation(loaded, quadrant_map()), fill="mean", steps=4,
                     baselines=False).results["micam"]
    mean = 64 / 256  # the image's mean brightness fills the removed quadrant
    assert result.p_remove == pytest.approx(sig(K * mean - B), abs=1e-6)
    assert result.p_keep == pytest.approx(sig(K - B), abs=1e-6)
    assert result.curves.deletion[-1] == pytest.approx(sig(K * mean - B), abs=1e-6)


def test_public_deletion_insertion_matches_analyse():
    loaded = quadrant_loaded()
    curves = deletion_insertion(loaded, quadrant_image(), quadrant_map(), target="bright", steps=8)
    full = analyse(loaded, fake_explanation(loaded, quadrant_map()), steps=8, baselines=False).results["micam"]
    np.testing.assert_allclose(curves.deletion, full.curves.deletion, atol=1e-7)
    np.testing.assert_allclose(curves.insertion, full.curves.insertion, atol=1e-7)
    assert len(curves.deletion) == 9 and curves.deletion[0] == pytest.approx(sig(K - B), abs=1e-6)
    with pytest.raises(MicamError, match="saliency map"):
        deletion_insertion(loaded, quadrant_image(), np.zeros((5, 5)), steps=8)


def test_deletion_removes_top_pixels_in_all_three_channels():
    loaded = quadrant_loaded()
    rng = np.random.default_rng(0)
    pixels = rng.integers(1, 256, (SIZE, SIZE, 3), dtype=np.uint8)  # no pixel is black to begin with
    saliency = rng.random((SIZE, SIZE)).astype(np.float32)
    deletion_insertion(loaded, Image.fromarray(pixels), saliency, target=0, steps=4)
    seen = [x.permute(1, 2, 0).numpy() * 255.0 for x in loaded.model.seen]
    order = np.argsort(-saliency.ravel(), kind="stable")
    for count in (64, 128, 192):
        expected = pixels.reshape(-1, 3).astype(np.float32).copy()
        expected[order[:count]] = 0.0  # all three colour channels of the top pixels
        expected = expected.reshape(SIZE, SIZE, 3)
        assert any(np.allclose(s, expected, atol=1e-3) for s in seen), count


def test_insertion_starts_blurred_and_ends_original(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=("micam",))
    pixels = np.array(exp.crop, dtype=np.float32)
    oracle = cv2.GaussianBlur(pixels, (11, 11), 5.0, borderType=cv2.BORDER_REFLECT_101)
    ours = blurred(pixels_of(exp.crop)).numpy()
    assert np.abs(ours - oracle).max() < 1e-3
    curves = deletion_insertion(bundled, cat_path, exp.maps["micam"], exp.target, steps=4)
    x = bundled.normalize(torch.from_numpy(np.stack([oracle, pixels])))
    with torch.no_grad():
        p_blur, p_orig = torch.softmax(bundled.model(x), 1)[:, exp.target].tolist()
    assert curves.insertion[0] == pytest.approx(p_blur, abs=1e-4)
    assert curves.insertion[-1] == pytest.approx(p_orig, abs=1e-4)
    assert curves.deletion[0] == pytest.approx(p_orig, abs=1e-4)


def test_average_drop_agrees_with_pytorch_grad_cam():
    """pytorch-grad-cam's DropInConfidence is ``max(0, Y - O)`` on the *normalised* tensor, without
    dividing by Y; with a model whose normalisation is the identity on [0, 1] the inputs coincide, so
    ours must equal ``100 * theirs / Y``. IncreaseInConfidence is ``O > Y`` in both."""
    loaded = quadrant_loaded()
    for saliency in (quadrant_map(), np.ones((SIZE, SIZE), np.float32) * 0.3, 1.0 - quadrant_map()):
        res = analyse(loaded, fake_explanation(loaded, saliency), baselines=False, steps=2).results["micam"]
        x = loaded.to_input([quadrant_image()])
        targets = [ClassifierOutputSoftmaxTarget(0)]
        theirs = DropInConfidence()(x, saliency[None], targets, loaded.model)[0]
        increase = IncreaseInConfidence()(x, saliency[None], targets, loaded.model)[0]
        assert res.average_drop == pytest.approx(100 * theirs / res.p_original, abs=1e-3)
        assert res.increase == bool(increase)


@pytest.mark.slow
def test_batched_and_one_at_a_time_agree(bundled, coffee_path):
    exp = explain(bundled, coffee_path)
    batched = analyse(bundled, exp, steps=8, chunk=128)
    single = analyse(bundled, exp, steps=8, chunk=1)
    assert single.forward_calls == single.images_evaluated and batched.forward_calls == 1
    for name, res in batched.results.items():
        other = single.results[name]
        np.testing.assert_allclose(res.curves.deletion, other.curves.deletion, atol=1e-5)
        np.testing.assert_allclose(res.curves.insertion, other.curves.insertion, atol=1e-5)
        assert res.average_drop == pytest.approx(other.average_drop, abs=1e-3)
        assert [i for i, _, _ in res.top_keep] == [i for i, _, _ in other.top_keep]


@pytest.mark.slow
def test_full_analysis_on_a_real_photo(bundled, cat_path):
    exp = explain(bundled, cat_path)
    faith = analyse(bundled, exp, steps=32)
    assert set(faith.results) == {"micam", "gradcam", "migradcam", "random", "centre"}
    assert faith.images_evaluated == 2 + 5 * (4 + 2 * 31)  # the original: the explanation's probabilities
    for res in faith.results.values():
        assert len(res.curves.deletion) == 33
        assert res.keep_image.size == exp.crop.size == res.remove_image.size
        assert res.curves.deletion[0] == pytest.approx(exp.probs[exp.target], abs=1e-4)
    with pytest.raises(MicamError, match="threshold"):
        analyse(bundled, exp, threshold=1.5)
    with pytest.raises(MicamError, match="fill"):
        analyse(bundled, exp, fill="pink")


def test_stages_give_the_numbers_of_one_analysis():
    """keep/remove first, then each map scored alone (ends once), assembled: the same as analyse()."""
    from micam_core.analysis import assemble, keep_remove, score_map

    loaded = quadrant_loaded()
    exp = fake_explanation(loaded, quadrant_map())
    whole = analyse(loaded, exp, threshold=0.5, fill="mean", steps=4)
    first = keep_remove(loaded, exp, threshold=0.5, fill="mean")
    assert first.images == 2 and set(first.kept) == {"micam"}
    stages, ends = [first], None
    for name in ("micam", "random", "centre"):
        stage = score_map(loaded, exp, name, first.kept.get(name), threshold=0.5, fill="mean", steps=4, ends=ends)
        ends = stage.ends
        stages.append(stage)
    assert [s.images for s in stages] == [2, 2 + 2 + 6, 2 + 2 + 6, 2 + 2 + 6]  # ends once; baselines' pairs inside
    staged = assemble(exp, stages, 0.5, "mean", 4)
    assert list(staged.results) == list(whole.results) == ["micam", "random", "centre"]
    assert staged.images_evaluated == whole.images_evaluated
    for name, res in whole.results.items():
        other = staged.results[name]
        np.testing.assert_allclose(other.curves.deletion, res.curves.deletion, atol=1e-7)
        np.testing.assert_allclose(other.curves.insertion, res.curves.insertion, atol=1e-7)
        for attr in ("p_keep", "p_remove", "p_explanation", "p_paper_baseline", "region_fraction", "p_original"):
            assert getattr(other, attr) == pytest.approx(getattr(res, attr), abs=1e-7), (name, attr)
        assert (other.flipped, other.top_remove, other.top_keep) == (res.flipped, res.top_remove, res.top_keep)


def test_stages_run_the_protocol_and_speak_of_the_target():
    """Staged under the ROAD protocol: no deletion/insertion, ROAD curves and verdicts as analyse() gives them."""
    from micam_core.analysis import assemble, keep_remove, score_map

    loaded = quadrant_loaded()
    exp = fake_explanation(loaded, quadrant_map())
    whole = analyse(loaded, exp, protocol="road", baselines=False)
    first = keep_remove(loaded, exp, protocol="road")
    assert first.kept["micam"].flipped is True and first.kept["micam"].rank_remove == 2
    stage = score_map(loaded, exp, "micam", first.kept["micam"], protocol="road")
    staged = assemble(exp, [first, stage], protocol="road")
    res, ref = staged.results["micam"], whole.results["micam"]
    assert staged.protocol.name == "road" and res.curves.deletion is None and res.curves.insertion is None
    np.testing.assert_allclose(res.road.morf, ref.road.morf, atol=1e-7)
    np.testing.assert_allclose(res.road.lerf, ref.road.lerf, atol=1e-7)
    assert staged.sentence("micam") == whole.sentence("micam")
    assert staged.to_report()["micam"]["settings"]["protocol"] == "road"


def test_flip_is_about_the_target_when_it_is_top1():
    loaded = quadrant_loaded()
    faith = analyse(loaded, fake_explanation(loaded, quadrant_map()), steps=2, baselines=False)
    result = faith.results["micam"]
    assert (result.rank_original, result.rank_keep, result.rank_remove) == (1, 1, 2)
    assert result.flipped is True
    sentence = faith.sentence("micam")
    assert sentence.startswith("Flipped") and "lowers bright from 98% to 12% (rank 1 → 2)" in sentence
    assert "dark becomes top-1;" in sentence and "25% of the image" in sentence


def test_no_flip_when_the_target_was_not_top1():
    """Target "dark" (rank 2): removing the bright quadrant raises it to top-1, which is not a flip."""
    loaded = quadrant_loaded()
    exp = fake_explanation(loaded, quadrant_map())
    exp.target, exp.target_label = 1, "dark"
    faith = analyse(loaded, exp, steps=2, baselines=False)
    result = faith.results["micam"]
    assert (result.rank_original, result.rank_remove) == (2, 1)
    assert result.flipped is None
    assert result.p_remove == pytest.approx(1 - sig(-B), abs=1e-6)
    sentence = faith.sentence("micam")
    assert "flip" not in sentence.lower()
    assert "raises dark from 2% to 88% (rank 2 → 1)" in sentence
    report = faith.to_report()["micam"]
    assert report["flipped_when_removed"] is None and report["target_rank"]["remove"] == 1


def test_egyptian_cat_is_not_called_a_flip(bundled, cat_path):
    """The cat photo, target 285 (top-1 is tiger cat): removing Grad-CAM's region raises Egyptian cat."""
    exp = explain(bundled, cat_path, target=285, methods=["gradcam"])
    assert exp.predicted != 285 and exp.top(1)[0][1] == "tiger cat"
    faith = analyse(bundled, exp, steps=2, baselines=False)
    result = faith.results["gradcam"]
    assert result.flipped is None and result.p_remove > result.p_original
    sentence = faith.sentence("gradcam")
    assert "flip" not in sentence.lower()
    assert "raises Egyptian cat from 34% to 63%" in sentence
