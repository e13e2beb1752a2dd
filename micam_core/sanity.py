"""Sanity checks of an explanation: cascading parameter randomisation and the random-logit test.

*Cascading randomisation* (Adebayo et al. 2018): re-initialise the model from the top (see
:mod:`.randomise`) one unit at a time, recompute every chosen map at each step and compare it with
the original (Spearman's rho, SSIM). A map that does not change once the target layer and all above
it are random cannot be explaining those weights: the method fails the check.

*Random logit*: the map for the target against the map for a seeded random other class. Methods
whose record says they are class-agnostic give the identical map by construction; that is computed
and reported as a fact. The random and centred baselines run through both checks: they do not
depend on the model or the class at all, the picture of a failure.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .counterfactual import BASELINES, baseline_maps
from .maps import render_map
from .methods import Explanation, capture_inputs
from .models import LoadedModel
from .randomise import cascade, target_step, units
from .registry import METHOD_LABELS, REGISTRY, compute_maps, display_mode
from .similarity import Comparison, Similarity, similarity

log = logging.getLogger(__name__)

UNCHANGED = 0.9  # a map with Spearman >= this to the original is called unchanged
# Masked inputs per batched extra pass (Score-CAM and the like) in the checks' maps. At the methods' own 32,
# Score-CAM at blocks.2 of the bundled model peaked at +626 MB over steady in the cascade; at 8, +271 MB
# for the same time (bench/memory.py --work-cases).
SANITY_CHUNK = 8


def label_of(name: str) -> str:
    return METHOD_LABELS.get(name) or BASELINES.get(name, name)


@dataclass
class Randomisation:
    """Similarity of each map to the original after each step of the cascade (steps 1..depth)."""

    layer: str
    units: list[str]  # every unit of the model, top-down; step k randomises units[:k]
    depth: int
    target_step: int  # the first step with the target layer and everything above it random
    seed: int
    similarity: dict[str, list[Similarity]]
    maps: dict[str, list[np.ndarray]] = field(repr=False)
    seconds: float = 0.0

    def spearman(self, name: str) -> list[float]:
        """Spearman's rho per depth 0..depth (depth 0: the original, 1 by definition)."""
        return [1.0] + [s.spearman for s in self.similarity[name]]

    def ssim(self, name: str) -> list[float]:
        return [1.0] + [s.ssim for s in self.similarity[name]]

    def at_target(self, name: str) -> Similarity:
        return self.similarity[name][min(self.target_step, self.depth) - 1]

    def passed(self, name: str) -> bool | None:
        """Whether the map changed once the target layer was random (None: undefined, e.g. a constant map)."""
        rho = self.at_target(name).spearman
        return None if np.isnan(rho) else bool(rho < UNCHANGED)

    def randomised(self, step: int) -> str:
        return ", ".join(self.units[:step])

    def verdict(self, name: str) -> str:
        """One sentence: passes or fails, with the numbers."""
        sim, step, label = self.at_target(name), min(self.target_step, self.depth), label_of(name)
        where = f"with {self.randomised(step)} randomised (down to the target layer {self.layer})"
        numbers = f"Spearman {sim.spearman:.2f}, SSIM {sim.ssim:.2f} with the original"
        if name in BASELINES:
            return f"{label} ignores the model: {where} its map is unchanged ({numbers}), as a failure looks."
        verdict = self.passed(name)
        if verdict is None:
            return f"{label}: undefined {where}: the map is constant, so its ranks carry no information."
        if verdict:
            return f"{label} passes: {where} its map changes ({numbers})."
        return (f"{label} fails: {where} its map barely changes ({numbers}, at least {UNCHANGED}); "
                "it does not reflect the weights it claims to explain.")

    def to_report(self) -> dict:
        return {"layer": self.layer, "units": self.units, "depth": self.depth, "target_step": self.target_step,
                "seed": self.seed, "unchanged_at_spearman": UNCHANGED, "seconds": self.seconds,
                "maps": {n: {"spearman": self.spearman(n), "ssim": self.ssim(n), "passed": self.passed(n),
                             "verdict": self.verdict(n)} for n in self.similarity}}


@dataclass
class RandomLogit:
    """Similarity of each map for the target to its map for a seeded random other class."""

    target: int
    target_label: str
    other: int
    other_label: str
    seed: int
    similarity: dict[str, Similarity]
    class_specific: dict[str, bool]
    maps: dict[str, np.ndarray] = field(repr=False)
    seconds: float = 0.0

    def identical(self, name: str) -> bool:
        return bool(self.similarity[name].spearman >= 1.0 - 1e-9 and self.similarity[name].ssim >= 1.0 - 1e-9)

    def verdict(self, name: str) -> str:
        sim, label = self.similarity[name], label_of(name)
        numbers = f"Spearman {sim.spearman:.3f}, SSIM {sim.ssim:.3f}"
        pair = f"for {self.target_label} and for {self.other_label} (random class {self.other}, seed {self.seed})"
        if not self.class_specific[name]:
            kind = "the class does not enter it by construction" if name not in BASELINES else "a baseline"
            same = "identical" if self.identical(name) else "not identical (unexpected)"
            return f"{label}: maps {pair} are {same} ({numbers}, computed): {kind}."
        if np.isnan(sim.spearman):
            return f"{label}: undefined {pair}: a map is constant."
        depends = "depends on the class" if sim.spearman < UNCHANGED else "barely depends on the class"
        return f"{label}: map {depends} ({numbers} between the maps {pair})."

    def to_report(self) -> dict:
        return {"target": self.target, "other": self.other, "other_label": self.other_label, "seed": self.seed,
                "seconds": self.seconds,
                "maps": {n: {**s.to_dict(), "class_specific": self.class_specific[n], "verdict": self.verdict(n)}
                         for n, s in self.similarity.items()}}


def _maps(loaded: LoadedModel, exp: Explanation, target: int, methods: Sequence[str],
          mi: np.ndarray | None) -> dict[str, np.ndarray]:
    """Display maps of ``methods`` on ``exp``'s crop, with the explanation's own method parameters
    (``mi``: reused, for activations known to be unchanged). The capture is freed before returning."""
    _, inputs = capture_inputs(loaded, [exp.crop], lambda _: [target], exp.layer, methods, exp.params)
    inputs.mask_chunk = SANITY_CHUNK
    if mi is not None:
        inputs.__dict__["mi"] = torch.from_numpy(mi)[None].to(inputs.activations.device, inputs.activations.dtype)
    size = exp.crop.size[::-1]
    return {m: render_map(low[0].cpu().numpy(), size, display_mode(m, exp.upsampling))
            for m, (low, _) in compute_maps(methods, inputs, exp.params).items()}


def _chosen(exp: Explanation, methods: Sequence[str] | None) -> list[str]:
    return list(exp.maps if methods is None else [m for m in methods if m in exp.maps])


def _baselines(exp: Explanation, seed: int) -> dict[str, np.ndarray]:
    """The baselines as :func:`analyse` draws them (they depend on neither the model nor the class)."""
    return baseline_maps(exp.crop.size[::-1], next(iter(exp.lowres.values())).shape, seed)


def default_depth(loaded: LoadedModel, layer: str) -> int:
    """Down to (and including) the unit that holds the target layer."""
    return target_step(units(loaded.model), layer)


def randomisation_check(loaded: LoadedModel, exp: Explanation, methods: Sequence[str] | None = None,
                        depth: int | None = None, seed: int = 0, baselines: bool = True) -> Randomisation:
    """Cascading randomisation of ``loaded`` for the maps of ``exp`` (all of them by default).

    ``depth``: how many units to randomise (default: down to the unit holding the target layer).
    The caller's model is not modified. Activations below the first unit that covers the target
    layer do not change, so the steps before it reuse the explanation's mutual information.
    """
    start = time.perf_counter()
    chosen = _chosen(exp, methods)
    unit_list = units(loaded.model)
    hits = [i + 1 for i, u in enumerate(unit_list) if u.covers(exp.layer)]
    first_cover = min(hits) if hits else 1
    depth = target_step(unit_list, exp.layer) if depth is None else depth
    base = _baselines(exp, seed) if baselines else {}
    sims: dict[str, list[Similarity]] = {n: [] for n in [*chosen, *base]}
    maps: dict[str, list[np.ndarray]] = {n: [] for n in sims}
    compare = {m: Comparison(exp.maps[m]) for m in chosen}
    # The baselines do not take the model: drawn again once and compared, the same at every step.
    redrawn = _baselines(exp, seed) if base else {}
    fixed = {name: similarity(base[name], redrawn[name]) for name in base}
    for step, model in cascade(loaded, depth, seed):
        reuse = exp.mi if step < first_cover else None
        new = {**_maps(model, exp, exp.target, chosen, reuse), **redrawn}
        for name in sims:
            sims[name].append(compare[name](new[name]) if name in compare else fixed[name])
            maps[name].append(new[name])
    return Randomisation(layer=exp.layer, units=[u.name for u in unit_list], depth=depth,
                         target_step=target_step(unit_list, exp.layer), seed=seed, similarity=sims, maps=maps,
                         seconds=time.perf_counter() - start)


def random_class(num_classes: int, target: int, seed: int = 0) -> int:
    """A seeded uniformly random class other than ``target``."""
    other = int(np.random.default_rng(seed).integers(num_classes - 1))
    return other + 1 if other >= target else other


def random_logit_check(loaded: LoadedModel, exp: Explanation, methods: Sequence[str] | None = None,
                       seed: int = 0, baselines: bool = True) -> RandomLogit:
    """Maps of ``exp``'s methods for a seeded random other class, compared with the target's."""
    start = time.perf_counter()
    chosen = _chosen(exp, methods)
    other = random_class(len(loaded.class_names), exp.target, seed)
    new = _maps(loaded, exp, other, chosen, exp.mi)  # same model and image: same activations, same MI
    originals = {m: exp.maps[m] for m in chosen}
    specific = {m: REGISTRY[m].class_specific for m in chosen}
    if baselines:
        originals.update(_baselines(exp, seed))
        new.update(_baselines(exp, seed))  # drawn again: they ignore the class
        specific.update(dict.fromkeys(BASELINES, False))
    return RandomLogit(target=exp.target, target_label=exp.target_label, other=other,
                       other_label=loaded.label(other), seed=seed,
                       similarity={n: similarity(originals[n], new[n]) for n in originals},
                       class_specific=specific, maps=new, seconds=time.perf_counter() - start)


@dataclass
class Sanity:
    """Both checks of one explanation."""

    randomisation: Randomisation
    random_logit: RandomLogit

    def to_report(self) -> dict:
        return {"cascading_randomisation": self.randomisation.to_report(),
                "random_logit": self.random_logit.to_report()}


def sanity_checks(loaded: LoadedModel, exp: Explanation, methods: Sequence[str] | None = None,
                  depth: int | None = None, seed: int = 0, baselines: bool = True) -> Sanity:
    """Cascading randomisation and random logit for the maps of ``exp`` (and the baselines)."""
    return Sanity(randomisation_check(loaded, exp, methods, depth, seed, baselines),
                  random_logit_check(loaded, exp, methods, seed, baselines))


@dataclass(frozen=True)
class SanityPlan:
    """What :func:`sanity_checks` will do for an explanation, known before it runs."""

    units: list[str]  # randomised, top-down, in this order
    layer: str
    maps: int
    extra_passes: int  # masked passes of multi-pass methods (Score-CAM), over every step

    @property
    def passes(self) -> int:
        """Forward + partial backward passes on one image: one per randomisation step, one for the random class."""
        return len(self.units) + 1

    def describe(self) -> str:
        extra = f", plus {self.extra_passes} masked forward passes" if self.extra_passes else ""
        return (f"Randomises {len(self.units)} parts of the model from the top ({', '.join(self.units)}; the target "
                f"layer {self.layer} is in the last) and recomputes the {self.maps} maps after each, then once for "
                f"a random class: {self.passes} forward and backward passes on one image{extra}, about "
                f"{self.passes} times the work of the explanation itself.")


def plan(loaded: LoadedModel, exp: Explanation, methods: Sequence[str] | None = None,
         depth: int | None = None) -> SanityPlan:
    """The cost of :func:`sanity_checks` with the same arguments, computed without running anything."""
    from .cost import extra_passes

    chosen = _chosen(exp, methods)
    unit_list = units(loaded.model)
    depth = target_step(unit_list, exp.layer) if depth is None else depth
    extra = extra_passes(loaded, exp.layer, chosen, exp.params) * (depth + 1)
    return SanityPlan([u.name for u in unit_list[:depth]], exp.layer, len(chosen), extra)
