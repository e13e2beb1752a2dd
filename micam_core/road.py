"""ROAD (Rong et al., ICML 2022): remove pixels by a map's order, fill them by noisy linear imputation.

MoRF removes the most relevant pixels first (a faithful map makes the target's probability fall
fast: lower is better), LeRF the least relevant first (the probability should stay: higher is
better). The combined score is ``(LeRF - MoRF) / 2`` over the mean probabilities, which equals
pytorch-grad-cam's ``ROADCombined`` (its per-percentile differences to the original probability
cancel).

Mapping to pytorch-grad-cam 1.5.7: removing a fraction ``f`` is its percentile ``p = 100 (1 - f)``;
MoRF removes the pixels whose map value is at or above ``numpy.percentile(map, p)``, LeRF those
where ``1 - map`` is (exactly its ``RemoveMostRelevantFirst`` / ``RemoveLeastRelevantFirst``). The
imputation happens on the model-input crop in [0, 1] pixel units, before normalisation; with noise
0 that equals its imputation of the normalised tensor (the per-channel normalisation is affine and
the imputed values are weighted means). Noise is N(0, ``noise``) in [0, 1] pixel units, one
seeded field per image added at every removed pixel (the same field for every map, order and
fraction: paired comparisons see the same noise).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from .errors import MicamError
from .imputation import releases_gil, solve
from .protocols import NOISE, REMOVED

ORDERS = ("morf", "lerf")
AHEAD_BYTES = 32 << 20  # imputations a worker may hold ahead of the forward passes (16 at 224 x 224)


def percentile_of(fraction: float) -> float:
    """pytorch-grad-cam's percentile for removing ``fraction`` of the pixels: ``100 (1 - fraction)``."""
    return round(100.0 * (1.0 - fraction), 9)


def check_removed(removed: Sequence[float]) -> tuple[float, ...]:
    removed = tuple(float(f) for f in removed)
    if not removed or not all(0.0 < f < 1.0 for f in removed):
        raise MicamError(f"ROAD's removed fractions must lie strictly between 0 and 1; got {removed}.")
    return removed


def removal_masks(saliency: np.ndarray, order: str, removed: Sequence[float] = REMOVED) -> np.ndarray:
    """``len(removed) x H x W`` bool: the pixels removed at each fraction, in ``order`` (morf or lerf)."""
    if order not in ORDERS:
        raise MicamError(f"ROAD's order must be one of {', '.join(ORDERS)}; got '{order}'.")
    values = np.asarray(saliency, dtype=np.float32)
    ranked = values if order == "morf" else 1 - values
    return np.stack([ranked >= np.percentile(ranked, percentile_of(f)) for f in check_removed(removed)])


def noise_field(shape: tuple[int, ...], noise: float, seed: int) -> torch.Tensor:
    """``noise * N(0, 1)`` of ``shape`` (``3 x H x W``), from a generator seeded with ``seed``."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return noise * torch.randn(shape, generator=gen, dtype=torch.float64)


def impute_many(pixels: torch.Tensor, missing: np.ndarray, noise: float = NOISE, seed: int = 0) -> torch.Tensor:
    """``N x 3 x H x W`` imputations (float64, [0, 1]) of ``pixels`` (``3 x H x W`` in [0, 1]), one per mask."""
    if noise < 0:
        raise MicamError(f"ROAD's noise must be 0 or more; got {noise}.")
    mask = torch.from_numpy(np.ascontiguousarray(missing)).to(pixels.device)
    out = solve(pixels, mask)
    if noise:
        out = out + noise_field(tuple(pixels.shape), noise, seed).to(out.device) * mask.unsqueeze(1)
    return out


def road_impute(pixels: np.ndarray, missing: np.ndarray, noise: float = NOISE, seed: int = 0) -> np.ndarray:
    """Noisy linear imputation of ``pixels`` (``H x W x 3`` float in [0, 1]) where ``missing`` (``H x W`` bool).

    Every missing pixel becomes the weighted mean of its 8 neighbours (1/6 edge, 1/12 corner), all
    missing pixels solved together (see :mod:`micam_core.imputation` for the solver and its tolerance),
    plus seeded Gaussian noise of standard deviation ``noise``. Returns the ``H x W x 3`` array.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    missing = np.asarray(missing, dtype=bool)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or missing.shape != pixels.shape[:2]:
        raise MicamError(f"road_impute needs H x W x 3 pixels and an H x W mask; got {pixels.shape} and "
                         f"{missing.shape}.")
    chw = torch.from_numpy(pixels).permute(2, 0, 1)
    return impute_many(chw, missing[None], noise, seed)[0].permute(1, 2, 0).numpy()


@dataclass
class RoadResult:
    """ROAD curves of one map: the target's probability after removing each fraction, both orders."""

    removed: tuple[float, ...]
    morf: np.ndarray
    lerf: np.ndarray
    noise: float
    seed: int

    @property
    def morf_score(self) -> float:
        """Mean target probability over the MoRF fractions (lower is better)."""
        return float(np.mean(self.morf))

    @property
    def lerf_score(self) -> float:
        """Mean target probability over the LeRF fractions (higher is better)."""
        return float(np.mean(self.lerf))

    @property
    def combined(self) -> float:
        """``(LeRF - MoRF) / 2``, as pytorch-grad-cam's ROADCombined (higher is better)."""
        return (self.lerf_score - self.morf_score) / 2.0

    def to_report(self) -> dict[str, Any]:
        return {"road_morf": self.morf_score, "road_lerf": self.lerf_score, "road_combined": self.combined,
                "road_removed": list(self.removed), "road_morf_curve": self.morf.tolist(),
                "road_lerf_curve": self.lerf.tolist(), "road_noise": self.noise, "road_seed": self.seed}


def pipelined(jobs: Sequence[Callable[[], Any]], ahead: int = 1) -> Iterator[Any]:
    """Each job's result in order, up to ``ahead`` later jobs running in a worker thread meanwhile.

    ROAD's imputation (when its solver lets go of the GIL) thus overlaps the model's forward passes on
    the images already imputed, instead of waiting for them; ``ahead`` bounds the results held at once.
    """
    if not jobs:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="road-impute") as pool:
        pending = deque(pool.submit(job) for job in jobs[:max(1, ahead)])
        for job in jobs[len(pending):]:
            done = pending.popleft()
            pending.append(pool.submit(job))
            yield done.result()
        while pending:
            yield pending.popleft().result()


def queue_road(ev: Any, pixels: torch.Tensor, maps: Mapping[str, np.ndarray], removed: Sequence[float],
               noise: float, seed: int) -> dict[str, dict[str, list[int]]]:
    """Impute every map's masks (both orders, one solve per mask) and queue them on ``ev``.

    Where the solver lets go of the GIL (:func:`micam_core.imputation.releases_gil`), the masks are imputed
    while the images before them go through the model (:func:`pipelined`, up to :data:`AHEAD_BYTES` of
    images ahead; ``ev`` runs them in its chunks);
    a solver that holds it would only stall the forward passes, so its masks are imputed in turn.
    ``pixels``: ``H x W x 3`` in 0..255 (the evaluator's units). Returns the queue indices per map and order.
    """
    chw = (pixels.permute(2, 0, 1).to(torch.float64) / 255.0)
    keys, jobs = [], []
    for name, saliency in maps.items():
        for order in ORDERS:
            for mask in removal_masks(saliency, order, removed):
                keys.append((name, order))
                jobs.append(partial(impute_many, chw, mask[None], noise, seed))
    plan: dict[str, dict[str, list[int]]] = {name: {order: [] for order in ORDERS} for name in maps}
    ahead = max(1, AHEAD_BYTES // (8 * chw.numel()))  # imputed float64 images held at once
    results = pipelined(jobs, ahead) if releases_gil() else (job() for job in jobs)
    for (name, order), images in zip(keys, results):
        plan[name][order].append(ev.add((images[0].permute(1, 2, 0) * 255.0).float().cpu()))
    return plan


def read_road(plan: Mapping[str, list[int]], target_probs: torch.Tensor, removed: Sequence[float], noise: float,
              seed: int) -> RoadResult:
    curves = {order: target_probs[idx].numpy().astype(np.float64) for order, idx in plan.items()}
    return RoadResult(tuple(removed), curves["morf"], curves["lerf"], noise, seed)


def road_scores(loaded: Any, explanation: Any, method: str, order: str, removed: Sequence[float] = REMOVED,
                noise: float = NOISE, seed: int = 0) -> np.ndarray:
    """The target's softmax probability after removing each fraction of ``removed`` of the pixels.

    The pixels removed are the most relevant (``order="morf"``) or least relevant (``"lerf"``) by
    ``explanation.maps[method]``, at or above the quantile: fraction ``f`` is pytorch-grad-cam's
    percentile ``p = 100 (1 - f)`` (``ROADMostRelevantFirst(p)`` / ``ROADLeastRelevantFirst(p)``).
    They are filled by :func:`road_impute` (``noise``, ``seed``) and the model re-run in one batch.
    """
    from .counterfactual import _Evaluator, pixels_of

    if method not in explanation.maps:
        raise MicamError(f"The explanation has no '{method}' map; it has {', '.join(explanation.maps)}.")
    removed = check_removed(removed)
    pixels = pixels_of(explanation.crop)
    chw = pixels.permute(2, 0, 1).to(torch.float64) / 255.0
    images = impute_many(chw, removal_masks(explanation.maps[method], order, removed), noise, seed)
    ev = _Evaluator(loaded)
    for img in images:
        ev.add((img.permute(1, 2, 0) * 255.0).float())
    return ev.results()[:, explanation.target].numpy().astype(np.float64)
