"""The Ray engine: Ray Data reads images in parallel and maps batches through a pool of model workers.

Each worker (:class:`EvalWorker`, an actor) loads the model once and computes rows with the same
:func:`~.rows.image_rows` as the local engine; the driver streams the finished batches into the same
Parquet store, so resume works as for the local engine. Workers that die are restarted by Ray and
their batch retried (``max_restarts`` / ``max_task_retries``); a batch's rows reach the store only
once, when the batch has finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from ..view import View
from .rows import to_table
from .store import ResultStore

log = logging.getLogger(__name__)

WINDOW = 4096  # records handed to Ray Data at a time (bounds the driver's memory on streamed data sets)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> float:
    """Connect to the cluster at ``address`` (or start a local Ray); returns the seconds it took."""
    import ray

    t0 = time.perf_counter()
    if not ray.is_initialized():
        kwargs = {"num_cpus": num_cpus} if num_cpus and not address else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    return time.perf_counter() - t0


def _read(record: dict) -> dict:
    """Read the file's bytes (runs as parallel Ray tasks); unreadable files fail later, as rows."""
    if not record.get("bytes") and record.get("path"):
        try:
            record = {**record, "bytes": Path(record["path"]).read_bytes()}
        except OSError as err:
            log.warning("cannot read %s: %s", record["path"], err)
    return record


class EvalWorker:
    """A Ray Data actor: loads the model once, turns a batch of records into rows (an Arrow table)."""

    def __init__(self, spec: str, view: View, target: str = "label", sanity: bool = False, device: str = "auto",
                 crash_once: tuple[str, str] | None = None):
        from ..models import load_model

        self.loaded = load_model(spec, device=device)
        self.view, self.target, self.sanity = view, target, sanity
        self.crash_once = crash_once  # testing: (image_id, marker file) -> die once on that image

    def __call__(self, batch):
        from .local import GPU_CHUNK
        from .rows import image_rows

        chunk = GPU_CHUNK if self.loaded.device.type == "cuda" else None
        rows = []
        for record in batch.to_pylist():
            self._maybe_crash(record["image_id"])
            rows.extend(image_rows(self.loaded, record, self.view, self.target, chunk=chunk, sanity=self.sanity))
        return to_table(rows)

    def _maybe_crash(self, image_id: str) -> None:
        if self.crash_once and image_id == self.crash_once[0] and not os.path.exists(self.crash_once[1]):
            Path(self.crash_once[1]).write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies, as on a hardware or OOM kill


def _windows(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    it = iter(records)
    while window := list(islice(it, size)):
        yield window


def run_ray(spec: str, records: Iterable[dict], view: View, store: ResultStore, batch_size: int = 8,
            workers: int | None = None, on_image: Callable[[int], None] | None = None,
            crash_once: tuple[str, str] | None = None, window: int = WINDOW, target: str = "label",
            sanity: bool = False) -> int:
    """Evaluate ``records`` with model ``spec`` on the connected Ray cluster. Returns images done."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    size = workers or (gpus if gpus else max(1, int(resources.get("CPU", 1))))
    per_worker = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    log.info("ray: %d workers (%s each) for %s", size, per_worker, spec)
    done = 0
    for part in _windows(records, window):
        ds = ray.data.from_items(part, override_num_blocks=min(len(part), 4 * size))
        ds = ds.map(_read, num_cpus=0)  # I/O: must not wait for the CPUs the model workers hold
        ds = ds.map_batches(
            EvalWorker, fn_constructor_kwargs={"spec": spec, "view": view, "target": target, "sanity": sanity,
                                               "device": "cuda" if gpus else "cpu", "crash_once": crash_once},
            batch_size=batch_size, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
            max_restarts=-1, max_task_retries=-1, **per_worker)
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            store.write(table)
            images = len(set(table["image_id"].to_pylist()))
            done += images
            if on_image:
                on_image(images)
    return done
