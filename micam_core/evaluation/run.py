"""``evaluate``: source -> records -> (per model) an engine -> Parquet rows; run.json beside them."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import dataclass, field

from tqdm import tqdm

from ..errors import MicamError
from ..view import View
from . import ENGINES, TARGETS
from .lock import RunLock
from .records import Source, iter_records
from .rows import run_settings
from .store import ResultStore

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """Everything one ``evaluate`` run needs."""

    models: list[str]
    source: Source
    view: View
    out: str
    target: str = "label"  # see rows.run_settings
    sanity: bool = False
    engine: str = "local"
    resume: bool = False
    limit: int | None = None
    batch_size: int = 8
    device: str = "auto"
    ray_address: str | None = None
    ray_workers: int | None = None
    progress: bool = True
    timings: dict = field(default_factory=dict)  # filled in: ray start-up, seconds per model


def versions() -> dict[str, str]:
    from ..report import library_versions

    out = dict(library_versions())
    for name in ("pyarrow", "scipy", "datasets", "ray"):
        with contextlib.suppress(ImportError):
            out[name] = __import__(name).__version__
    out["platform"] = platform.platform()
    return out


def run_device(plan: Plan) -> str:
    """The device the rows are computed on, as recorded in run.json (``auto`` resolved for the local engine)."""
    from ..models import resolve_device

    if plan.engine != "local":
        return f"{plan.engine}:{plan.device}"
    try:
        return str(resolve_device(plan.device))
    except RuntimeError as err:
        raise MicamError(f"--device {plan.device!r} is not a device torch knows ({err}); use auto, cpu or cuda.") \
            from None


def evaluate(plan: Plan) -> ResultStore:
    """Run ``plan``; rows already in ``plan.out`` are kept and skipped when ``plan.resume``."""
    from ..models import normalize_spec

    if plan.engine not in ENGINES:
        raise MicamError(f"--engine must be one of {', '.join(ENGINES)}.")
    if plan.target not in TARGETS:
        raise MicamError(f"--target must be one of {', '.join(TARGETS)}.")
    specs = [normalize_spec(m) for m in plan.models]
    with RunLock(plan.out):  # one writer per --out: a second process is refused here
        return _evaluate_locked(plan, specs)


def _evaluate_locked(plan: Plan, specs: list[str]) -> ResultStore:
    store = ResultStore(plan.out)
    config = {"command": "evaluate", "models": specs, "engine": plan.engine, "source": plan.source.describe(),
              "settings": run_settings(plan.view, plan.target, plan.sanity), "limit": plan.limit,
              "batch_size": plan.batch_size, "device": run_device(plan), "started": time.time(), "versions": versions()}
    store.start(config, plan.resume)
    if plan.engine == "ray":
        from .ray_engine import start_ray

        plan.timings["ray_startup_s"] = start_ray(plan.ray_address)
    for spec in specs:
        t0 = time.perf_counter()
        _evaluate_model(spec, plan, store)
        plan.timings[spec] = time.perf_counter() - t0
    return store


def _evaluate_model(spec: str, plan: Plan, store: ResultStore) -> None:
    done = store.done(spec)
    records = iter_records(plan.source, plan.limit)
    total = plan.limit
    if plan.source.images is not None:  # a folder: cheap to list, so the bar knows the total
        records = list(records)
        total = len(records)
    todo = (r for r in records if r["image_id"] not in done)
    skipped = len(done) if total is None else min(len(done), total)
    bar = tqdm(total=total, initial=skipped, desc=spec, unit="image", disable=not plan.progress, smoothing=0.1)
    try:
        if plan.engine == "ray":
            from .ray_engine import run_ray

            run_ray(spec, todo, plan.view, store, plan.batch_size, plan.ray_workers, bar.update, target=plan.target,
                    sanity=plan.sanity)
        else:
            from ..models import load_model
            from .local import run_local

            loaded = load_model(spec, device=plan.device)
            run_local(loaded, todo, plan.view, store, plan.batch_size, bar.update, target=plan.target,
                      sanity=plan.sanity)
    finally:
        bar.close()
