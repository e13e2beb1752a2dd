"""Command line: ``python -m micam_core explain IMAGE... [--model SPEC] [--methods a,b] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import MicamError
from .registry import METHODS
from .settings import DEFAULT_SPEC, SETTINGS, validate

log = logging.getLogger("micam_core.cli")


def add_setting(p: argparse.ArgumentParser, flag: str, name: str, by_protocol: bool = False) -> None:
    """An option for setting ``name`` (default and help from :data:`SETTINGS`; checked by ``validate``).

    ``by_protocol``: no default here; the chosen protocol's own value applies unless the option is given.
    """
    s = SETTINGS[name]
    default = ",".join(s.default) if s.kind == "methods" else s.default
    if by_protocol:
        p.add_argument(flag, default=None, help=f"{s.label}: {s.describe()} (default: the protocol's)")
        return
    p.add_argument(flag, default=default, help=f"{s.label}: {s.describe()} (default {default})")


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
    add_setting(p, "--methods", "methods")
    p.epilog = "methods: " + ", ".join(METHODS)
    add_setting(p, "--upsampling", "upsampling")
    add_setting(p, "--cmap", "cmap")
    add_setting(p, "--alpha", "opacity")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--figure", action="store_true",
                   help="also write a paper figure NAME_figure.pdf/.svg/.png (300 dpi) with caption (.txt) and "
                        "BibTeX (.bib); with --metrics it adds the counterfactuals and curves")
    p.add_argument("--metrics", action="store_true",
                   help="add counterfactuals and faithfulness metrics to the manifest, plot the curves")
    add_setting(p, "--protocol", "protocol")
    add_setting(p, "--threshold", "threshold", by_protocol=True)
    add_setting(p, "--fill", "fill", by_protocol=True)
    add_setting(p, "--steps", "steps", by_protocol=True)
    p.add_argument("-v", "--verbose", action="store_true")
    from .evaluation.cli import add_parsers

    add_parsers(sub)  # evaluate, summarize
    return parser


SETTING_ARGS = {"methods": "methods", "upsampling": "upsampling", "cmap": "cmap", "alpha": "opacity",
                "protocol": "protocol"}
BY_PROTOCOL = ("threshold", "fill", "steps")  # None: the protocol's own value


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
        settings = {name: validate(name, getattr(args, arg)) for arg, name in SETTING_ARGS.items()}
        settings.update({name: None if getattr(args, name) is None else validate(name, getattr(args, name))
                         for name in BY_PROTOCOL})
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
            tqdm.write(_explain_one(loaded, path, stem, args, settings))
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


def _explain_one(loaded, path: Path, stem: str, args, settings: dict) -> str:
    """Explain one image, write its files; returns what to tell the person (target, files, metrics)."""
    from .methods import explain
    from .outputs import write_results
    from .report import build_report

    exp = explain(loaded, path, target=args.target, layer=args.layer, methods=settings["methods"],
                  upsampling=settings["upsampling"])
    counterfactuals, curves, faith = None, None, None
    if args.metrics:
        from .counterfactual import analyse
        from .render import curves_figure

        faith = analyse(loaded, exp, threshold=settings["threshold"], fill=settings["fill"], steps=settings["steps"],
                        protocol=settings["protocol"])
        settings = {**settings, "threshold": faith.threshold, "fill": faith.fill, "steps": faith.steps}
        counterfactuals = faith.to_report()
        curves = curves_figure(faith.curves(), title=f"{stem}: target {exp.target_label}", labels=faith.labels(),
                               road=faith.road_curves(), removed=faith.protocol.removed,
                               protocol=faith.protocol.describe())
    report = build_report(loaded, exp, counterfactuals=counterfactuals, settings=settings)
    report["image"] = str(path)
    figure = _figure(loaded, exp, faith, stem, args.out, settings) if args.figure else []
    if figure:
        report["figure"] = figure
    written = write_results(args.out, stem, exp, report, cmap=settings["cmap"], opacity=settings["opacity"],
                            curves=curves)
    return _summary(path, exp, [p.name for p in written] + figure, args.out, faith)


def _summary(path: Path, exp, files: list[str], out: Path, faith) -> str:
    prob = float(exp.probs[exp.target])
    top1 = exp.top(1)[0]
    why = "top-1" if top1[0] == exp.target else f"asked for; top-1 is {top1[0]} {top1[1]} ({top1[2]:.1%})"
    lines = [f"{path}: target class {exp.target} {exp.target_label} ({prob:.1%}, {why}), layer {exp.layer}",
             f"  {len(files)} files in {out}: {', '.join(files)}"]
    if faith is not None:
        from .metrics_table import text

        lines.append(f"  counterfactuals: threshold {faith.threshold}, fill {faith.fill}, {faith.steps} steps")
        lines.append(f"  protocol: {faith.protocol.describe()}")
        lines += ["    " + line for line in text(faith).splitlines()]
    return "\n".join(lines)


def _figure(loaded, exp, faith, stem: str, out: Path, settings: dict) -> list[str]:
    """``STEM_figure.pdf/.svg/.png`` with caption and BibTeX; returns the file names."""
    from .figure import export_figure

    paths = export_figure(exp, out, f"{stem}_figure", model=loaded.spec, revision=loaded.revision,
                          methods=settings["methods"], cmap=settings["cmap"], opacity=settings["opacity"], faith=faith)
    return [Path(p).name for p in paths]
