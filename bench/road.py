"""ROAD speed and exactness: micam_core vs pytorch-grad-cam 1.5.7 on the same maps, and vs deletion/insertion.

For each image: the default methods' maps and both baselines; ROAD MoRF and LeRF at the 9 default
fractions (noise 0, so both sides compute the same numbers). pytorch-grad-cam runs its own pipeline
per map, order and percentile (``PerturbationConfidenceMetric`` with ``RemoveMostRelevantFirst`` /
``RemoveLeastRelevantFirst`` and ``NoisyLinearImputer(noise=0)``, ``return_diff=False``: one forward
per call, fewer than its ``ROADCombined`` does). Also timed: today's deletion + insertion curves at
32 steps for the same maps. Prints one table row per image and the totals.

    python bench/road.py [--images examples/chelsea_cat.jpg ...] [--device cpu] [--skip-pgc]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from micam_core import DEFAULT_METHODS, explain, load_model  # noqa: E402
from micam_core.counterfactual import _Evaluator, _plan_curves, baseline_maps, blurred, fill_pixels, pixels_of  # noqa: E402
from micam_core.protocols import REMOVED  # noqa: E402
from micam_core.road import ORDERS, percentile_of, queue_road, read_road  # noqa: E402


def ours(loaded, pixels, maps, target) -> tuple[dict, float, float]:
    """ROAD curves of every map (noise 0); total seconds and the seconds spent imputing."""
    start = time.perf_counter()
    queue = _Evaluator(loaded, chunk=10**9)  # holds the imputed images: no forward pass yet
    plan = queue_road(queue, pixels, maps, REMOVED, 0.0, 0)
    imputed = time.perf_counter() - start
    ev = _Evaluator(loaded)  # then the forward passes in the usual chunks, same order
    for image in queue.pending:
        ev.add(image)
    probs = ev.results()
    curves = {name: read_road(p, probs[:, target], REMOVED, 0.0, 0) for name, p in plan.items()}
    return curves, time.perf_counter() - start, imputed


def theirs(loaded, crop, maps, target) -> tuple[dict, float]:
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
    start = time.perf_counter()
    out = {}
    for name, saliency in maps.items():
        out[name] = {}
        for order in ORDERS:
            scores = []
            for f in REMOVED:
                metric = PerturbationConfidenceMetric(removers[order](percentile_of(f), NoisyLinearImputer(noise=0)))
                scores.append(float(metric(x, saliency[None], targets, loaded.model, return_diff=False)[0]))
            out[name][order] = np.array(scores)
    return out, time.perf_counter() - start


def curves_seconds(loaded, pixels, maps, steps: int = 32) -> float:
    """Deletion (to black) and insertion (from blur) curves at ``steps`` steps for every map, as analyse runs them."""
    start = time.perf_counter()
    filled, blur = fill_pixels(pixels, "black"), blurred(pixels)
    ev = _Evaluator(loaded)
    ev.add(pixels), ev.add(filled), ev.add(blur)  # the curves' fixed ends
    for saliency in maps.values():
        _plan_curves(ev, pixels, filled, blur, saliency, steps)
    ev.results()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", type=Path, default=[ROOT / "examples" / "chelsea_cat.jpg"])
    parser.add_argument("--model", default="bundled:efficientnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-pgc", action="store_true", help="time only micam_core (no exactness column)")
    args = parser.parse_args()
    loaded = load_model(args.model, device=args.device)
    print(f"torch threads {torch.get_num_threads()}, device {loaded.device}, model {loaded.spec}")
    header = ("image", "maps", "ROAD ours s (imputing)", "ROAD pytorch-grad-cam s", "speed-up",
              "del+ins 32 steps s", "ROAD / del+ins", "max |score diff|")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    totals = np.zeros(4)
    for path in args.images:
        exp = explain(loaded, path, methods=list(DEFAULT_METHODS))
        pixels = pixels_of(exp.crop)
        maps = {**exp.maps, **baseline_maps(tuple(pixels.shape[:2]), next(iter(exp.lowres.values())).shape)}
        curves_s = curves_seconds(loaded, pixels, maps)
        road, ours_s, imputing_s = ours(loaded, pixels, maps, exp.target)
        if args.skip_pgc:
            pgc_s, diff = float("nan"), float("nan")
        else:
            pgc, pgc_s = theirs(loaded, exp.crop, maps, exp.target)
            diff = max(float(np.abs(getattr(road[n], o) - pgc[n][o]).max()) for n in maps for o in ORDERS)
        totals += (ours_s, pgc_s, curves_s, imputing_s)
        print(f"| {path.name} | {len(maps)} | {ours_s:.1f} ({imputing_s:.1f}) | {pgc_s:.1f} | {pgc_s / ours_s:.1f}x | "
              f"{curves_s:.1f} | {ours_s / curves_s:.2f}x | {diff:.1e} |", flush=True)
    o, p, c, i = totals
    print(f"| total | | {o:.1f} ({i:.1f}) | {p:.1f} | {p / o:.1f}x | {c:.1f} | {o / c:.2f}x | |")


if __name__ == "__main__":
    main()
