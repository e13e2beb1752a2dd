"""Cost of the sanity checks against one Explain's maps, measured side by side in one run.

    python bench/sanity.py [--runs 5] [--device cpu]

For each example photo and the three default methods on the bundled model: one ``explain`` (the
maps: forward pass, partial backward, MI, upsampling) against ``randomisation_check`` (cascading
randomisation down to the target layer: the classifier, then conv_head + bn2) and
``random_logit_check``. Timings are medians of interleaved runs; "cold" is the first check of the
process (timm rebuilds the model to draw its fresh weights, and the private copy is made), later
checks reuse both. Target: cascade <= 3x one Explain's maps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from micam_core import BUNDLED_SPEC, DEFAULT_METHODS, explain, load_model  # noqa: E402
from micam_core.sanity import random_logit_check, randomisation_check  # noqa: E402

PHOTOS = ("chelsea_cat", "coffee", "astronaut", "rocket")


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    loaded = load_model(BUNDLED_SPEC, device=args.device)
    images = [ROOT / "examples" / f"{name}.jpg" for name in PHOTOS]
    exp = explain(loaded, images[0], methods=DEFAULT_METHODS)
    cold, _ = timed(lambda: randomisation_check(loaded, exp))  # first check of the process
    print(f"bundled model on {loaded.device}, {torch.get_num_threads()} threads, methods {', '.join(DEFAULT_METHODS)}; "
          f"medians of {args.runs} interleaved runs\n")
    print("| photo | Explain's maps | cascading randomisation | ratio | random logit |")
    print("|---|---:|---:|---:|---:|")
    ratios = []
    for path in images:
        explain(loaded, path, methods=DEFAULT_METHODS)  # warm-up
        t_exp, t_rand, t_logit = [], [], []
        for _ in range(args.runs):
            seconds, exp = timed(lambda p=path: explain(loaded, p, methods=DEFAULT_METHODS))
            t_exp.append(seconds)
            t_rand.append(timed(lambda e=exp: randomisation_check(loaded, e))[0])
            t_logit.append(timed(lambda e=exp: random_logit_check(loaded, e))[0])
        e, r, g = (statistics.median(t) for t in (t_exp, t_rand, t_logit))
        ratios.append(r / e)
        print(f"| {path.stem} | {e * 1000:.0f} ms | {r * 1000:.0f} ms | {r / e:.2f}x | {g * 1000:.0f} ms |")
    print(f"\nmedian ratio {statistics.median(ratios):.2f}x (target <= 3x); the process's first (cold) "
          f"cascade: {cold * 1000:.0f} ms")


if __name__ == "__main__":
    main()
