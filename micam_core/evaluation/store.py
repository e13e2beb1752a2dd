"""The results folder: Parquet part files written atomically, run.json beside them, resume keys.

Layout of ``--out DIR``::

    run.json                  configuration, source, settings, library versions
    rows/part-*.parquet       one file per finished batch of images (written to a temp name, renamed)

A part file holds *all* rows of each of its images, so an image is either fully present or absent:
after a crash (even ``kill -9``) ``--resume`` re-runs exactly the images that have no rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import MicamError
from .rows import SCHEMA, to_table

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
ROWS_DIR = "rows"
# Keys that must match between a run and its resumption (the numbers depend on them).
MUST_MATCH = ("settings", "source", "limit")


class ResultStore:
    """Append-only Parquet parts under ``root/rows``; readers see only complete files."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.rows_dir = self.root / ROWS_DIR

    def parts(self) -> list[Path]:
        return sorted(self.rows_dir.glob("part-*.parquet")) if self.rows_dir.is_dir() else []

    def write(self, rows: list[dict] | pa.Table) -> Path | None:
        """Write one part file atomically (temp file, fsync, rename)."""
        table = rows if isinstance(rows, pa.Table) else to_table(rows)
        if table.num_rows == 0:
            return None
        self.rows_dir.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.rows_dir / f".{name}.tmp"
        with tmp.open("wb") as f:
            pq.write_table(table.cast(SCHEMA), f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        final = self.rows_dir / name
        os.replace(tmp, final)
        return final

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """All rows (an empty table with the schema when there are none)."""
        parts = self.parts()
        if not parts:
            return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])

    def done(self, model: str) -> set[str]:
        """Image ids that already have their rows for ``model``."""
        table = self.read(["model", "image_id"])
        ids = table.filter(pc.equal(table["model"], model))["image_id"]
        return set(ids.to_pylist())

    def clean_temp(self) -> None:
        """Remove half-written temp files left by a killed run."""
        for tmp in self.rows_dir.glob(".part-*.tmp") if self.rows_dir.is_dir() else []:
            tmp.unlink(missing_ok=True)

    # run.json ----------------------------------------------------------------------------------
    def read_config(self) -> dict | None:
        path = self.root / RUN_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def start(self, config: dict, resume: bool) -> None:
        """Check ``--out`` against ``--resume`` and write run.json (atomically)."""
        old = self.read_config()
        if self.parts() and not resume:
            raise MicamError(f"{self.root} already holds results; pass --resume to continue them, "
                             "or choose another --out.")
        if resume and old is not None:
            changed = [k for k in MUST_MATCH if old.get(k) != config.get(k)]
            if changed:
                raise MicamError(f"--resume: {', '.join(changed)} differ from the run in {self.root} "
                                 f"(was {[old.get(k) for k in changed]}); use another --out.")
            config = {**config, "models": sorted(set(old.get("models", [])) | set(config["models"])),
                      "started": old.get("started", config.get("started")), "resumed": time.time()}
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_temp()
        tmp = self.root / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(config, indent=2, default=str))
        os.replace(tmp, self.root / RUN_FILE)
