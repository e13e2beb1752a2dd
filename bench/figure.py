"""Time of the paper-figure export (PDF + SVG + 300-dpi PNG + caption + BibTeX) on CPU.

    python bench/figure.py [--runs 5] [--steps 8]

Explains one example with the bundled model (offline), runs the counterfactuals, then times
``export_figure`` with and without the counterfactual row and curves. Target: at most 2 s. CPU
seconds are printed too: on a shared machine they are the steadier number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.speed import median_time  # noqa: E402
from micam_core import analyse, explain, load_model  # noqa: E402
from micam_core.figure import export_figure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--image", default=str(ROOT / "examples" / "chelsea_cat.jpg"))
    args = parser.parse_args()
    loaded = load_model("bundled:efficientnet_lite0", device="cpu")
    exp = explain(loaded, args.image)
    faith = analyse(loaded, exp, steps=args.steps)
    with tempfile.TemporaryDirectory() as folder:
        for name, extra in (("maps only", {}), ("with counterfactuals and curves", {"faith": faith})):
            def run(extra=extra):
                export_figure(exp, folder, "bench", model=loaded.spec, **extra)

            cpu_start = time.process_time()
            seconds = median_time(run, args.runs, warmup=1)
            cpu = (time.process_time() - cpu_start) / (args.runs + 1)
            print(f"figure export ({name}; pdf + svg + png at 300 dpi): median {seconds:.2f} s wall, "
                  f"{cpu:.2f} s CPU per export, over {args.runs} runs")


if __name__ == "__main__":
    main()
