"""Counterfactual verdicts in words, always about the target class.

"Flipped" is defined only when the target was the original top-1: it flips when it is no longer
top-1 once the region is removed. When the target was not top-1 there is no flip to speak of;
the sentence says what happened to the target's probability and rank instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .counterfactual import MethodResult

CHANGE_PP = 0.5  # a change under half a percentage point "leaves" the probability where it was


def percent(p: float) -> str:
    """A probability as a short percentage: 63%, 0.4%, <0.1%."""
    if p >= 0.01:
        return f"{100 * p:.0f}%"
    return f"{100 * p:.1f}%" if p >= 0.001 else "<0.1%"


def change_phrase(before: float, after: float) -> str:
    """``raises X from 34% to 63%`` style verb and numbers (``X`` filled in by the caller)."""
    if abs(after - before) * 100 < CHANGE_PP:
        return "leaves {name} at " + percent(before)
    verb = "raises" if after > before else "lowers"
    return f"{verb} {{name}} from {percent(before)} to {percent(after)}"


def removal_sentence(result: MethodResult, target_label: str, threshold: float,
                     name: Callable[[str], str] = str, strong: Callable[[str], str] = str) -> str:
    """One sentence on removing ``result``'s region, about the target class.

    ``name`` formats class names (the app escapes and italicises them), ``strong`` the verdict word.
    """
    target = name(target_label)
    region = f"the region (map ≥ {threshold:g}, {100 * result.region_fraction:.0f}% of the image)"
    change = change_phrase(result.p_original, result.p_remove).format(name=target)
    ranks = f"rank {result.rank_original} → {result.rank_remove}"
    keep = f"keeping only the region gives {percent(result.p_keep)} (rank {result.rank_keep})"
    if result.flipped is None:
        return (f"{strong('Target not top-1')}: removing {region} {change} ({ranks}); {keep}.")
    if result.flipped:
        winner = name(result.top_remove[0][1]) if result.top_remove else "another class"
        # the ranks are the target's: next to its change, not after the winner's name
        return (f"{strong('Flipped')}: removing {region} {change} ({ranks}), and {winner} becomes top-1; {keep}.")
    return f"{strong('Not flipped')}: removing {region} {change}; it stays top-1. {keep[0].upper()}{keep[1:]}."
