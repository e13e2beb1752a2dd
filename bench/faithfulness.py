"""Faithfulness of every method of the registry against a random and a centred baseline.

    python bench/faithfulness.py [--images examples] [--model bundled:efficientnet_lite0]
                                 [--steps 32] [--fill black] [--threshold 0.5] [--methods a,b] [--csv out.csv]

For every photo in the folder: explain (target = top-1 class), then the counterfactual analysis;
prints one row per method and baseline with the means over the photos, writes the same as CSV,
and prints the time of the counterfactual analysis per image and the forward passes it costs.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from micam_core import METHODS, analyse, explain, load_model  # noqa: E402
from micam_core.counterfactual import BASELINES  # noqa: E402
from micam_core.registry import METHOD_LABELS  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
COLUMNS = ("method", "deletion AUC (lower better)", "insertion AUC (higher better)",
           "Average Drop % (lower better)", "Increase in Confidence % (higher better)",
           "paper's Drop %", "paper's Increase %", "target loses top-1 when removed % (where top-1)")


def rows_for(per_image: list[dict]) -> list[list]:
    """Mean over images of each metric, one row per map."""
    rows = []
    for name in per_image[0]:
        results = [image[name] for image in per_image]
        label = METHOD_LABELS.get(name) or BASELINES[name]
        rows.append([
            label,
            statistics.mean(r.curves.deletion_auc for r in results),
            statistics.mean(r.curves.insertion_auc for r in results),
            statistics.mean(r.average_drop for r in results),
            100.0 * statistics.mean(float(r.increase) for r in results),
            statistics.mean(r.paper_drop for r in results),
            statistics.mean(r.paper_increase for r in results),
            _flip_rate([r.flipped for r in results]),
        ])
    return rows


def _flip_rate(flips: list) -> float:
    """Share of images (in %) where the target lost top-1, over those where it was top-1 (NaN if none)."""
    defined = [float(f) for f in flips if f is not None]
    return 100.0 * statistics.mean(defined) if defined else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT / "examples")
    parser.add_argument("--model", default="bundled:efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--fill", default="black")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--upsampling", default="paper")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--csv", type=Path, default=ROOT / "bench" / "results" / "faithfulness.csv")
    args = parser.parse_args()

    loaded = load_model(args.model)
    photos = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    per_image, times = [], []
    for photo in photos:
        exp = explain(loaded, photo, upsampling=args.upsampling, methods=args.methods)
        start = time.perf_counter()
        faith = analyse(loaded, exp, threshold=args.threshold, fill=args.fill, steps=args.steps)
        times.append(time.perf_counter() - start)
        per_image.append(faith.results)
        print(f"{photo.name}: target {exp.target_label!r} p={exp.probs[exp.target]:.3f}, "
              f"{faith.images_evaluated} images in {faith.forward_calls} forward calls, {times[-1]:.2f} s")
    rows = rows_for(per_image)
    print(f"\nmodel {loaded.spec}, {len(photos)} photos ({', '.join(p.name for p in photos)}), "
          f"steps {args.steps}, fill {args.fill}, threshold {args.threshold}, MI maps {args.upsampling}\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print(f"| {row[0]} | " + " | ".join(f"{v:.3f}" if i < 2 else f"{v:.1f}" for i, v in enumerate(row[1:])) + " |")
    print(f"\ncounterfactual analysis ({len(per_image[0]) - 2} methods + 2 baselines, both curves): median "
          f"{statistics.median(times):.2f} s per image, {faith.images_evaluated} images through the model")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"written {args.csv}")


if __name__ == "__main__":
    main()
