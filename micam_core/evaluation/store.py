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
MUST_MATCH = ("settings", "source", "limit", "device")
RECORDED_LATER = ("device",)  # runs written before it was recorded resume on any device
VERSIONS_MUST_MATCH = ("micam_core", "torch", "timm")  # the libraries that decide the numbers


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
        """All rows (an empty table with the schema when there are none); corrupted parts skipped with a warning."""
        tables = [t for t in (self._read_part(p, columns) for p in self.parts()) if t is not None]
        if not tables:
            return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
        return pa.concat_tables(tables)

    def _read_part(self, path: Path, columns: list[str] | None) -> pa.Table | None:
        try:
            schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[c for c in schema.names if c in present])
            for field in schema:  # parts written before a column existed (e.g. without --sanity): nulls
                if field.name not in present:
                    table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
            return table.select(schema.names).cast(schema)
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            log.warning("skipped the corrupted part file %s (%s); its images count as not done",
                        path, str(err).splitlines()[0][:120] if str(err) else type(err).__name__)
            return None

    def set_aside_corrupted(self) -> list[Path]:
        """Rename unreadable part files to ``*.corrupt`` (so a resume redoes their images); returns them."""
        moved = []
        for path in self.parts():
            if self._read_part(path, ["model", "image_id"]) is None:
                target = path.with_name(path.name + ".corrupt")
                os.replace(path, target)
                log.warning("set %s aside as %s", path.name, target.name)
                moved.append(target)
        return moved

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
    def read_config(self, strict: bool = False) -> dict | None:
        """run.json (``None`` when absent; when unreadable: ``None`` with a warning, or with ``strict`` a sentence)."""
        path = self.root / RUN_FILE
        if not path.is_file():
            return None
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
            return config
        except (OSError, ValueError) as err:
            message = (f"{path} is corrupted ({type(err).__name__}), so this run's settings are unknown; "
                       "move it away and start a new run in another --out.")
            if strict:
                raise MicamError(message) from None
            log.warning(message)
            return None

    def start(self, config: dict, resume: bool) -> None:
        """Check ``--out`` against ``--resume`` and write run.json (atomically)."""
        old = self.read_config(strict=True)
        if self.parts() and not resume:
            raise MicamError(f"{self.root} already holds results; pass --resume to continue them, "
                             "or choose another --out.")
        if resume and old is not None:
            changed = [k for k in MUST_MATCH if old.get(k) != config.get(k) and (k in old or k not in RECORDED_LATER)]
            changed += _changed_versions(old, config)
            if changed:
                was, now = [_value(old, k) for k in changed], [_value(config, k) for k in changed]
                raise MicamError(f"--resume: {', '.join(changed)} differ from the run in {self.root} "
                                 f"(was {was}, now {now}); use another --out.")
            config = {**config, "models": sorted(set(old.get("models", [])) | set(config["models"])),
                      "started": old.get("started", config.get("started")), "resumed": time.time()}
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_temp()
        if resume:
            self.set_aside_corrupted()
        tmp = self.root / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(config, indent=2, default=str))
        os.replace(tmp, self.root / RUN_FILE)


def _changed_versions(old: dict, new: dict) -> list[str]:
    """``versions.<library>`` for each deciding library whose version differs between two runs."""
    before, now = old.get("versions") or {}, new.get("versions") or {}
    return [f"versions.{lib}" for lib in VERSIONS_MUST_MATCH if before.get(lib) != now.get(lib)]


def _value(config: dict, key: str):
    """``config[key]``, where ``key`` may be ``versions.<library>``."""
    head, _, lib = key.partition(".")
    return (config.get(head) or {}).get(lib) if lib else config.get(head)
