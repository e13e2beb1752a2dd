"""Command line: ``python -m micam_core explain IMAGE... [--model SPEC] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import MicamError
from .methods import METHODS, UPSAMPLING, explain
from .models import DEFAULT_SPEC, load_model
from .render import COLORMAPS, overlay
from .report import build_report

log = logging.getLogger("micam_core.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m micam_core",
                                     description="MI CAM, MI-Grad-CAM and Grad-CAM for timm CNNs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="explain images and write overlays, maps and a JSON manifest")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--model", default=DEFAULT_SPEC, help=f"model spec (default {DEFAULT_SPEC})")
    p.add_argument("--layer", default=None, help="target layer (default: last spatial feature map)")
    p.add_argument("--target", default=None, help="class index or name (default: top-1 per image)")
    p.add_argument("--out", type=Path, default=Path("micam_out"), help="output folder")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--upsampling", choices=UPSAMPLING, default="paper", help="how MI maps are upsampled")
    p.add_argument("--cmap", choices=COLORMAPS, default="jet")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the map")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    _add_metric_args(p)
    p.add_argument("-v", "--verbose", action="store_true")
    from .evaluation.cli import add_parsers

    add_parsers(sub)  # evaluate, summarize
    return parser


def _add_metric_args(p: argparse.ArgumentParser) -> None:
    from .counterfactual import FILLS

    p.add_argument("--metrics", action="store_true",
                   help="add counterfactuals and faithfulness metrics to the manifest, plot the curves")
    p.add_argument("--threshold", type=float, default=0.5, help="counterfactual mask threshold")
    p.add_argument("--fill", choices=FILLS, default="black", help="fill of masked pixels")
    p.add_argument("--steps", type=int, default=32, help="deletion/insertion steps")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("evaluate", "summarize"):
        from .evaluation.cli import run_command

        return run_command(args)
    try:
        loaded = load_model(args.model, device=args.device)
    except MicamError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    stems: set[str] = set()
    for path in tqdm(args.images, desc="explaining", unit="image", disable=len(args.images) < 2):
        stem = _unique_stem(path.stem, stems)
        try:
            _explain_one(loaded, path, stem, args)
        except MicamError as err:
            failures += 1
            tqdm.write(f"error: {path}: {err}", file=sys.stderr)
    return 1 if failures else 0


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}"
    used.add(candidate)
    return candidate


def _explain_one(loaded, path: Path, stem: str, args) -> None:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    exp = explain(loaded, path, target=args.target, layer=args.layer, methods=methods,
                  upsampling=args.upsampling)
    exp.crop.save(args.out / f"{stem}_input.png")
    files = {"input": f"{stem}_input.png"}
    for method, saliency in exp.maps.items():
        overlay(exp.crop, saliency, args.cmap, args.alpha).save(args.out / f"{stem}_{method}.png")
        np.save(args.out / f"{stem}_{method}.npy", saliency)
        files[method] = {"overlay": f"{stem}_{method}.png", "map": f"{stem}_{method}.npy"}
    extra = None
    if args.metrics:
        extra = _metrics(loaded, exp, stem, args, files)
    report = build_report(loaded, exp, counterfactuals=extra)
    report["image"] = str(path)
    report["files"] = files
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))


def _metrics(loaded, exp, stem: str, args, files: dict) -> dict:
    from .counterfactual import analyse
    from .render import curves_figure

    result = analyse(loaded, exp, threshold=args.threshold, fill=args.fill, steps=args.steps)
    curves_figure(result.curves(), title=f"{stem}: target {exp.target_label}").save(
        args.out / f"{stem}_curves.png")
    files["curves"] = f"{stem}_curves.png"
    return result.to_report()
