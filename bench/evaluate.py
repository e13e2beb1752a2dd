"""Targets of `micam evaluate`, measured in one run and printed side by side.

    python bench/evaluate.py [--images DIR] [--count 50] [--steps 8] [--memory-images 1000] [--skip-ray]

1. Local engine throughput vs its forward-pass floor: the same images, and the same number of plain
   batched forward passes of the same batch sizes (one per explain, analyse's chunks) on prepared
   tensors. Ratio = floor time / engine time (target >= 0.85).
2. Ray engine (local Ray, 2 CPUs) vs the local engine on the same images, wall time with worker
   start-up and model loading included, Ray start-up (ray.init) excluded and reported apart
   (target <= 1.5x).
3. Memory: RSS while streaming ``--memory-images`` images (the photos cycled) through the bundled
   model with few steps; growth from image 100 to the last (target <= 100 MB).
Default photos: the open photo set of bench/photos.py (built into a temp folder).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import micam_core  # noqa: E402
from bench.photos import build  # noqa: E402
from micam_core.counterfactual import DEFAULT_CHUNK  # noqa: E402
from micam_core.evaluation.local import run_local  # noqa: E402
from micam_core.evaluation.records import Source, iter_records  # noqa: E402
from micam_core.evaluation.rows import row_names  # noqa: E402
from micam_core.evaluation.store import ResultStore  # noqa: E402
from micam_core.view import View  # noqa: E402

SPEC = "bundled:efficientnet_lite0"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def forward_floor(loaded, images: int, per_image: int, chunk: int = DEFAULT_CHUNK) -> float:
    """Seconds for the engine's forward passes alone: per image one of 1 image, then chunks of per_image."""
    h, w = loaded.input_size
    sizes = [1] + [chunk] * (per_image // chunk) + ([per_image % chunk] if per_image % chunk else [])
    batches = {n: loaded.normalize(torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)) for n in set(sizes)}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(images):
            for n in sizes:
                loaded.model(batches[n])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--memory-images", type=int, default=1000)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="micam_bench_eval_"))
    photos = args.images or (build(tmp / "photos") and tmp / "photos")
    records = list(iter_records(Source(images=str(photos))))
    records = [{**records[i % len(records)], "image_id": f"{i:05d}"} for i in range(args.count)]
    settings = View().replace(steps=args.steps)
    maps = len(row_names(settings))
    per_image = 3 + maps * (4 + 2 * (args.steps - 1))
    results = {}

    t0 = time.perf_counter()
    loaded = micam_core.load_model(SPEC, device="cpu")
    t1 = time.perf_counter()
    run_local(loaded, records, settings, ResultStore(tmp / "local"), target="top1")
    t2 = time.perf_counter()
    results["local engine"] = t2 - t1
    results["local wall (model load included)"] = t2 - t0
    results["forward-pass floor"] = floor = forward_floor(loaded, args.count, per_image)
    print(f"{args.count} images, {args.steps} steps, {maps} maps, {per_image} masked images + 1 explain per image; "
          f"torch threads {torch.get_num_threads()}")
    print(f"local engine {results['local engine']:.1f} s ({args.count / results['local engine']:.2f} images/s); "
          f"floor {floor:.1f} s; throughput ratio floor/engine = {floor / results['local engine']:.2f} "
          "(target >= 0.85)", flush=True)

    if not args.skip_ray:
        from micam_core.evaluation.ray_engine import run_ray, start_ray

        startup = start_ray(num_cpus=2)
        t3 = time.perf_counter()
        run_ray(SPEC, records, settings, ResultStore(tmp / "ray"), target="top1")
        ray_wall = time.perf_counter() - t3
        local_rows = ResultStore(tmp / "local").read().num_rows
        ray_rows = ResultStore(tmp / "ray").read().num_rows
        print(f"ray: start-up {startup:.1f} s (excluded); wall {ray_wall:.1f} s vs local "
              f"{results['local wall (model load included)']:.1f} s = "
              f"{ray_wall / results['local wall (model load included)']:.2f}x (target <= 1.5x); "
              f"rows {ray_rows} vs {local_rows}", flush=True)
        import ray

        ray.shutdown()

    if args.memory_images:
        mem = [{**records[i % len(records)], "image_id": f"m{i:06d}"} for i in range(args.memory_images)]
        few = View().replace(methods=(micam_core.METHODS[0],), steps=2)
        samples = {}

        def sample(_n, count=[0]):  # noqa: B006 (a counter local to this run)
            count[0] += 1
            if count[0] in (1, 100) or count[0] % 100 == 0:
                samples[count[0]] = rss_mb()

        t4 = time.perf_counter()
        run_local(loaded, mem, few, ResultStore(tmp / "memory"), batch_size=8, on_image=sample, target="top1")
        last = max(samples)
        print(f"memory: {args.memory_images} images in {time.perf_counter() - t4:.0f} s; RSS MB at image "
              + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(samples.items()))
              + f"; growth 100 -> {last}: {samples[last] - samples[100]:+.0f} MB (target <= 100)")
    print(f"(results under {tmp}; ceil check {math.ceil(per_image / DEFAULT_CHUNK)} calls per image)")


if __name__ == "__main__":
    main()
