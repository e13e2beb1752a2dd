"""The local engine: one process, images one after another, rows flushed to Parquet every batch.

Each image's masked variants already run as batched forward passes (``analyse``); the engine adds
nothing but decoding, bookkeeping and writing. Completed images are flushed on Ctrl-C too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..models import LoadedModel
from ..view import View
from .rows import image_rows, row_names
from .store import ResultStore

log = logging.getLogger(__name__)

GPU_CHUNK = 64  # masked images per forward pass on CUDA (the CPU default of analyse is 8)


def run_local(loaded: LoadedModel, records: Iterable[dict], view: View, store: ResultStore,
              batch_size: int = 8, on_image: Callable[[int], None] | None = None, target: str = "label",
              sanity: bool = False) -> int:
    """Evaluate ``records`` with ``loaded``; write a part file every ``batch_size`` images. Returns images done."""
    chunk = GPU_CHUNK if loaded.device.type == "cuda" else None
    pending: list[dict] = []
    done = 0
    try:
        for record in records:
            pending.extend(image_rows(loaded, record, view, target, chunk=chunk, sanity=sanity))
            done += 1
            if on_image:
                on_image(1)
            if len(pending) >= batch_size * len(row_names(view)):
                store.write(pending)
                pending = []
    finally:  # Ctrl-C or an unexpected error: keep every image that finished
        if pending:
            store.write(pending)
    return done
