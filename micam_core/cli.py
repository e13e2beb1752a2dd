"""Command line: ``python -m micam_core explain IMAGE... [--model SPEC] [--methods a,b] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from .counterfactual import analyse
from .errors import MicamError
from .evaluation.cli import add_parsers, run_command
from .figure import export_figure
from .flags import add_settings, view_of
from .methods import explain
from .models import DEFAULT_SPEC, load_model
from .outputs import write_results
from .registry import METHODS
from .render import curves_figure
from .report import build_report
from .view import View

log = logging.getLogger("micam_core.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m micam_core",
                                     description="MI CAM and the CAM methods it is compared with, for timm models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("explain", help="explain images and write overlays, maps and a JSON manifest")
    p.add_argument("images", nargs="+", type=Path, help="image files")
    p.add_argument("--model", default=DEFAULT_SPEC, help=f"model spec (default {DEFAULT_SPEC})")
    p.add_argument("--layer", default=None, help="target layer (default: the model's default layer)")
    p.add_argument("--target", default=None, help="class index or name (default: top-1 per image)")
    p.add_argument("--out", type=Path, default=Path("micam_out"), help="output folder")
    add_settings(p)
    p.epilog = "methods: " + ", ".join(METHODS)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--figure", action="store_true",
                   help="also write a paper figure NAME_figure.pdf/.svg/.png (300 dpi) with caption (.txt) and "
                        "BibTeX (.bib); with --metrics it adds the counterfactuals and curves")
    p.add_argument("--metrics", action="store_true",
                   help="add counterfactuals and faithfulness metrics to the manifest, plot the curves")
    p.add_argument("-v", "--verbose", action="store_true")
    add_parsers(sub)  # evaluate, summarize
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("evaluate", "summarize"):
        return run_command(args)
    try:
        view = view_of(args, "model", "layer", "target")
        loaded = load_model(view.model, device=args.device)
    except MicamError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    stems: set[str] = set()
    for path in tqdm(args.images, desc="explaining", unit="image", disable=len(args.images) < 2):
        stem = _unique_stem(path.stem, stems)
        try:
            _explain_one(loaded, path, stem, args, view)
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


def _explain_one(loaded, path: Path, stem: str, args, view: View) -> None:
    exp = explain(loaded, path, target=view.target, layer=view.layer, methods=view.methods,
                  upsampling=view.upsampling, params=view.params())
    counterfactuals, curves, faith = None, None, None
    if args.metrics:
        faith = analyse(loaded, exp, threshold=view.threshold, fill=view.fill, steps=view.steps)
        counterfactuals = faith.to_report()
        curves = curves_figure(faith.curves(), title=f"{stem}: target {exp.target_label}", labels=faith.labels())
    report = build_report(loaded, exp, counterfactuals=counterfactuals, settings=view.chosen_settings())
    report["image"] = str(path)
    if args.figure:
        report["figure"] = _figure(loaded, exp, faith, stem, args.out, view)
    write_results(args.out, stem, exp, report, cmap=view.cmap, opacity=view.opacity, curves=curves)


def _figure(loaded, exp, faith, stem: str, out: Path, view: View) -> list[str]:
    """``STEM_figure.pdf/.svg/.png`` with caption and BibTeX; returns the file names."""
    paths = export_figure(exp, out, f"{stem}_figure", model=loaded.spec, revision=loaded.revision,
                          methods=view.methods, cmap=view.cmap, opacity=view.opacity, faith=faith)
    return [Path(p).name for p in paths]
