"""Image sources for evaluation: a folder, or a Hugging Face data set (the Hub, streamed, or a local imagefolder).

A source yields *records*: plain dicts ``{"image_id": str, "path": str | None, "bytes": bytes | None,
"label": str | None}``, small and picklable, so that both engines (and Ray) can carry them. The image
is decoded later, where it is evaluated; a record that cannot be decoded becomes a failed row.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import MicamError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FOLDER_LABELS = "folders"  # --labels folders: the label is the image's sub-folder name


@dataclass(frozen=True)
class Source:
    """Where images come from. Exactly one of ``images`` (a folder) or ``dataset`` is set."""

    images: str | None = None
    labels: str | None = None  # a CSV file (file,label) or "folders"
    dataset: str | None = None  # "org/name" on the Hub, or "imagefolder" / "parquet" / ... (a builder)
    data_dir: str | None = None  # for a builder such as imagefolder: a local folder, works offline
    split: str = "validation"
    image_column: str = "image"
    label_column: str | None = "label"

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def iter_records(source: Source, limit: int | None = None) -> Iterator[dict]:
    """The records of ``source`` in a stable order (the same order on every run), at most ``limit``."""
    if (source.images is None) == (source.dataset is None):
        raise MicamError("Give exactly one of --images DIR or --dataset NAME.")
    it = _folder_records(source) if source.images is not None else _dataset_records(source)
    for n, record in enumerate(it):
        if limit is not None and n >= limit:
            return
        yield record


def _folder_records(source: Source) -> Iterator[dict]:
    root = Path(source.images).expanduser()
    if not root.is_dir():
        raise MicamError(f"--images must be a folder; {root} is not one.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MicamError(f"No image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}.")
    table = _read_label_csv(Path(source.labels)) if source.labels not in (None, FOLDER_LABELS) else None
    for path in files:
        rel = path.relative_to(root).as_posix()
        if source.labels == FOLDER_LABELS:
            label = path.parent.name if path.parent != root else None
        elif table is not None:
            label = table.get(rel, table.get(path.name))
        else:
            label = None
        yield {"image_id": rel, "path": str(path), "bytes": None, "label": label}


def _read_label_csv(path: Path) -> dict[str, str]:
    """``file,label`` rows (a header row ``file,label`` is allowed); file relative to --images."""
    if not path.is_file():
        raise MicamError(f"--labels: no such file {path} (give a CSV file,label or 'folders').")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
    except UnicodeDecodeError as err:
        raise MicamError(f"--labels: {path} is not UTF-8 text (byte {err.start} cannot be read); "
                         "save it as UTF-8 CSV.") from None
    except (OSError, csv.Error) as err:
        raise MicamError(f"--labels: {path} cannot be read as CSV ({err}).") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    bad = [r for r in rows if len(r) < 2]
    if bad:
        raise MicamError(f"--labels: every row needs file,label; got {bad[0]}.")
    return {r[0].strip(): r[1].strip() for r in rows}


def _dataset_records(source: Source) -> Iterator[dict]:
    """Stream a ``datasets`` data set; images are not decoded here (``decode=False``)."""
    try:
        import datasets
    except ImportError:
        raise MicamError("--dataset needs the datasets package: pip install 'micam-core[eval]'.") from None
    local = source.data_dir is not None
    kwargs = {"data_dir": source.data_dir} if local else {}
    try:
        ds = datasets.load_dataset(source.dataset, split=source.split, streaming=True, **kwargs)
    except Exception as err:  # the datasets library raises many kinds; one readable sentence
        hint = "" if local else (" Gated data sets (e.g. ImageNet) need `hf auth login` with a token whose "
                                 "account accepted the terms; offline, use --dataset imagefolder --data-dir DIR.")
        raise MicamError(f"Could not open data set '{source.dataset}' split '{source.split}': {err}.{hint}") from err
    features = ds.features or {}
    if source.image_column not in features:
        raise MicamError(f"The data set has no column '{source.image_column}'; columns: {', '.join(features)}.")
    ds = ds.cast_column(source.image_column, datasets.Image(decode=False))
    names = None
    if source.label_column and source.label_column in features:
        names = getattr(features[source.label_column], "names", None)
    for i, item in enumerate(ds):
        image = item[source.image_column] or {}
        label = item.get(source.label_column) if source.label_column else None
        if label is not None and names is not None and isinstance(label, int) and 0 <= label < len(names):
            label = names[label]
        yield {"image_id": f"{source.split}/{i:08d}", "path": image.get("path") if not image.get("bytes") else None,
               "bytes": image.get("bytes"), "label": None if label is None else str(label)}
