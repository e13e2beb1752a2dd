"""The verdict block of a summary: one sentence per metric and comparison, then the sanity checks in words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import KNOWN, METRICS, Metric, bootstrap_ci, label_of, values, wilson

ALPHA = 0.05  # significance level of the verdicts, after Holm's adjustment
# The sanity metrics compared in sentences; the others are told per map by sanity_sentences.
SENTENCE_SANITY = ("rand_spearman_target",)


def _number(x: float, metric: Metric) -> str:
    return f"{x:.{metric.digits}f}" + ("%" if metric.binary else "")


def comparison_sentence(r: pd.Series, metric: Metric) -> str:
    """E.g. 'Deletion AUC: MI CAM 0.061 vs Grad-CAM 0.052, difference +0.010 [-0.004, 0.025], ...'."""
    ref, other, d = label_of(r["reference"]), label_of(r["other"]), metric.digits
    if r["n"] == 0:
        return f"{metric.label}: {ref} vs {other}: no image has both values."
    head = (f"{metric.label}: {ref} {_number(r['reference_mean'], metric)} vs {other} "
            f"{_number(r['other_mean'], metric)}, difference {r['mean_diff']:+.{d}f} "
            f"[{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]")
    ref_wins = r["win_rate"] >= 0.5
    who, share = (ref, r["win_rate"]) if ref_wins else (other, 1.0 - r["win_rate"])
    wins = f"{who} better on {100 * share:.0f}% of {r['n']} images (ties half)"
    if np.isnan(r["p_holm"]):
        why = r["p_note"] or "the test is undefined"
        end = "identical on every image" if "are zero" in why else "no test"
        return f"{head}, {wins}, p undefined ({why}): {end}."
    family = "one comparison" if r["family"] == 1 else f"{r['family']} comparisons"
    if r["p_holm"] < ALPHA:
        better = ref if r["mean_diff"] * metric.better > 0 else other
        end = f"{better} better"
    else:
        end = "not distinguishable"
    return f"{head}, {wins}, p = {r['p_holm']:.2g} (Holm-adjusted over {family}): {end}."


def verdict_lines(ok: pd.DataFrame, paired: pd.DataFrame, reference: str, resamples: int) -> list[str]:
    """The sentences, per model: every directed metric against every other map, then the sanity checks."""
    lines: list[str] = []
    models = list(ok["model"].unique()) if not ok.empty else []
    order = {m.column: i for i, m in enumerate(METRICS)}
    for model in models:
        prefix = f"{model}: " if len(models) > 1 else ""
        pairs = paired[paired["model"] == model] if not paired.empty else paired
        if not pairs.empty:
            pairs = pairs.assign(_o=pairs["metric"].map(lambda c: order.get(c, len(order)))).sort_values(
                "_o", kind="stable")
            for _, r in pairs.iterrows():
                metric = KNOWN.get(r["metric"]) or Metric(r["metric"], r["label"], 0)
                if metric.group == "faithfulness" or metric.column in SENTENCE_SANITY:
                    lines.append(prefix + comparison_sentence(r, metric))
        lines += [prefix + s for s in sanity_sentences(ok[ok["model"] == model], resamples)]
    return lines


def sanity_sentences(group: pd.DataFrame, resamples: int) -> list[str]:
    """The sanity checks of one model in words, one sentence per check and map."""
    from micam_core.registry import REGISTRY

    if "rand_spearman_target" not in group or not group["rand_spearman_target"].notna().any():
        return []
    out = []
    first = group[group["rand_units"].notna()].iloc[0]
    step = int(first["rand_target_step"])
    units = ", ".join(list(first["rand_units"])[:step])
    for method, rows in group.groupby("method", sort=False):
        label, baseline = label_of(method), method not in REGISTRY
        rho = values(rows, KNOWN["rand_spearman_target"])
        passed = values(rows, KNOWN["rand_passed"])
        lo, hi = bootstrap_ci(rho, resamples)
        kind = " (a baseline: it ignores the model)" if baseline else ""
        out.append(f"Cascading randomisation, {label}{kind}: Spearman {rho.mean():.2f} [{lo:.2f}, {hi:.2f}] "
                   f"with the original map once {units} are random; passes on {int((passed > 0).sum())} of "
                   f"{len(passed)} images{_share(passed)}.")
        out.append(_logit_sentence(label, rows, baseline or not REGISTRY[method].class_specific, resamples))
    return out


def _share(yes: np.ndarray) -> str:
    lo, hi = wilson(float((yes > 0).sum()), len(yes))
    return f" ({100 * (yes > 0).mean():.0f}%, 95% CI {100 * lo:.0f}-{100 * hi:.0f}%)" if len(yes) else ""


def _logit_sentence(label: str, rows: pd.DataFrame, agnostic: bool, resamples: int) -> str:
    same = values(rows, KNOWN["logit_identical"])
    rho = values(rows, KNOWN["logit_spearman"])
    k, n = int((same > 0).sum()), len(same)
    if agnostic:
        fact = "class-agnostic by construction" if k == n else "unexpected for a map that ignores the class"
        return f"Random logit, {label}: identical map for a random class on {k} of {n} images (computed): {fact}."
    if len(rho) == 0:
        return f"Random logit, {label}: undefined on every image (a map was constant)."
    lo, hi = bootstrap_ci(rho, resamples)
    undefined = n - len(rho)
    note = f"; undefined on {undefined} (a constant map)" if undefined else ""
    return (f"Random logit, {label}: Spearman {rho.mean():.2f} [{lo:.2f}, {hi:.2f}] between the maps for the "
            f"target and for a random class over {len(rho)} images{note}; identical on {k} of {n}.")
