"""RSS over many requests cycling through several models: the model cache keeps memory bounded.

    python bench/memory.py [--requests 200] [--max-models 2] [--steps 4]

Builds four random-weight timm CNNs in Hub layout in a temporary folder (no network), then runs
requests (explain + counterfactual analysis, every tenth one with a broken image) cycling through
them and the bundled model with a ModelCache of ``--max-models``; prints the RSS curve.
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

import timm  # noqa: E402
from timm.models._hub import save_for_hf  # noqa: E402

from micam_core import MicamError, ModelCache, analyse, explain  # noqa: E402

ARCHITECTURES = ("resnet18", "efficientnet_b0", "mobilenetv3_large_100", "densenet121")


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024.0


def build_models(folder: Path) -> list[str]:
    specs = ["bundled:efficientnet_lite0"]
    for arch in ARCHITECTURES:
        target = folder / arch
        save_for_hf(timm.create_model(arch, pretrained=False), target, safe_serialization=True)
        specs.append(f"local-dir:{target}")
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-models", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    photos = sorted((ROOT / "examples").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        specs = build_models(Path(tmp))
        cache = ModelCache(max_models=args.max_models)
        print(f"start: RSS {rss_mb():.0f} MB; {len(specs)} models, cache of {args.max_models}")
        print("| requests | RSS MB | models cached | seconds |")
        print("|---:|---:|---|---:|")
        start = time.perf_counter()
        failures = 0
        for i in range(1, args.requests + 1):
            loaded = cache.get(specs[i % len(specs)], device="cpu")
            image = b"broken" if i % 10 == 0 else photos[i % len(photos)]
            try:
                exp = explain(loaded, image, target=i % 1000)
                analyse(loaded, exp, steps=args.steps)
            except MicamError:
                failures += 1
            if i % 20 == 0 or i == 1:
                names = ", ".join(s.split("/")[-1] for s in cache.specs())
                print(f"| {i} | {rss_mb():.0f} | {names} | {time.perf_counter() - start:.0f} |")
        print(f"failed requests (broken images, as intended): {failures}")


if __name__ == "__main__":
    main()
