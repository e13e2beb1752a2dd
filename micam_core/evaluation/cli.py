"""The ``evaluate`` and ``summarize`` subcommands (added to ``python -m micam_core`` by :mod:`micam_core.cli`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import MicamError
from ..flags import add_settings, view_of
from ..settings import DEFAULT_SPEC
from . import ENGINES, EXTRAS, TARGETS
from .interrupt import exit_code, stop_on_signals

EXAMPLES = """examples:
  micam evaluate --images photos/ --labels folders --models bundled:efficientnet_lite0 --out runs/a
  micam evaluate --images photos/ --labels labels.csv --methods micam,gradcam --steps 16 --out runs/a --resume
  micam evaluate --images photos/ --sanity --out runs/s
  micam evaluate --dataset imagefolder --data-dir photos/ --split train --out runs/b
  micam evaluate --dataset ILSVRC/imagenet-1k --split validation --limit 1000 --engine ray --out runs/c
  micam summarize runs/a

The random and centred baselines are evaluated with every method."""


THREADS_HELP = ("local engine: torch threads (default: OMP_NUM_THREADS when set, else the idle cores, i.e. "
                "the CPU count minus the load average, at least 1; on a busy machine extra threads wait for "
                "each other, so one thread is then faster: see docs/evaluate.md)")


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="faithfulness metrics over a folder or data set, into Parquet rows",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source (one of --images, --dataset)")
    src.add_argument("--images", type=Path, help="a folder of images (searched recursively)")
    src.add_argument("--labels", help="with --images: a CSV file,label (file relative to the folder), or "
                                      "'folders' to use each image's sub-folder name")
    src.add_argument("--dataset", help="a Hugging Face data set id (streamed), or a builder such as "
                                       "'imagefolder' together with --data-dir (offline)")
    src.add_argument("--data-dir", help="local folder for --dataset imagefolder (labels = sub-folder names)")
    src.add_argument("--split", default="validation", help="data set split (default validation)")
    src.add_argument("--image-column", default="image")
    src.add_argument("--label-column", default="label", help="'' for none")
    p.add_argument("--models", default=DEFAULT_SPEC, help=f"comma-separated model specs (default {DEFAULT_SPEC})")
    p.add_argument("--layer", default=None, help="target layer (default: each model's default layer)")
    add_settings(p, numbers_only=True)
    p.add_argument("--target", choices=TARGETS, default="label",
                   help="label: the image's label when it names a class of the model, else top-1; top1: always top-1")
    p.add_argument("--sanity", action="store_true",
                   help="also run the sanity checks per image: cascading model-parameter randomisation down to the "
                        "target layer and the random-logit test (Spearman, SSIM; seed 0), for methods and baselines")
    p.add_argument("--limit", type=int, default=None, help="at most N images")
    p.add_argument("--out", type=Path, required=True, help="results folder (rows/*.parquet, run.json, summary)")
    p.add_argument("--resume", action="store_true", help="keep the rows in --out and do only the missing images")
    p.add_argument("--engine", choices=ENGINES, default="local")
    p.add_argument("--ray-address", default=None, help="existing Ray cluster (e.g. auto, ray://head:10001); "
                                                       "default: start a local Ray")
    p.add_argument("--ray-workers", type=int, default=None, help="model workers (default: GPUs, else CPUs)")
    p.add_argument("--batch-size", type=int, default=8, help="images per part file / per Ray batch")
    p.add_argument("--device", default="auto", help="local engine: auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--no-summary", action="store_true", help="do not summarise at the end")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")

    s = sub.add_parser("summarize", help="statistics, paired comparisons and plots of an evaluate run")
    s.add_argument("results", type=Path, help="the --out folder of micam evaluate")
    s.add_argument("--reference", default="micam", help="method compared with every other (default micam)")
    s.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    s.add_argument("-v", "--verbose", action="store_true")


def run_command(args) -> int:
    try:
        _require(args)
        if args.command == "evaluate":
            return _evaluate(args)
        return _summarize(args.results, args.reference, args.bootstrap)
    except MicamError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        print(f"error: {_missing_sentence(args.command, [top])}", file=sys.stderr)
        return 2


def _require(args) -> None:
    """Refuse at once, in one sentence, when an optional package the command needs is not installed."""
    import importlib.util

    needed = ["pyarrow", "pandas"]  # rows (Parquet) and the summary's tables
    if args.command == "evaluate":
        needed += ["datasets"] if args.dataset else []
        needed += ["ray"] if args.engine == "ray" else []
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MicamError(_missing_sentence(args.command, missing))


def _missing_sentence(command: str, missing: list[str]) -> str:
    names = " and ".join(missing)
    return (f"micam {command} needs {names}, which {'is' if len(missing) == 1 else 'are'} not installed here. "
            "Install the evaluation extras: pip install 'micam-core[eval]' (from a checkout: pip install '.[eval]', "
            "or pip install -r requirements-dev.txt).")


def _evaluate(args) -> int:
    view = view_of(args, "layer")  # every value checked before torch loads, any image is read or anything written
    from .records import Source
    from .run import Plan, evaluate

    if args.images is None and args.dataset is None:
        raise MicamError("Give a source: --images DIR or --dataset NAME (see --help).")
    source = Source(images=str(args.images) if args.images else None, labels=args.labels, dataset=args.dataset,
                    data_dir=args.data_dir, split=args.split, image_column=args.image_column,
                    label_column=args.label_column or None)
    plan = Plan(models=[m.strip() for m in args.models.split(",") if m.strip()], source=source,
                view=view, target=args.target, sanity=args.sanity, out=str(args.out), engine=args.engine,
                resume=args.resume, limit=args.limit, batch_size=max(1, args.batch_size), device=args.device,
                ray_address=args.ray_address, ray_workers=args.ray_workers, progress=not args.no_progress)
    before, threads = _set_threads(args.threads, plan)
    try:
        with stop_on_signals():
            evaluate(plan)
    except KeyboardInterrupt as err:
        saved = _saved_images(args.out)
        print(f"\nstopped ({err}): {saved} image{'' if saved == 1 else 's'} saved in {args.out}; "
              "rerun the same command with --resume", file=sys.stderr)
        return exit_code(err)
    finally:
        if before:
            import torch

            torch.set_num_threads(before)  # in-process callers (tests, notebooks) get their setting back
    if threads:
        print(f"torch threads: {threads}", file=sys.stderr)
    for key, seconds in plan.timings.items():
        print(f"{key}: {seconds:.1f} s", file=sys.stderr)
    if args.no_summary:
        return 0
    return _summarize(args.out, "micam", 2000)


def _set_threads(requested: int | None, plan) -> tuple[int, int]:
    """torch's intra-op threads for the local engine: ``--threads``, else ``OMP_NUM_THREADS`` when set, else the
    idle cores (see --help). Returns (the count before, the count now); (0, 0) when left alone."""
    if plan.engine != "local" or (not requested and os.environ.get("OMP_NUM_THREADS")):
        return 0, 0
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, requested or idle_cores()))
    return before, torch.get_num_threads()


def idle_cores() -> int:
    """CPU cores not busy with other work: the core count minus the 1-minute load average, at least 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on this platform
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def _saved_images(out: Path) -> int:
    """(model, image) pairs with rows in ``out``."""
    from .store import ResultStore

    table = ResultStore(out).read(["model", "image_id"])
    return len(set(zip(table["model"].to_pylist(), table["image_id"].to_pylist())))


def _summarize(results: Path, reference: str, resamples: int) -> int:
    from .summary import summarize

    report = summarize(results, reference=reference, resamples=resamples)
    print(report.markdown)
    print(f"\nwritten: {', '.join(str(p) for p in report.files)}", file=sys.stderr)
    return 0
