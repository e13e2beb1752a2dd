"""The local engine: one process, images one after another, rows flushed to Parquet every batch or 5 s.

Each image's masked variants already run as batched forward passes (``analyse``); the engine adds
nothing but decoding, bookkeeping and writing. Completed images are flushed on Ctrl-C too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from ..models import LoadedModel
from ..view import View
from .rows import image_rows, row_names
from .store import ResultStore

log = logging.getLogger(__name__)

GPU_CHUNK = 64  # masked images per forward pass on CUDA (the CPU default of analyse is 8)
FLUSH_SECONDS = 5.0  # finished images wait at most this long (one image more) before they are written


def run_local(loaded: LoadedModel, records: Iterable[dict], view: View, store: ResultStore,
              batch_size: int = 8, on_image: Callable[[int], None] | None = None,
              flush_seconds: float = FLUSH_SECONDS, target: str = "label", sanity: bool = False) -> int:
    """Evaluate ``records`` with ``loaded``. Returns images done.

    A part file is written every ``batch_size`` images, and sooner once ``flush_seconds`` have passed since
    the last one, so a slow run never holds more than a few seconds of finished work in memory.
    ``view``, ``target`` and ``sanity``: see :func:`.rows.run_settings`.
    """
    chunk = GPU_CHUNK if loaded.device.type == "cuda" else None
    pending: list[dict] = []
    done = 0
    per_image = len(row_names(view))
    last = time.monotonic()
    try:
        for record in records:
            pending.extend(image_rows(loaded, record, view, target, chunk=chunk, sanity=sanity))
            done += 1
            if on_image:
                on_image(1)
            if len(pending) >= batch_size * per_image or time.monotonic() - last >= flush_seconds:
                store.write(pending)
                pending, last = [], time.monotonic()
    finally:  # Ctrl-C, SIGTERM (see interrupt.py) or an error: the image in flight is dropped, the rest kept
        if pending:
            store.write(pending)
    return done
