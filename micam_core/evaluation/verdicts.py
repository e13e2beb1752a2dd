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


DIRECTION = {1: " (higher is better)", -1: " (lower is better)", 0: ""}


def comparison_sentence(r: pd.Series, metric: Metric) -> str:
    """E.g. 'Deletion AUC (lower is better): MI CAM 0.061 vs Grad-CAM 0.052, difference +0.010 [-0.004, 0.025],
    Grad-CAM better on 32 of 60 images, MI CAM on 28, p = 0.43 (Holm-adjusted over 4 comparisons): not
    distinguishable.'"""
    ref, other, d = label_of(r["reference"]), label_of(r["other"]), metric.digits
    name = metric.label + DIRECTION[metric.better]
    if r["n"] == 0:
        return f"{name}: {ref} vs {other}: no image has both values."
    head = (f"{name}: {ref} {_number(r['reference_mean'], metric)} vs {other} "
            f"{_number(r['other_mean'], metric)}, difference {r['mean_diff']:+.{d}f} "
            f"[{r['ci_low']:+.{d}f}, {r['ci_high']:+.{d}f}]")
    wins = _wins(r, ref, other)
    if np.isnan(r["p_holm"]):
        why = r["p_note"] or "the test is undefined"
        end = "identical on every image" if "are zero" in why else "no test"
        return f"{head}, {wins}, p undefined ({why}): {end}."
    family = "one comparison" if r["family"] == 1 else f"{r['family']} comparisons"
    return f"{head}, {wins}, p = {r['p_holm']:.2g} (Holm-adjusted over {family}): {_outcome(r, metric, ref, other)}."


def _wins(r: pd.Series, ref: str, other: str) -> str:
    """'Grad-CAM better on 9 of 15 images, MI CAM on 5, tied on 1' (the more frequent winner first)."""
    if "wins" not in r or pd.isna(r["wins"]):  # paired tables written before the counts existed
        return f"{ref} better on {100 * r['win_rate']:.0f}% of {r['n']} images (ties half)"
    (a, na), (b, nb) = sorted(((ref, int(r["wins"])), (other, int(r["losses"]))), key=lambda t: -t[1])
    ties = f", tied on {int(r['ties'])}" if r["ties"] else ""
    return f"{a} better on {na} of {r['n']} images, {b} on {nb}{ties}"


def _outcome(r: pd.Series, metric: Metric, ref: str, other: str) -> str:
    """Which map the test says is better ('not distinguishable' when p is undefined or >= ALPHA)."""
    if np.isnan(r["p_holm"]) or r["p_holm"] >= ALPHA:
        return "not distinguishable"
    return f"{ref if r['mean_diff'] * metric.better > 0 else other} better"


def answer_lines(paired: pd.DataFrame, reference: str) -> dict[str, list[str]]:
    """The question in plain words, one sentence per other map (is the reference more faithful than it?),
    asked twice: on the protocol's curve metrics and on the keep/remove metrics; keyed by which metrics."""
    out: dict[str, list[str]] = {}
    if paired.empty:
        return out
    models = list(paired["model"].unique())
    metric = paired["metric"].map(lambda c: KNOWN.get(c) or Metric(c, c, 0))
    faithful = paired[metric.map(lambda m: m.group == "faithfulness") & (paired["n"] > 0)]
    for curve, part in faithful.groupby(metric.map(lambda m: m.curve), sort=False):
        names = _and(list(dict.fromkeys(part["label"])))
        heading = (f"On the protocol's curves ({names})" if curve else
                   f"On the keep/remove counterfactual ({names})")
        for (model, other), rows in part.groupby(["model", "other"], sort=False):
            prefix = f"{model}: " if len(models) > 1 else ""
            out.setdefault(heading, []).append(prefix + _answer(rows, label_of(reference), label_of(other)))
    return dict(sorted(out.items(), key=lambda kv: not kv[0].startswith("On the protocol")))


def _answer(rows: pd.DataFrame, ref: str, other: str) -> str:
    said = {"ref": [], "other": [], "none": []}
    for _, r in rows.iterrows():
        metric = KNOWN.get(r["metric"]) or Metric(r["metric"], r["label"], 0)
        outcome = _outcome(r, metric, ref, other)
        said["none" if outcome == "not distinguishable" else "ref" if outcome == f"{ref} better" else "other"].append(
            metric.label)
    question = f"Is {ref} more faithful than {other}?"
    n, rest = len(rows), len(said["none"])
    tail = "" if not rest else "; not distinguishable on the other metric" if rest == 1 else \
        f"; not distinguishable on the other {rest} metrics"
    if said["ref"] and said["other"]:
        return (f"{question} Mixed: {ref} is better on {_and(said['ref'])}, {other} on {_and(said['other'])}"
                f"{tail}.")
    if said["ref"]:
        return f"{question} Yes: {ref} is better on {_and(said['ref'])}{tail or f' (all {n} metrics)'}."
    if said["other"]:
        return f"{question} No: {other} is better on {_and(said['other'])}{tail or f' (all {n} metrics)'}."
    which = said["none"][0] if n == 1 else f"any of the {n} metrics"
    return (f"{question} Not shown: the two are not distinguishable on {which} "
            f"(Holm-adjusted p >= {ALPHA} or undefined).")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def verdict_lines(ok: pd.DataFrame, paired: pd.DataFrame, reference: str, resamples: int) -> list[str]:
    """The sentences, per model: every directed metric against every other map, then the sanity checks."""
    lines: list[str] = []
    models = list(ok["model"].unique()) if not ok.empty else []
    order = {m.column: (not m.curve, i) for i, m in enumerate(METRICS)}  # the protocol's curves first
    for model in models:
        prefix = f"{model}: " if len(models) > 1 else ""
        pairs = paired[paired["model"] == model] if not paired.empty else paired
        if not pairs.empty:
            pairs = pairs.assign(_o=pairs["metric"].map(lambda c: order.get(c, (True, len(order))))).sort_values(
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
                   f"{len(passed)} images{_share(passed)}{_undefined(len(rows) - len(passed))}.")
        out.append(_logit_sentence(label, rows, baseline or not REGISTRY[method].class_specific, resamples))
    return out


def _undefined(count: int) -> str:
    return f"; undefined on {count} (the randomised map was constant)" if count else ""


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
            f"target and for a random class over {len(rho)} image{'' if len(rho) == 1 else 's'}{note}; "
            f"identical on {k} of {n}.")
