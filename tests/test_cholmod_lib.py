"""CHOLMOD through ctypes: the same solutions as cvxopt's own module and SuperLU, the GIL let go, one workspace
per session, and the fallback to cvxopt's module when the library's layout is not the one it expects."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest
import torch

from micam_core import cholmod_lib
from micam_core.errors import MicamError
from micam_core.imputation import releases_gil, solve
from micam_core.road import ORDERS, pipelined, removal_masks

pytestmark = pytest.mark.skipif(not cholmod_lib.available(),
                                reason="cvxopt (the optional, GPL-3 [road-fast] extra) or its CHOLMOD is missing")


def masks_and_pixels(seed: int = 3, h: int = 48, w: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    saliency = rng.random((6, 5)).repeat(8, axis=0).repeat(8, axis=1)[:h, :w]
    masks = np.concatenate([removal_masks(saliency, o, (0.1, 0.5, 0.9)) for o in ORDERS])
    masks[0] = rng.random((h, w)) < 0.5  # scattered pixels: many small components
    return torch.from_numpy(rng.random((3, h, w))), torch.from_numpy(masks)


def cvxopt_module_solution(monkeypatch, pixels, masks) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(cholmod_lib, "available", lambda: False)
        return solve(pixels, masks, "cholmod").numpy()


def test_ctypes_path_equals_cvxopt_module_and_superlu(monkeypatch):
    pixels, masks = masks_and_pixels()
    ours = solve(pixels, masks, "cholmod").numpy()
    np.testing.assert_allclose(ours, cvxopt_module_solution(monkeypatch, pixels, masks), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, solve(pixels, masks, "superlu").numpy(), rtol=0, atol=1e-10)
    known = ~masks.numpy()[:, None].repeat(3, axis=1)
    assert (ours[known] == pixels.numpy()[None].repeat(len(masks), axis=0)[known]).all()


def test_the_library_lets_go_of_the_gil():
    """ctypes.CDLL (not PyDLL) calls release the GIL; so ROAD imputes in a worker thread beside the model."""
    lib = cholmod_lib.library()
    assert isinstance(lib, ctypes.CDLL) and not isinstance(lib, ctypes.PyDLL)
    assert not lib.cholmod_factorize._flags_ & ctypes._FUNCFLAG_PYTHONAPI
    assert releases_gil("cholmod")


def test_threads_each_have_their_own_workspace():
    cases = [masks_and_pixels(seed) for seed in range(4)]
    expected = [solve(p, m, "cholmod").numpy() for p, m in cases]
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, solve(*cases[k], "cholmod").numpy()))
               for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, want in enumerate(expected):
        np.testing.assert_array_equal(got[k], want)


def test_another_layout_falls_back_to_cvxopt_module(monkeypatch):
    pixels, masks = masks_and_pixels(5)
    want = solve(pixels, masks, "cholmod").numpy()
    cholmod_lib.library.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.setitem(cholmod_lib._DEFAULTS, "maxrank", 9)  # a default this layout does not read back
            assert not cholmod_lib.available() and not releases_gil("cholmod")
            np.testing.assert_allclose(solve(pixels, masks, "cholmod").numpy(), want, rtol=0, atol=1e-12)
            with pytest.raises(MicamError, match="unavailable"):
                cholmod_lib.Session()
    finally:
        cholmod_lib.library.cache_clear()
    assert cholmod_lib.available()


def test_pipelined_keeps_order_and_holds_at_most_ahead():
    started: list[int] = []
    gate = threading.Event()

    def job(k: int) -> int:
        started.append(k)
        return k

    jobs = [lambda k=k: job(k) for k in range(10)]
    for ahead in (1, 3):
        started.clear()
        results = []
        for value in pipelined(jobs, ahead):
            results.append(value)
            gate.wait(0.01)  # let the worker run as far ahead as it may
            assert len(started) <= len(results) + ahead
        assert results == list(range(10))
