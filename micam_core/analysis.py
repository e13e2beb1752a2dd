"""Counterfactual analysis of an explanation: whole (:func:`analyse`) or in stages, for a page that shows
results as they come.

The stages: :func:`keep_remove` classifies each map's keep and remove images (two images a map: what
the counterfactual panel shows first); :func:`score_map` then scores one map (saliency x image, the
paper's baseline and the inner points of both curves; the first call also classifies the curves'
fixed ends, and ROAD's curves when the protocol runs ROAD); :func:`assemble` puts the stages together
into a :class:`Faithfulness`. The original image's prediction is the explanation's own (``exp.probs``):
it is never classified again. A :class:`~micam_core.protocols.Protocol` decides which curves run and
the defaults of threshold, fill and steps. :func:`analyse` queues every stage into one batch stream
and gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from PIL import Image

from .counterfactual import (
    BASELINES,
    DEFAULT_CHUNK,
    CurveEnds,
    CurveResult,
    Faithfulness,
    KeepRemove,
    MethodResult,
    _CurvePlan,
    _Evaluator,
    _plan_curves,
    baseline_maps,
    blurred,
    fill_pixels,
    masked,
    pixels_of,
    rank_of,
    region,
)
from .errors import MicamError
from .methods import Explanation, top_k
from .models import LoadedModel
from .protocols import Protocol, get_protocol
from .registry import METHOD_LABELS
from .road import queue_road, read_road
from .settings import validate


@dataclass
class Stage:
    """What one stage produced (keep/remove pairs, scored maps, the curves' ends) and what it cost."""

    kept: dict[str, KeepRemove] = field(default_factory=dict)
    results: dict[str, MethodResult] = field(default_factory=dict)
    ends: CurveEnds | None = None
    images: int = 0
    forward_calls: int = 0
    forward_seconds: float = 0.0


@dataclass
class _Inputs:
    """The crop's pixels, what masked pixels become, and the blurred start of insertion."""

    pixels: torch.Tensor
    filled: torch.Tensor
    start: torch.Tensor

    @classmethod
    def of(cls, exp: Explanation, fill: str) -> _Inputs:
        pixels = pixels_of(exp.crop)
        return cls(pixels, fill_pixels(pixels, fill), blurred(pixels))


def label_of(name: str) -> str:
    return METHOD_LABELS.get(name) or BASELINES[name]


def analysis_maps(exp: Explanation, baselines: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """The maps an analysis scores: the explanation's, then (optionally) the random and centred baselines."""
    maps = dict(exp.maps)
    if baselines:
        first = next(iter(exp.lowres.values()))
        maps.update(baseline_maps(exp.crop.size[::-1], first.shape, seed))
    return maps


def _saliency(exp: Explanation, name: str, seed: int) -> np.ndarray:
    if name in exp.maps:
        return exp.maps[name]
    if name in BASELINES:
        return analysis_maps(exp, True, seed)[name]
    raise MicamError(f"'{name}' is neither one of this explanation's maps nor a baseline.")


# --- queue and read: the pieces every stage is made of ----------------------------------------------
@dataclass
class _KeepRemovePlan:
    keep: int
    remove: int
    keep_mask: torch.Tensor
    keep_px: torch.Tensor
    remove_px: torch.Tensor


def _queue_keep_remove(ev: _Evaluator, inp: _Inputs, saliency: np.ndarray, threshold: float) -> _KeepRemovePlan:
    keep_mask = region(saliency, threshold)
    keep_px, remove_px = masked(inp.pixels, inp.filled, ~keep_mask), masked(inp.pixels, inp.filled, keep_mask)
    return _KeepRemovePlan(ev.add(keep_px), ev.add(remove_px), keep_mask, keep_px, remove_px)


def _read_keep_remove(name: str, plan: _KeepRemovePlan, probs: torch.Tensor, exp: Explanation,
                      top: int) -> KeepRemove:
    names, t = exp.class_names, exp.target
    return KeepRemove(
        name=name, label=label_of(name), keep_image=_to_image(plan.keep_px), remove_image=_to_image(plan.remove_px),
        top_keep=top_k(probs[plan.keep].numpy(), names, top), top_remove=top_k(probs[plan.remove].numpy(), names, top),
        p_original=float(exp.probs[t]), p_keep=float(probs[plan.keep, t]), p_remove=float(probs[plan.remove, t]),
        region_fraction=float(plan.keep_mask.float().mean()),
        rank_original=rank_of(torch.as_tensor(exp.probs), t), rank_keep=rank_of(probs[plan.keep], t),
        rank_remove=rank_of(probs[plan.remove], t))


@dataclass
class _ScorePlan:
    explanation: int
    paper_base: int
    curves: _CurvePlan
    road: dict[str, list[int]] | None


def _queue_scores(ev: _Evaluator, inp: _Inputs, name: str, saliency: np.ndarray, proto: Protocol,
                  seed: int) -> _ScorePlan:
    sal = torch.from_numpy(np.asarray(saliency, dtype=np.float32)).unsqueeze(-1)
    black = torch.zeros_like(inp.pixels)
    kinds = tuple(k for k in ("deletion", "insertion") if proto.has(k))
    explanation = ev.add(inp.pixels * sal)
    paper_base = ev.add(masked(inp.pixels, black, torch.from_numpy(saliency > 0)))
    curves = _plan_curves(ev, inp.pixels, inp.filled, inp.start, saliency, proto.steps, kinds)
    road = (queue_road(ev, inp.pixels, {name: saliency}, proto.removed, proto.noise, seed)[name]
            if proto.has("road") else None)
    return _ScorePlan(explanation, paper_base, curves, road)


def _read_scores(kept: KeepRemove, plan: _ScorePlan, probs: torch.Tensor, exp: Explanation, ends: CurveEnds,
                 proto: Protocol, seed: int) -> MethodResult:
    t = exp.target
    deletion, insertion = plan.curves.read(probs[:, t], ends)
    road = None if plan.road is None else read_road(plan.road, probs[:, t], proto.removed, proto.noise, seed)
    pair = {f.name: getattr(kept, f.name) for f in fields(KeepRemove)}  # a result holds its keep/remove pair
    return MethodResult(**pair, p_explanation=float(probs[plan.explanation, t]),
                        p_paper_baseline=float(probs[plan.paper_base, t]),
                        curves=CurveResult(deletion, insertion, proto.steps, proto.fill), road=road)


def _queue_ends(ev: _Evaluator, inp: _Inputs) -> tuple[int, int]:
    return ev.add(inp.filled), ev.add(inp.start)


def _read_ends(indices: tuple[int, int], probs: torch.Tensor, exp: Explanation) -> CurveEnds:
    t = exp.target
    return CurveEnds(float(exp.probs[t]), float(probs[indices[0], t]), float(probs[indices[1], t]))


def _cost(stage: Stage, ev: _Evaluator) -> Stage:
    stage.images, stage.forward_calls, stage.forward_seconds = ev.images, ev.forward_calls, ev.forward_seconds
    return stage


# --- the stages ------------------------------------------------------------------------------------
def protocol_of(protocol: str | Protocol | None = None, threshold: float | None = None, fill: str | None = None,
                steps: int | None = None) -> Protocol:
    """The protocol record (default ``rise``) with any setting given here in place of its own, each checked
    by its setting record (the report names a changed setting)."""
    if isinstance(protocol, str):
        protocol = validate("protocol", protocol)
    given = {name: None if value is None else validate(name, value)
             for name, value in (("threshold", threshold), ("fill", fill), ("steps", steps))}
    return get_protocol(protocol).with_settings(**given)


def keep_remove(loaded: LoadedModel, exp: Explanation, threshold: float | None = None, fill: str | None = None,
                names: Sequence[str] | None = None, top: int = 5, chunk: int = DEFAULT_CHUNK,
                seed: int = 0, protocol: str | Protocol | None = None, steps: int | None = None) -> Stage:
    """Keep and remove images of the named maps (default: the explanation's), classified in one batch.

    It takes every counterfactual setting as the other stages do (``steps`` is only checked)."""
    proto = protocol_of(protocol, threshold, fill, steps)
    threshold, fill = proto.threshold, proto.fill
    inp = _Inputs.of(exp, fill)
    ev = _Evaluator(loaded, chunk)
    names = list(exp.maps) if names is None else list(names)
    plans = {name: _queue_keep_remove(ev, inp, _saliency(exp, name, seed), threshold) for name in names}
    probs = ev.results() if plans else torch.empty(0)
    return _cost(Stage(kept={n: _read_keep_remove(n, p, probs, exp, top) for n, p in plans.items()}), ev)


def score_map(loaded: LoadedModel, exp: Explanation, name: str, kept: KeepRemove | None = None, *,
              threshold: float | None = None, fill: str | None = None, steps: int | None = None,
              ends: CurveEnds | None = None, top: int = 5, chunk: int = DEFAULT_CHUNK, seed: int = 0,
              protocol: str | Protocol | None = None) -> Stage:
    """One map's metrics and curves (those of the protocol, ROAD's included). Without ``kept`` its
    keep/remove pair is classified here too; without ``ends`` the curves' fixed ends are (pass the
    returned ``ends`` to the next call)."""
    proto = protocol_of(protocol, threshold, fill, steps)
    inp = _Inputs.of(exp, proto.fill)
    ev = _Evaluator(loaded, chunk)
    saliency = _saliency(exp, name, seed)
    pair = _queue_keep_remove(ev, inp, saliency, proto.threshold) if kept is None else None
    end_indices = _queue_ends(ev, inp) if ends is None else None
    plan = _queue_scores(ev, inp, name, saliency, proto, seed)
    probs = ev.results()
    kept = kept if pair is None else _read_keep_remove(name, pair, probs, exp, top)
    ends = ends if end_indices is None else _read_ends(end_indices, probs, exp)
    return _cost(Stage(results={name: _read_scores(kept, plan, probs, exp, ends, proto, seed)}, ends=ends), ev)


def assemble(exp: Explanation, stages: Iterable[Stage], threshold: float | None = None, fill: str | None = None,
             steps: int | None = None, top: int = 5, protocol: str | Protocol | None = None,
             seed: int = 0) -> Faithfulness:
    """The :class:`Faithfulness` of the stages' scored maps (methods first, then baselines), with their cost
    and the protocol (with the settings given) that scored them. Like every stage it takes every counterfactual
    setting (``view.stage("counterfactual")``); ``seed`` is the stages' own (random baseline, ROAD's noise)."""
    proto = protocol_of(protocol, threshold, fill, steps)
    stages = list(stages)
    results = {name: r for s in stages for name, r in s.results.items()}
    order = [n for n in (*exp.maps, *BASELINES) if n in results]
    return Faithfulness(target=exp.target, target_label=exp.target_label, threshold=proto.threshold,
                        fill=proto.fill, steps=proto.steps, results={n: results[n] for n in order},
                        images_evaluated=sum(s.images for s in stages),
                        forward_calls=sum(s.forward_calls for s in stages), top_original=exp.top(top), protocol=proto)


def analyse(loaded: LoadedModel, exp: Explanation, threshold: float | None = None, fill: str | None = None,
            steps: int | None = None, baselines: bool = True, top: int = 5, chunk: int = DEFAULT_CHUNK,
            seed: int = 0, protocol: str | Protocol | None = None) -> Faithfulness:
    """Counterfactuals and metrics for every map of ``exp`` (and the baselines), in one batch stream.

    ``protocol`` (a name from :data:`~micam_core.protocols.PROTOCOLS` or a record; default ``rise``)
    decides the metrics and the defaults of ``threshold``, ``fill`` and ``steps``; a value given
    here replaces the protocol's own (and the report says so). ``seed`` seeds the random baseline
    and ROAD's noise.
    """
    proto = protocol_of(protocol, threshold, fill, steps)
    inp = _Inputs.of(exp, proto.fill)
    ev = _Evaluator(loaded, chunk)
    end_indices = _queue_ends(ev, inp)
    plans = {}
    for name, saliency in analysis_maps(exp, baselines, seed).items():
        plans[name] = (_queue_keep_remove(ev, inp, saliency, proto.threshold),
                       _queue_scores(ev, inp, name, saliency, proto, seed))
    probs = ev.results()
    ends = _read_ends(end_indices, probs, exp)
    results = {name: _read_scores(_read_keep_remove(name, pair, probs, exp, top), plan, probs, exp, ends, proto, seed)
               for name, (pair, plan) in plans.items()}
    return assemble(exp, [_cost(Stage(results=results, ends=ends), ev)], top=top, protocol=proto)


def _to_image(pixels: torch.Tensor) -> Image.Image:
    return Image.fromarray(pixels.clamp(0, 255).round().to(torch.uint8).numpy())
