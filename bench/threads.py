"""Seconds of one counterfactual analysis with 1 and with 2+ torch threads, alternating, on this machine now.

    python bench/threads.py [--repeats 4] [--steps 4] [--threads 1,2]

Prints the load average, each thread count's median and runs, and what ``micam evaluate`` would choose
(:func:`micam_core.evaluation.cli.idle_cores`). Run it on a busy and on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from micam_core import analyse, explain, load_model
from micam_core.evaluation.cli import idle_cores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--image", default="examples/coffee.jpg")
    args = p.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    loaded = load_model("bundled:efficientnet_lite0", device="cpu")
    exp = explain(loaded, args.image)
    runs: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.repeats):
        for n in counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            analyse(loaded, exp, steps=args.steps)
            runs[n].append(time.perf_counter() - t0)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; evaluate would use {idle_cores()}")
    print("| threads | median s | runs |\n|---:|---:|---|")
    for n, values in runs.items():
        print(f"| {n} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
