"""The metrics a summary reports: one record per per-image column, with its direction and display.

A column of the rows that no record names but that holds one number (or yes/no) per image is
reported too, with its column name and no direction; a record then gives it a label and says which
way is better. The sanity checks' per-step lists become per-image numbers in :func:`derive`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SEED = 0


@dataclass(frozen=True)
class Metric:
    """One per-image metric column."""

    column: str
    label: str
    better: int  # +1 higher is better, -1 lower is better, 0 neither
    scale: float = 1.0  # display scale (100 for proportions shown in %)
    binary: bool = False  # yes/no per image: reported as a proportion with a Wilson interval
    digits: int = 3
    group: str = "faithfulness"  # or "sanity"
    curve: bool = False  # from the protocol's curves (deletion, insertion, ROAD), not the keep/remove stage


METRICS: tuple[Metric, ...] = (
    Metric("deletion_auc", "Deletion AUC", -1, curve=True),
    Metric("insertion_auc", "Insertion AUC", +1, curve=True),
    Metric("average_drop", "Average Drop %", -1, digits=1),
    Metric("increase", "Increase in Confidence", +1, 100.0, binary=True, digits=0),
    Metric("paper_drop", "paper's Drop %", -1, digits=1),
    Metric("paper_increase", "paper's Increase %", +1, digits=1),
    Metric("flipped", "target no longer top-1 when removed", +1, 100.0, binary=True, digits=0),
    Metric("region_fraction", "region fraction", 0),
    # ROAD (protocol road): mean target probability over the removed fractions; combined = (LeRF - MoRF) / 2
    Metric("road_morf", "ROAD MoRF", -1, curve=True),
    Metric("road_lerf", "ROAD LeRF", +1, curve=True),
    Metric("road_combined", "ROAD combined", +1, curve=True),
    # Sanity: lower similarity to the original = the map responds to what it should.
    Metric("rand_spearman_target", "Randomisation Spearman, target layer random", -1, group="sanity"),
    Metric("rand_ssim_target", "Randomisation SSIM, target layer random", -1, group="sanity"),
    Metric("rand_passed", "Randomisation check passed", +1, 100.0, binary=True, digits=0, group="sanity"),
    Metric("logit_spearman", "Random-logit Spearman", -1, group="sanity"),
    Metric("logit_ssim", "Random-logit SSIM", -1, group="sanity"),
    Metric("logit_identical", "Random-logit map identical", -1, 100.0, binary=True, digits=0, group="sanity"),
)
KNOWN = {m.column: m for m in METRICS}


@dataclass(frozen=True)
class Curve:
    """A per-image curve column and where its points lie on the x axis: at the per-image positions in the
    column ``x_column`` where there is one, else equally spaced over ``x_range``."""

    column: str
    title: str
    x_label: str
    x_range: tuple[float, float] = (0.0, 1.0)
    x_column: str | None = None
    probability: bool = True  # y is the target's probability: its band is clipped to [0, 1]


CURVES: tuple[Curve, ...] = (
    Curve("deletion_curve", "deletion", "fraction of pixels deleted"),
    Curve("insertion_curve", "insertion", "fraction of pixels inserted"),
    Curve("road_morf_curve", "ROAD MoRF", "fraction removed, most relevant first", x_column="road_removed"),
    Curve("road_lerf_curve", "ROAD LeRF", "fraction removed, least relevant first", x_column="road_removed"),
)


def curves_in(ok: pd.DataFrame) -> list[Curve]:
    """The curve columns with values: the records first, then any other ``*_curve`` column."""
    known = {c.column: c for c in CURVES}
    found = [c for c in CURVES if c.column in ok and ok[c.column].notna().any()]
    return found + [Curve(col, col.removesuffix("_curve").replace("_", " "), "position", probability=False)
                    for col in ok.columns if col.endswith("_curve") and col not in known and ok[col].notna().any()]
# Per-image columns that describe the image or the run, not the map's quality.
NOT_METRICS = {"label_index", "target", "top1", "top1_correct", "p_original", "p_keep", "p_remove",
               "p_explanation", "seconds", "sanity_seconds", "rand_target_step", "logit_class",
               "target_rank_original", "target_rank_keep", "target_rank_remove"}


def derive(ok: pd.DataFrame) -> pd.DataFrame:
    """Rows with the sanity checks' similarity at the target step as plain columns (when present)."""
    ok = ok.copy()
    if "rand_spearman" in ok and ok["rand_spearman"].notna().any():
        def at_target(column: str) -> pd.Series:
            return pd.Series([_pick(v, s) for v, s in zip(ok[column], ok["rand_target_step"])], index=ok.index)
        ok["rand_spearman_target"] = at_target("rand_spearman")
        ok["rand_ssim_target"] = at_target("rand_ssim")
    return ok


def _pick(values, step) -> float:
    if values is None or (isinstance(values, float) and np.isnan(values)) or pd.isna(step) or len(values) == 0:
        return float("nan")
    return float(values[min(int(step), len(values)) - 1])


def present(ok: pd.DataFrame) -> list[Metric]:
    """The metrics with at least one value in ``ok``: the records first, then any other scalar column."""
    found = [m for m in METRICS if m.column in ok and ok[m.column].notna().any()]
    for column in ok.columns:
        if column in KNOWN or column in NOT_METRICS or not ok[column].notna().any():
            continue
        kind = ok[column].dropna()
        if not kind.map(lambda v: isinstance(v, (bool, int, float, np.bool_, np.number))).all():
            continue  # text, lists (curves, per-step similarities)
        if kind.map(lambda v: isinstance(v, (bool, np.bool_))).all():
            found.append(Metric(column, column, 0, 100.0, binary=True, digits=0))
        else:
            found.append(Metric(column, column, 0))
    return found


def values(group: pd.DataFrame, metric: Metric) -> np.ndarray:
    """The metric's per-image values as floats (missing ones dropped), in display scale."""
    x = pd.to_numeric(group[metric.column].astype("object").where(group[metric.column].notna()), errors="coerce")
    return x.dropna().astype(float).to_numpy() * metric.scale


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN without observations)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=np.float64)
    defined = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, np.nan)
    order = defined[np.argsort(p[defined], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def bootstrap_ci(values: np.ndarray, resamples: int = 2000, seed: int = SEED,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (NaN when there are no values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # bounded memory for large data sets
        stop = min(resamples, start + 256)
        means[start:stop] = values[rng.integers(0, values.size, (stop - start, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def wilcoxon_p(diff: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    diff = np.asarray(diff, dtype=np.float64)
    if np.count_nonzero(diff) == 0:
        return float("nan")
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def label_of(name: str) -> str:
    import micam_core
    from micam_core.counterfactual import BASELINES

    return micam_core.METHOD_LABELS.get(name) or BASELINES.get(name, name)
