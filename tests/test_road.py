"""ROAD: noisy linear imputation and MoRF/LeRF scores against pytorch-grad-cam 1.5.7 and by hand."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from test_counterfactual import fake_explanation, quadrant_loaded, quadrant_map

from micam_app.views import metrics_rows
from micam_core import METHODS, REGISTRY, MicamError, analyse, explain, imputation
from micam_core.cost import extra_passes
from micam_core.counterfactual import pixels_of
from micam_core.imputation import backend, has_cholmod, releases_gil, solve
from micam_core.metrics_table import NOT_RUN, rows, text
from micam_core.protocols import PROTOCOLS, get_protocol
from micam_core.road import REMOVED, percentile_of, queue_road, read_road, removal_masks, road_impute, road_scores

PGC_ORDER = {"morf": RemoveMostRelevantFirst, "lerf": RemoveLeastRelevantFirst}


def pgc_impute(pixels: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's imputation (noise 0) of H x W x 3 pixels; its mask is 1 where a pixel is kept."""
    chw = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    out = NoisyLinearImputer(noise=0)(chw, torch.from_numpy((~missing).astype(np.float32)))
    return out.numpy().transpose(1, 2, 0)


def test_one_missing_pixel_by_hand():
    pixels = np.random.default_rng(0).random((3, 3, 3))
    missing = np.zeros((3, 3), bool)
    missing[1, 1] = True
    weights = np.array([[1, 2, 1], [2, 0, 2], [1, 2, 1]]) / 12.0
    expected = (pixels * weights[..., None]).sum(axis=(0, 1))
    out = road_impute(pixels, missing, noise=0)
    np.testing.assert_allclose(out[1, 1], expected, atol=1e-6)
    np.testing.assert_array_equal(out[~missing], pixels[~missing])


def test_corner_pixel_uses_only_in_image_neighbours():
    pixels = np.zeros((4, 4, 3))
    pixels[0, 1], pixels[1, 0], pixels[1, 1] = 1.0, 2.0, 3.0
    missing = np.zeros((4, 4), bool)
    missing[0, 0] = True
    expected = (1.0 / 6 + 2.0 / 6 + 3.0 / 12) / (1 / 6 + 1 / 6 + 1 / 12)
    np.testing.assert_allclose(road_impute(pixels, missing, noise=0)[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_imputation_equals_pytorch_grad_cam_small(fraction):
    rng = np.random.default_rng(1)
    pixels = rng.random((48, 64, 3))
    yy, xx = np.mgrid[:48, :64]
    saliency = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 300.0) + 0.1 * rng.random((48, 64))
    missing = removal_masks(saliency, "morf", [fraction])[0]
    np.testing.assert_allclose(road_impute(pixels, missing, noise=0), pgc_impute(pixels, missing), atol=1e-4)


def test_scattered_mask_equals_pytorch_grad_cam():
    rng = np.random.default_rng(2)
    pixels, missing = rng.random((40, 40, 3)), rng.random((40, 40)) < 0.7
    np.testing.assert_allclose(road_impute(pixels, missing, noise=0), pgc_impute(pixels, missing), atol=1e-4)


def test_noise_is_seeded_and_only_on_missing_pixels():
    rng = np.random.default_rng(3)
    pixels, missing = rng.random((32, 32, 3)), rng.random((32, 32)) < 0.4
    a, b = road_impute(pixels, missing, noise=0.01, seed=5), road_impute(pixels, missing, noise=0.01, seed=5)
    np.testing.assert_array_equal(a, b)
    c = road_impute(pixels, missing, noise=0.01, seed=6)
    assert not np.allclose(a[missing], c[missing])
    np.testing.assert_array_equal(a[~missing], pixels[~missing])
    diff = a - road_impute(pixels, missing, noise=0)
    assert 0.007 < diff[missing].std() < 0.013  # N(0, 0.01)
    with pytest.raises(MicamError, match="noise"):
        road_impute(pixels, missing, noise=-1)
    with pytest.raises(MicamError, match="H x W x 3"):
        road_impute(pixels[..., 0], missing)


def test_removal_masks_equal_pytorch_grad_cam(bundled, cat_path):
    """The pixels removed at each fraction and order are the ones pytorch-grad-cam's percentile removes."""
    exp = explain(bundled, cat_path, methods=["micam", "gradcam"])
    seen = []

    def record(tensor, kept):
        seen.append(kept.numpy() < 0.5)
        return tensor

    for saliency in exp.maps.values():
        for order, remover in PGC_ORDER.items():
            ours = removal_masks(saliency, order)
            seen.clear()
            for f in REMOVED:
                remover(percentile_of(f), record)(torch.zeros(3, 2, 2), torch.from_numpy(saliency))
            np.testing.assert_array_equal(ours, np.stack(seen))
            np.testing.assert_allclose(ours.mean(axis=(1, 2)), REMOVED, atol=0.02)  # ties at the quantile go
    with pytest.raises(MicamError, match="order"):
        removal_masks(exp.maps["micam"], "sideways")
    with pytest.raises(MicamError, match="between 0 and 1"):
        removal_masks(exp.maps["micam"], "morf", [0.0, 0.5])


@pytest.mark.slow
def test_cat_imputation_equals_pytorch_grad_cam(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=["gradcam"])
    pixels = pixels_of(exp.crop).numpy() / 255.0
    for order, fraction in (("morf", 0.9), ("lerf", 0.5)):
        missing = removal_masks(exp.maps["gradcam"], order, [fraction])[0]
        np.testing.assert_allclose(road_impute(pixels, missing, noise=0), pgc_impute(pixels, missing), atol=1e-4)


MAX_TEST_PASSES = 2000  # SS-CAM (44,800 passes) and IS-CAM (12,801) on this layer: bench/road.py, not here


def runnable_methods(loaded) -> list[str]:
    """Registry methods that run on ``loaded`` within the test's budget of extra forward passes."""
    return [m for m in METHODS if not REGISTRY[m].why_not(loaded, None)
            and (extra_passes(loaded, None, [m]) or 0) <= MAX_TEST_PASSES]


@pytest.mark.slow
def test_scores_equal_pytorch_grad_cam_for_every_method(bundled, cat_path):
    """Every registry method that runs on the bundled model: MoRF and LeRF at two fractions each, noise 0."""
    methods = runnable_methods(bundled)
    assert {"micam", "gradcam", "scorecam"} <= set(methods)
    exp = explain(bundled, cat_path, methods=methods)
    x = bundled.to_input([exp.crop])
    target = [ClassifierOutputSoftmaxTarget(exp.target)]
    for k, method in enumerate(methods):
        fractions = (REMOVED[k % 9], REMOVED[(k + 4) % 9])
        for order, remover in PGC_ORDER.items():
            ours = road_scores(bundled, exp, method, order, removed=fractions, noise=0)
            for fraction, score in zip(fractions, ours):
                metric = PerturbationConfidenceMetric(remover(percentile_of(fraction), NoisyLinearImputer(noise=0)))
                theirs = metric(x, exp.maps[method][None], target, bundled.model, return_diff=False)[0]
                assert score == pytest.approx(float(theirs), abs=1e-3), (method, order, fraction)


def test_analyse_road_protocol_on_a_tiny_model():
    loaded = quadrant_loaded()
    faith = analyse(loaded, fake_explanation(loaded, quadrant_map()), protocol="road", baselines=True)
    assert faith.protocol.name == "road" and faith.to_report()["micam"]["settings"]["protocol"] == "road"
    for result in faith.results.values():
        road = result.road
        assert road is not None and len(road.morf) == len(road.lerf) == len(REMOVED)
        assert road.combined == pytest.approx((road.lerf.mean() - road.morf.mean()) / 2)
        assert result.curves.deletion is None and np.isnan(result.curves.deletion_auc)
    micam = faith.results["micam"].road
    assert micam.morf[-1] < micam.lerf[0]  # removing the bright quadrant first hurts "bright"
    table = rows(faith)
    assert table[0][5] == NOT_RUN and table[0][7] != NOT_RUN
    terminal = text(faith)  # the terminal leaves out what the protocol did not run; the app's table keeps it
    assert "ROAD MoRF" in terminal and "deletion AUC" not in terminal and NOT_RUN not in terminal
    rise = analyse(loaded, fake_explanation(loaded, quadrant_map()), protocol="rise", baselines=False)
    assert "deletion AUC" in text(rise) and "ROAD" not in text(rise).split("\n", 1)[1]
    page = metrics_rows(faith.results, ("micam",), "road")  # the app's table: the protocol's columns too
    assert "ROAD combined (LeRF-MoRF)/2 (higher better)" in page["headers"] and not any(
        "Deletion" in h or "Insertion" in h for h in page["headers"])
    assert all(len(r) == len(page["headers"]) and NOT_RUN not in r for r in page["data"])
    same = road_scores(loaded, fake_explanation(loaded, quadrant_map()), "micam", "morf")
    np.testing.assert_allclose(same, micam.morf, atol=1e-6)


def test_protocols_are_records():
    assert set(PROTOCOLS) >= {"paper", "rise", "road"}
    paper = get_protocol("paper")
    assert (paper.threshold, paper.fill, paper.steps, paper.metrics) == (0.5, "black", 100, ("deletion",))
    assert get_protocol(None).name == "rise" and get_protocol("rise").insertion_start == "blur"
    assert "changed: steps" in paper.with_settings(steps=8).describe()
    with pytest.raises(MicamError, match="choose from"):
        get_protocol("nope")
    loaded = quadrant_loaded()
    faith = analyse(loaded, fake_explanation(loaded, quadrant_map()), protocol=paper.with_settings(steps=8),
                    baselines=False)
    curves = faith.results["micam"].curves
    assert len(curves.deletion) == 9 and curves.insertion is None and faith.results["micam"].road is None


def test_road_curves_carry_the_fractions_removed():
    """The app's and CLI's curve figure and the summary plot ROAD at the fractions actually removed."""
    import pandas as pd

    from micam_core.evaluation.metrics import CURVES
    from micam_core.evaluation.summary_plots import _positions

    loaded = quadrant_loaded()
    custom = dataclasses.replace(get_protocol("road"), removed=(0.25, 0.5, 0.75))
    faith = analyse(loaded, fake_explanation(loaded, quadrant_map()), protocol=custom, baselines=False)
    assert faith.road_curves()["micam"]["removed"] == [0.25, 0.5, 0.75]
    morf = next(c for c in CURVES if c.column == "road_morf_curve")
    rows = pd.DataFrame({"protocol": ["road"] * 2, "road_removed": [[0.25, 0.5, 0.75]] * 2})
    np.testing.assert_allclose(_positions(rows, morf, 3), [0.25, 0.5, 0.75])
    old = pd.DataFrame({"protocol": ["road"]})  # rows written before the column: the protocol's record
    np.testing.assert_allclose(_positions(old, morf, len(REMOVED)), REMOVED)


def test_nothing_known_gives_the_minimum_norm_fill_and_nothing_missing_the_image():
    """A constant map removes every pixel at its quantile: no known pixel, every constant solves it; 0 is chosen."""
    pixels = np.random.default_rng(4).random((8, 8, 3))
    np.testing.assert_array_equal(road_impute(pixels, np.ones((8, 8), bool), noise=0), 0.0)
    np.testing.assert_array_equal(road_impute(pixels, np.zeros((8, 8), bool), noise=0), pixels)


@pytest.mark.parametrize("seed", [5, 6])
def test_superlu_path_equals_pytorch_grad_cam(seed):
    """The default, permissively licensed solver (SuperLU), forced even where cvxopt is installed."""
    rng = np.random.default_rng(seed)
    pixels, missing = rng.random((3, 36, 44)), np.stack([rng.random((36, 44)) < 0.6, np.zeros((36, 44), bool)])
    missing[1, 5:30, 10:40] = True  # one block: a fill of separators and leaves alike
    out = solve(torch.from_numpy(pixels), torch.from_numpy(missing), "superlu").numpy()
    for k in range(2):
        hwc = pixels.transpose(1, 2, 0)
        np.testing.assert_allclose(out[k].transpose(1, 2, 0), pgc_impute(hwc, missing[k]), atol=1e-4)


@pytest.mark.skipif(not has_cholmod(), reason="cvxopt (the optional, GPL-3 [road-fast] extra) is not installed")
def test_cholmod_path_equals_superlu_path():
    rng = np.random.default_rng(7)
    pixels = torch.from_numpy(rng.random((3, 64, 48)))
    saliency = rng.random((8, 6)).repeat(8, axis=0).repeat(8, axis=1)
    missing = torch.from_numpy(np.concatenate([removal_masks(saliency, o) for o in ("morf", "lerf")]))
    np.testing.assert_allclose(solve(pixels, missing, "cholmod").numpy(), solve(pixels, missing, "superlu").numpy(),
                               rtol=0, atol=1e-6)


def test_backend_is_cholmod_only_where_cvxopt_is_installed(monkeypatch, caplog):
    assert backend() == ("cholmod" if has_cholmod() else "superlu")
    monkeypatch.setattr(imputation, "has_cholmod", lambda: False)
    with caplog.at_level(logging.DEBUG, logger=imputation.__name__):
        assert backend() == "superlu"
    assert "superlu" in caplog.text
    pixels, missing = np.random.default_rng(8).random((12, 12, 3)), np.eye(12, dtype=bool)
    np.testing.assert_allclose(road_impute(pixels, missing, noise=0), pgc_impute(pixels, missing), atol=1e-4)
    with pytest.raises(MicamError, match="cvxopt"):
        backend("cholmod")
    with pytest.raises(MicamError, match="superlu, cholmod"):
        backend("umfpack")


@pytest.mark.parametrize("gil_free", [True, False])
def test_worker_thread_only_for_a_solver_that_lets_go_of_the_gil(monkeypatch, gil_free):
    """A solver that lets go of the GIL imputes beside the forward passes; cvxopt's own module (holds it) in turn."""
    from micam_core import cholmod_lib, road
    from micam_core.counterfactual import _Evaluator

    assert releases_gil("superlu") and (not has_cholmod() or releases_gil("cholmod") == cholmod_lib.available())
    used = []
    real = road.pipelined
    monkeypatch.setattr(road, "pipelined", lambda jobs, ahead: used.append(len(jobs)) or real(jobs, ahead))
    monkeypatch.setattr(road, "releases_gil", lambda: gil_free)
    loaded = quadrant_loaded()
    exp = fake_explanation(loaded, quadrant_map())
    ev = _Evaluator(loaded)
    plan = queue_road(ev, pixels_of(exp.crop), exp.maps, REMOVED, 0.0, 0)
    result = read_road(plan["micam"], ev.results()[:, exp.target], REMOVED, 0.0, 0)
    assert used == ([2 * len(REMOVED)] if gil_free else [])
    np.testing.assert_allclose(result.morf, road_scores(loaded, exp, "micam", "morf", noise=0), atol=1e-6)
