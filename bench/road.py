"""ROAD speed and exactness: micam_core vs pytorch-grad-cam 1.5.7 on the same maps, and vs deletion/insertion.

For each image: the default methods' maps and both baselines; ROAD MoRF and LeRF at the 9 default
fractions (noise 0, so both sides compute the same numbers). pytorch-grad-cam runs its own pipeline
per map, order and percentile (``PerturbationConfidenceMetric`` with ``RemoveMostRelevantFirst`` /
``RemoveLeastRelevantFirst`` and ``NoisyLinearImputer(noise=0)``, ``return_diff=False``: one forward
per call, fewer than its ``ROADCombined`` does). Also timed: today's deletion + insertion curves at
32 steps for the same maps. The three are interleaved map by map (ours, theirs, the curves), so that a
change of load on a shared machine falls on all three; each is timed in wall-clock and in process CPU
seconds (``time.process_time``, all threads). Ours runs once per imputation solver (``--solvers``; default:
SuperLU and, where cvxopt is installed, CHOLMOD), also interleaved. Prints one table row per image and the totals.

    python bench/road.py [--images examples/chelsea_cat.jpg ...] [--device cpu] [--skip-pgc] [--solvers superlu]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from micam_core import DEFAULT_METHODS, explain, imputation, load_model  # noqa: E402
from micam_core.counterfactual import _Evaluator, _plan_curves, baseline_maps, blurred, fill_pixels, pixels_of  # noqa: E402
from micam_core.protocols import REMOVED  # noqa: E402
from micam_core.road import ORDERS, percentile_of, queue_road, read_road  # noqa: E402


class Clock:
    """Wall-clock and process CPU seconds, added up over the timed blocks."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


@contextmanager
def solver(name: str):
    """Every imputation inside uses ``name`` (the library's chooser, replaced for the block)."""
    chooser = imputation.backend
    imputation.backend = lambda requested=None: chooser(requested or name)
    try:
        yield
    finally:
        imputation.backend = chooser


def ours(loaded, pixels, maps, target, clock: Clock, forward: Clock) -> dict:
    """ROAD curves of every map of ``maps`` (noise 0) as analyse runs them: the imputation of each map and order
    overlaps the forward passes of the one before (``forward.wall`` gets the seconds inside the model)."""
    with clock:
        ev = _Evaluator(loaded)
        plan = queue_road(ev, pixels, maps, REMOVED, 0.0, 0)
        probs = ev.results()
        forward.wall += ev.forward_seconds
        return {name: read_road(p, probs[:, target], REMOVED, 0.0, 0) for name, p in plan.items()}


def theirs(loaded, crop, maps, target, clock: Clock) -> dict:
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    removers = {"morf": RemoveMostRelevantFirst, "lerf": RemoveLeastRelevantFirst}
    x = loaded.to_input([crop])
    targets = [ClassifierOutputSoftmaxTarget(target)]
    out = {}
    with clock:
        for name, saliency in maps.items():
            out[name] = {}
            for order in ORDERS:
                scores = []
                for f in REMOVED:
                    remover = removers[order](percentile_of(f), NoisyLinearImputer(noise=0))
                    metric = PerturbationConfidenceMetric(remover)
                    scores.append(float(metric(x, saliency[None], targets, loaded.model, return_diff=False)[0]))
                out[name][order] = np.array(scores)
    return out


def curves(loaded, pixels, maps, clock: Clock, ends: bool, steps: int = 32) -> None:
    """Deletion (to black) and insertion (from blur) curves at ``steps`` steps for ``maps``, as analyse runs them
    (``ends``: also the curves' fixed ends, shared by every map: once per image)."""
    with clock:
        filled, blur = fill_pixels(pixels, "black"), blurred(pixels)
        ev = _Evaluator(loaded)
        if ends:
            ev.add(pixels), ev.add(filled), ev.add(blur)
        for saliency in maps.values():
            _plan_curves(ev, pixels, filled, blur, saliency, steps)
        ev.results()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", type=Path, default=[ROOT / "examples" / "chelsea_cat.jpg"])
    parser.add_argument("--model", default="bundled:efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-pgc", action="store_true", help="time only micam_core (no exactness column)")
    parser.add_argument("--solvers", nargs="+", choices=imputation.BACKENDS,
                        default=[b for b in imputation.BACKENDS if b != "cholmod" or imputation.has_cholmod()])
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device)
    print(f"torch threads {torch.get_num_threads()}, device {loaded.device}, model {loaded.spec}")
    header = ("image", "maps", "solver", "ROAD ours s (in forward passes)", "ROAD pytorch-grad-cam s", "speed-up",
              "del+ins 32 steps s", "ROAD / del+ins", "speed-up (CPU s)", "ROAD / del+ins (CPU s)",
              "max |score diff|")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    sides = [f"{k}:{s}" for s in args.solvers for k in ("ours", "forward")]
    clocks = {k: Clock() for k in (*sides, "theirs", "curves")}
    for path in args.images:
        exp = explain(loaded, path, methods=list(DEFAULT_METHODS))
        pixels = pixels_of(exp.crop)
        maps = {**exp.maps, **baseline_maps(tuple(pixels.shape[:2]), next(iter(exp.lowres.values())).shape)}
        image = {k: Clock() for k in clocks}
        diff = {s: float("nan") for s in args.solvers}
        for k, (name, saliency) in enumerate(maps.items()):  # interleaved map by map: the load falls on every side
            one = {name: saliency}
            road = {}
            for s in args.solvers:
                with solver(s):
                    road[s] = ours(loaded, pixels, one, exp.target, image[f"ours:{s}"], image[f"forward:{s}"])
            if not args.skip_pgc:
                pgc = theirs(loaded, exp.crop, one, exp.target, image["theirs"])
                for s in args.solvers:
                    d = max(float(np.abs(getattr(road[s][name], o) - pgc[name][o]).max()) for o in ORDERS)
                    diff[s] = d if np.isnan(diff[s]) else max(diff[s], d)
            curves(loaded, pixels, one, image["curves"], ends=k == 0)
        for k, c in image.items():
            clocks[k].wall += c.wall
            clocks[k].cpu += c.cpu
        for s in args.solvers:
            print(row(path.name, len(maps), s, image, diff[s]), flush=True)
    for s in args.solvers:
        print(row("total", "", s, clocks, float("nan")))


def row(label: str, maps, solver: str, c: dict[str, Clock], diff: float) -> str:
    o, i, p, d = c[f"ours:{solver}"], c[f"forward:{solver}"], c["theirs"], c["curves"]
    return (f"| {label} | {maps} | {solver} | {o.wall:.1f} ({i.wall:.1f}) | {p.wall:.1f} | {p.wall / o.wall:.1f}x | "
            f"{d.wall:.1f} | {o.wall / d.wall:.2f}x | {p.cpu / o.cpu:.1f}x | {o.cpu / d.cpu:.2f}x | "
            f"{'' if np.isnan(diff) else f'{diff:.1e}'} |")

if __name__ == "__main__":
    main()
