"""The counterfactual panel's stages against their forward-pass floor (issue 18's latency targets).

    OMP_NUM_THREADS=1 python bench/panel_latency.py [--runs 5] [--image examples/chelsea_cat.jpg]

Bundled model, the three default methods, CPU, the staged path the app runs (micam_core.analysis):
keep/remove for every map in one batch, then each map (methods and both baselines) scored by the
protocol. Each stage records the seconds spent inside the model's forward calls; the ratio of a
stage's wall time to that floor is what the stage adds around the passes it cannot avoid. Ratios are
measured in one run, so a busy machine moves both sides alike. The page's controls being ready at
first paint is checked in the browser (tests/test_layout.py), not here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from micam_core import explain, load_model  # noqa: E402
from micam_core.analysis import keep_remove, score_map  # noqa: E402
from micam_core.counterfactual import BASELINES  # noqa: E402
from micam_core.registry import DEFAULT_METHODS  # noqa: E402

TARGETS = {"maps -> first keep/remove": 1.2, "whole panel": 1.1}


def one_panel(loaded, exp, protocol: str) -> dict[str, tuple[float, float]]:
    """Wall seconds and forward-pass seconds of the first stage and of the whole panel."""
    start = time.perf_counter()
    first = keep_remove(loaded, exp, protocol=protocol)
    first_wall = time.perf_counter() - start
    forward, ends = first.forward_seconds, None
    for name in (*exp.maps, *BASELINES):
        stage = score_map(loaded, exp, name, first.kept.get(name), ends=ends, protocol=protocol)
        ends, forward = stage.ends, forward + stage.forward_seconds
    return {"maps -> first keep/remove": (first_wall, first.forward_seconds),
            "whole panel": (time.perf_counter() - start, forward)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    parser.add_argument("--protocol", default="rise")
    args = parser.parse_args()
    loaded = load_model("bundled:efficientnet_lite0", device="cpu")
    exp = explain(loaded, args.image, methods=DEFAULT_METHODS)
    one_panel(loaded, exp, args.protocol)  # warm-up
    runs = [one_panel(loaded, exp, args.protocol) for _ in range(args.runs)]
    print(f"| stage (bundled model, {', '.join(DEFAULT_METHODS)}, protocol {args.protocol}, CPU) "
          "| wall (median) | forward passes | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for stage, target in TARGETS.items():
        wall = statistics.median(r[stage][0] for r in runs)
        ratio = statistics.median(r[stage][0] / r[stage][1] for r in runs)
        floor = statistics.median(r[stage][1] for r in runs)
        print(f"| {stage} | {wall:.2f} s | {floor:.2f} s | {ratio:.2f}x | <= {target}x |")


if __name__ == "__main__":
    main()
