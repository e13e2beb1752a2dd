"""Command line: ``python -m micam_core explain IMAGE... [--model SPEC] [--methods a,b] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import MicamError
from .flags import add_settings, view_of
from .registry import METHODS
from .settings import DEFAULT_SPEC
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
                   help="also write a paper figure micam_MODEL_IMAGE_METHODS.pdf/.svg/.png (300 dpi) with its caption "
                        "(.txt, .tex) and BibTeX (.bib); with --metrics it adds the counterfactuals and curves")
    p.add_argument("--metrics", action="store_true",
                   help="add counterfactuals and faithfulness metrics to the manifest, plot the curves")
    p.add_argument("-v", "--verbose", action="store_true")
    from .evaluation.cli import add_parsers

    add_parsers(sub)  # evaluate, summarize
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command in ("evaluate", "summarize"):
        from .evaluation.cli import run_command

        return run_command(args)
    try:
        return _explain_command(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the images finished so far are written", file=sys.stderr)
        return 130


def _explain_command(args) -> int:
    from tqdm import tqdm

    from .models import load_model

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
            tqdm.write(_explain_one(loaded, path, stem, args, view))
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


def _explain_one(loaded, path: Path, stem: str, args, view: View) -> str:
    """Explain one image, write its files; returns what to tell the person (target, files, metrics)."""
    from .methods import explain
    from .outputs import write_results
    from .report import build_report

    exp = explain(loaded, path, target=view.target, layer=view.layer, methods=view.methods,
                  upsampling=view.upsampling, params=view.params())
    counterfactuals, curves, faith = None, None, None
    if args.metrics:
        from .analysis import analyse
        from .render import curves_figure

        faith = analyse(loaded, exp, **view.stage("counterfactual"))
        counterfactuals = faith.to_report()
        curves = curves_figure(faith.curves(), title=f"{stem}: target {exp.target_label}", labels=faith.labels(),
                               road=faith.road_curves(),
                               protocol=faith.protocol.describe())
    report = build_report(loaded, exp, counterfactuals=counterfactuals, settings=view.chosen_settings())
    report["image"] = str(path)
    figure = _figure(loaded, exp, faith, stem, args.out, view) if args.figure else []
    if figure:
        report["figure"] = figure
    written = write_results(args.out, stem, exp, report, cmap=view.cmap, opacity=view.opacity, curves=curves)
    return _summary(path, exp, [p.name for p in written] + figure, args.out, faith)


def _summary(path: Path, exp, files: list[str], out: Path, faith) -> str:
    prob = float(exp.probs[exp.target])
    top1 = exp.top(1)[0]
    why = "top-1" if top1[0] == exp.target else f"asked for; top-1 is {top1[0]} {top1[1]} ({top1[2]:.1%})"
    lines = [f"{path}: target class {exp.target} {exp.target_label} ({prob:.1%}, {why}), layer {exp.layer}",
             f"  {len(files)} files in {out}: {', '.join(files)}"]
    if faith is not None:
        from .metrics_table import text

        lines += ["  " + line for line in text(faith).splitlines()]  # opens with the protocol's settings
    return "\n".join(lines)


def _figure(loaded, exp, faith, stem: str, out: Path, view: View) -> list[str]:
    """The paper figure (.pdf/.svg/.png, named by model, image and methods), caption and BibTeX; the file names."""
    from .figure import export_figure, figure_stem

    paths = export_figure(exp, out, figure_stem(loaded.spec, stem, exp.methods), model=loaded.spec,
                          revision=loaded.revision, methods=view.methods, cmap=view.cmap, opacity=view.opacity,
                          faith=faith)
    return [Path(p).name for p in paths]
