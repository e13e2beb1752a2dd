"""The summary's figures: small multiples of every metric and curve, the sanity checks beside the curves.

``metrics_MODEL.png``: one panel per metric; continuous metrics show every image and the mean with
its bootstrap interval, yes/no metrics their proportion with a Wilson interval. ``curves_MODEL.png``:
one row per map and one column per curve kind (deletion, insertion and any other ``*_curve`` column,
e.g. ROAD), each with its mean and 95% band and the random map's mean for reference; beside them,
when the run has them, the sanity checks: similarity against randomisation depth (one line per map)
and the random-logit similarity. Every marker has a legend entry.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..protocols import PROTOCOLS
from .metrics import Curve, Metric, bootstrap_ci, curves_in, label_of, values, wilson

REFERENCE_MAP = "random"
MARKERS = "osD^vP*X"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def plots(ok: pd.DataFrame, metrics: list[Metric], results: Path, caption: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for model, group in ok.groupby("model", sort=False):
        n_images = group["image_id"].nunique()
        for name, fig in (("metrics", _metrics_figure(plt, group, metrics)), ("curves", _curves_figure(plt, group))):
            fig.suptitle(f"{model}: {n_images} images; {caption}", fontsize=10)
            fig.tight_layout()
            files.append(results / f"{name}_{_slug(model)}.png")
            fig.savefig(files[-1], dpi=90)
            plt.close(fig)
    return files


def _metrics_figure(plt, group: pd.DataFrame, metrics: list[Metric]):
    methods = list(group["method"].unique())
    cols = min(4, max(1, len(metrics)))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows + 0.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes.ravel(), metrics):
        for i, method in enumerate(methods):
            x = values(group[group["method"] == method], metric)
            if len(x) == 0:
                continue
            if metric.binary:
                lo, hi = wilson(float((x > 0).sum()), len(x))
                mean = 100.0 * (x > 0).mean()
                ax.errorbar(i, mean, yerr=_err(mean, 100 * lo, 100 * hi), fmt="s", color="C1", capsize=4)
            else:
                ax.plot(i + rng.uniform(-0.18, 0.18, len(x)), x, ".", color="0.6", alpha=0.5, markersize=4)
                lo, hi = bootstrap_ci(x, 1000)
                ax.errorbar(i, x.mean(), yerr=_err(x.mean(), lo, hi), fmt="o", color="k", capsize=4)
        ax.set_xticks(range(len(methods)), [label_of(m) for m in methods], rotation=30, ha="right", fontsize=8)
        unit = " (% of images)" if metric.binary else ""
        better = {1: ", higher better", -1: ", lower better", 0: ""}[metric.better]
        ax.set_title(f"{metric.label}{unit}{better}", fontsize=9)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], ls="", marker=".", color="0.6", label="one image"),
               plt.Line2D([], [], ls="-", marker="o", color="k", label="mean, 95% bootstrap interval"),
               plt.Line2D([], [], ls="-", marker="s", color="C1", label="proportion, 95% Wilson interval")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.12)
    return fig


def _err(mean: float, lo: float, hi: float) -> list[list[float]]:
    """Error-bar lengths (never negative, also where rounding puts the mean a hair outside its interval)."""
    return [[max(0.0, mean - lo)], [max(0.0, hi - mean)]]


def _has_sanity(group: pd.DataFrame) -> bool:
    return "rand_spearman" in group and group["rand_spearman"].notna().any()


def _curves_figure(plt, group: pd.DataFrame):
    methods = list(group["method"].unique())
    kinds = curves_in(group)
    sanity = _has_sanity(group)
    cols = len(kinds) + (2 if sanity else 0)
    fig = plt.figure(figsize=(3.3 * cols, 1.9 * len(methods) + 1.2))
    grid = fig.add_gridspec(len(methods), cols)
    first = None
    for col, kind in enumerate(kinds):
        reference = _stack(group, REFERENCE_MAP, kind.column)
        for row, method in enumerate(methods):
            ax = fig.add_subplot(grid[row, col], sharey=first)
            first = first or ax
            curves = _stack(group, method, kind.column)
            if curves is not None:
                _band(ax, _positions(group, kind, curves.shape[1]), curves, kind, "mean, 95% band")
            if reference is not None and method != REFERENCE_MAP:
                ax.plot(_positions(group, kind, reference.shape[1]), reference.mean(0), "--", color="0.5", lw=1,
                        label=f"{label_of(REFERENCE_MAP)}, mean")
            if row == 0:
                ax.set_title(f"{kind.title}: target probability" if kind.probability else kind.title, fontsize=9)
                ax.legend(fontsize=7, loc="best")
            if col == 0:
                ax.set_ylabel(label_of(method), fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(methods) - 1:
                ax.set_xlabel(kind.x_label, fontsize=8)
    if sanity:
        third = max(1, len(methods) // 2)
        _depth_panel(fig.add_subplot(grid[:third, len(kinds):]), group, methods, "rand_spearman", "Spearman")
        _depth_panel(fig.add_subplot(grid[third:, len(kinds)]), group, methods, "rand_ssim", "SSIM")
        _logit_panel(fig.add_subplot(grid[third:, len(kinds) + 1]), group, methods)
    return fig


def _stack(group: pd.DataFrame, method: str, kind: str) -> np.ndarray | None:
    cells = group.loc[group["method"] == method, kind].dropna()
    curves = [np.asarray(c, dtype=float) for c in cells if c is not None and len(c)]
    if not curves or len({len(c) for c in curves}) != 1:
        return None
    return np.stack(curves)


def _positions(group: pd.DataFrame, kind: Curve, n: int) -> np.ndarray:
    """The x positions of ``kind``'s ``n`` points: the rows' own (``kind.x_column``, e.g. the fractions ROAD
    removed) when they all agree; rows written before that column existed use their protocol's record."""
    if kind.x_column is not None:
        if kind.x_column in group:
            seen = {tuple(v) for v in group[kind.x_column].dropna() if v is not None and len(v) == n}
            if len(seen) == 1:
                return np.asarray(seen.pop(), dtype=float)
        names = group["protocol"].dropna().unique() if "protocol" in group else []
        if len(names) == 1 and names[0] in PROTOCOLS and len(PROTOCOLS[names[0]].removed) == n:
            return np.asarray(PROTOCOLS[names[0]].removed, dtype=float)
    return np.linspace(*kind.x_range, n)


def _band(ax, x: np.ndarray, curves: np.ndarray, kind: Curve, label: str) -> None:
    """The mean curve at ``x`` and its normal 95% band (clipped to [0, 1] for a probability)."""
    mean = curves.mean(0)
    half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
    low, high = mean - half, mean + half
    if kind.probability:
        low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    ax.plot(x, mean, color="C0", label=label)
    ax.fill_between(x, low, high, color="C0", alpha=0.25, lw=0)


def _depth_panel(ax, group: pd.DataFrame, methods: list[str], column: str, name: str) -> None:
    """Mean similarity to the original against randomisation depth, one line per map."""
    step = int(group["rand_target_step"].dropna().iloc[0])
    units = list(group["rand_units"].dropna().iloc[0])
    for i, method in enumerate(methods):
        lists = [np.asarray(v, dtype=float) for v in group.loc[group["method"] == method, column].dropna()]
        if not lists or len({len(v) for v in lists}) != 1:
            continue
        mean = np.r_[1.0, np.nanmean(np.stack(lists), axis=0)]
        ax.plot(range(len(mean)), mean, marker=MARKERS[i % len(MARKERS)], markersize=max(3, 8 - i),
                ls="--" if i >= 3 else "-", label=label_of(method))  # shrinking markers: equal lines stay visible
    ax.axvline(step, color="0.4", ls=":", lw=1, label="target layer random")
    ax.set_xticks(range(len(units) + 1), ["original", *units], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"{name} with the original", fontsize=8)
    ax.set_title(f"Cascading randomisation: {name} (mean)", fontsize=9)
    ax.legend(fontsize=7)


def _logit_panel(ax, group: pd.DataFrame, methods: list[str]) -> None:
    """Random-logit Spearman per map: mean with its bootstrap interval."""
    metric = Metric("logit_spearman", "Random-logit Spearman", -1)
    for i, method in enumerate(methods):
        x = values(group[group["method"] == method], metric)
        if len(x):
            lo, hi = bootstrap_ci(x, 1000)
            ax.errorbar(i, x.mean(), yerr=_err(x.mean(), lo, hi), fmt="o", color="k", capsize=4,
                        label="mean, 95% bootstrap interval" if i == 0 else None)
    ax.set_xticks(range(len(methods)), [label_of(m) for m in methods], rotation=30, ha="right", fontsize=7)
    ax.set_title("Random logit: Spearman\n(target vs a random class)", fontsize=9)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7)
