"""Walk timm's model modules: can micam_core explain the smallest model of each?

    python bench/zoo.py [--modules vision_transformer,swin_transformer] [--image examples/chelsea_cat.jpg]

For every module of ``timm.list_modules()``: the smallest classifier (fewest parameters among the few whose
names say they are small; counted on the meta device; a feature backbone only where the module has no
classifier), random weights, the model's default input size,
the default layer, the default methods (MI CAM, Grad-CAM, MI-Grad-CAM). A model passes when each map is finite and of
the input size; a refusal (:class:`NotACNNError`) is listed with its sentence. Prints a table and the count.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

from micam_core import MicamError, explain, from_module  # noqa: E402
from micam_core.registry import DEFAULT_METHODS  # noqa: E402

SMALL_WORDS = ("atto", "femto", "pico", "zepto", "nano", "micro", "xxxs", "xxs", "xs", "tiny", "mini",
               "little", "small", "light", "lite", "s0", "t0", "b0", "m0")
SHORTLIST = 4


@dataclass
class ZooRow:
    module: str
    model: str
    status: str  # "ok", "refused" or "failed"
    layer: str = ""
    detail: str = ""
    seconds: float = 0.0


def _size_rank(name: str) -> tuple:
    base = name.split(".")[0]
    words = [i for i, w in enumerate(SMALL_WORDS) if w in base]
    numbers = [int(n) for n in re.findall(r"\d+", base)] or [0]
    return (min(words) if words else len(SMALL_WORDS), numbers[0], len(base))


def _meta_params(name: str) -> float:
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
        return float(sum(p.numel() for p in model.parameters()))
    except Exception:  # some models cannot be built on the meta device; rank them last
        return float("inf")


def _is_classifier(name: str) -> bool:
    cfg = timm.models.get_pretrained_cfg(name)
    return bool(cfg is not None and getattr(cfg, "num_classes", 0))


def smallest_model(module: str) -> str | None:
    """The model with the fewest parameters among the module's ``SHORTLIST`` smallest-named ones
    (classifiers first: a module's feature-only backbones are taken only when it has nothing else)."""
    names = timm.list_models(module=module)
    names = sorted([n for n in names if _is_classifier(n)] or names, key=_size_rank)[:SHORTLIST]
    if not names:
        return None
    return min(names, key=lambda n: (_meta_params(n), _size_rank(n)))


def try_model(module: str, name: str, image: Path) -> ZooRow:
    """Build ``name`` with random weights and explain ``image`` with every method at the default layer."""
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = from_module(timm.create_model(name, pretrained=False), spec=name, device="cpu")
            exp = explain(loaded, image, methods=DEFAULT_METHODS)
        size = loaded.input_size
        bad = [m for m, v in exp.maps.items() if v.shape != size or not np.isfinite(v).all()]
        status, detail = ("failed", f"bad maps: {bad}") if bad else ("ok", loaded.layers[0].describe()
                                                                     if loaded.layers else "")
        detail = next((i.describe() for i in loaded.layers if i.name == loaded.default_layer), detail)
        return ZooRow(module, name, status, loaded.default_layer, f"{size[0]} px, {detail}",
                      time.perf_counter() - start)
    except MicamError as err:
        return ZooRow(module, name, "refused", detail=str(err), seconds=time.perf_counter() - start)
    except Exception as err:  # counted as a failure, reported with its type
        return ZooRow(module, name, "failed", detail=f"{type(err).__name__}: {err}"[:300],
                      seconds=time.perf_counter() - start)


def walk(modules: list[str] | None = None, image: Path = ROOT / "examples" / "chelsea_cat.jpg",
         progress: bool = False) -> list[ZooRow]:
    """One row per timm module (modules without models are skipped)."""
    rows = []
    for module in modules or timm.list_modules():
        name = smallest_model(module)
        if name is None:
            continue
        rows.append(try_model(module, name, image))
        if progress:
            row = rows[-1]
            print(f"{row.module}: {row.model} {row.status} {row.seconds:.1f}s {row.detail[:120]}",
                  file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[ZooRow]) -> None:
    print("| module | smallest model | result | default layer | detail |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.module} | {r.model} | {r.status} | {r.layer} | {r.detail.replace('|', '/')} |")
    ok = sum(r.status == "ok" for r in rows)
    refused = sum(r.status == "refused" for r in rows)
    print(f"\n{ok} of {len(rows)} modules explained ({100 * ok / max(len(rows), 1):.1f}%), "
          f"{refused} refused with a reason, {len(rows) - ok - refused} failed.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default="")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"timm {timm.__version__}, torch {torch.__version__}, CPU, random weights, default input sizes")
    modules = [m for m in args.modules.split(",") if m] or None
    print_table(walk(modules, args.image, progress=True))


if __name__ == "__main__":
    main()
