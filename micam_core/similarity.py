"""How alike two saliency maps are: Spearman rank correlation and SSIM, as the sanity checks report them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03  # scikit-image's defaults (uniform 7 x 7 window)


@dataclass(frozen=True)
class Similarity:
    """Spearman's rho and SSIM between a map and the original (NaN where undefined, e.g. a constant map)."""

    spearman: float
    ssim: float

    def to_dict(self) -> dict[str, float]:
        return {"spearman": self.spearman, "ssim": self.ssim}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, ties given their average rank (as ``scipy.stats.rankdata``)."""
    values = np.asarray(values).ravel()
    order = np.argsort(values)  # tied values get their average rank, so their order does not matter
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]
    mean_rank = (starts + ends + 1) / 2.0  # average of the 1-based ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    ranks = average_ranks(np.asarray(values, dtype=np.float32))
    return ranks - ranks.mean()


def _box(t: np.ndarray, size: int) -> np.ndarray:
    """Means over every ``size x size`` window that fits (an integral image, float64)."""
    c = np.zeros((t.shape[0] + 1, t.shape[1] + 1))
    c[1:, 1:] = t.cumsum(0).cumsum(1)
    return (c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]) / (size * size)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps of the same shape (NaN when either is constant)."""
    return Comparison(a).spearman(b)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004) with scikit-image's defaults.

    Uniform 7 x 7 window, K1 = 0.01, K2 = 0.03, sample covariances, averaged over the windows that
    fit inside the map (scikit-image crops the same border).
    """
    return Comparison(a, data_range).ssim(b)


class Comparison:
    """An original map, ready to be compared with many others (its ranks and window means computed once, lazily).

    A map equal to the original element for element is similar by definition: Spearman 1 (NaN for a
    constant map) and SSIM 1, found without ranking or filtering.
    """

    def __init__(self, original: np.ndarray, data_range: float = 1.0) -> None:
        self.x = np.asarray(original, dtype=np.float64)
        self.data_range = data_range
        self._ranks: np.ndarray | None = None
        self._boxes: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ranks(self) -> np.ndarray:
        if self._ranks is None:
            self._ranks = _centred_ranks(self.x)
        return self._ranks

    def spearman(self, other: np.ndarray) -> float:
        rb = _centred_ranks(other)
        denom = np.sqrt(float((self.ranks * self.ranks).sum()) * float((rb * rb).sum()))
        return float((self.ranks * rb).sum() / denom) if denom > 0 else float("nan")

    def ssim(self, other: np.ndarray) -> float:
        if min(self.x.shape) < SSIM_WINDOW:
            return float("nan")
        if self._boxes is None:
            self._boxes = (_box(self.x, SSIM_WINDOW), _box(self.x * self.x, SSIM_WINDOW))
        ux, uxx = self._boxes
        y = np.asarray(other, dtype=np.float64)
        n = SSIM_WINDOW * SSIM_WINDOW
        cov_norm = n / (n - 1)
        uy = _box(y, SSIM_WINDOW)
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (_box(y * y, SSIM_WINDOW) - uy * uy)
        vxy = cov_norm * (_box(self.x * y, SSIM_WINDOW) - ux * uy)
        c1, c2 = (SSIM_K1 * self.data_range) ** 2, (SSIM_K2 * self.data_range) ** 2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        return float(s.mean())

    def __call__(self, other: np.ndarray) -> Similarity:
        if np.array_equal(self.x, other):
            constant = self.x.size == 0 or bool(self.x.min() == self.x.max())
            fits = min(self.x.shape) >= SSIM_WINDOW
            return Similarity(float("nan") if constant else 1.0, 1.0 if fits else float("nan"))
        return Similarity(self.spearman(other), self.ssim(other))


def similarity(original: np.ndarray, other: np.ndarray) -> Similarity:
    """Both measures for maps in [0, 1]."""
    return Comparison(original)(other)
