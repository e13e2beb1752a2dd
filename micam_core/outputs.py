"""The one writer of result files: overlays, raw maps, curves and the JSON report.

Used by the command line and by the app's downloads. A file whose bytes would not change is
not rewritten (re-rendering with another colour map rewrites the overlays, never the maps).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .methods import Explanation
from .registry import METHOD_LABELS
from .render import overlay

DOWNLOAD_MAX_AGE_S = 3600.0
LABEL_BAND = 24  # pixels above each overlay in STEM_overlays.png for the method's name


def write_results(folder: str | Path, stem: str, exp: Explanation, report: dict[str, Any], *,
                  cmap: str = "jet", opacity: float = 0.5, curves: Image.Image | None = None) -> list[Path]:
    """Write ``STEM_input.png``, per method ``STEM_<id>.png`` (overlay) and ``STEM_<id>.npy`` (float32
    ``H x W`` map in [0, 1]), ``STEM_overlays.png`` (side by side), ``STEM_curves.png`` when given, and
    ``STEM.json`` (the report plus a ``files`` index). Returns the paths, overlays first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {m: overlay(exp.crop, exp.maps[m], cmap, opacity) for m in exp.maps}
    files: dict[str, Any] = {"input": f"{stem}_input.png"}
    strip = side_by_side(list(images.values()), [METHOD_LABELS[m] for m in images])
    written = [_write(folder / f"{stem}_overlays.png", _png(strip))]
    for method, image in images.items():
        files[method] = {"overlay": f"{stem}_{method}.png", "map": f"{stem}_{method}.npy"}
        written.append(_write(folder / files[method]["overlay"], _png(image)))
    for method, saliency in exp.maps.items():
        written.append(_write(folder / files[method]["map"], _npy(saliency)))
    written.append(_write(folder / files["input"], _png(exp.crop)))
    if curves is not None:
        files["curves"] = f"{stem}_curves.png"
        written.append(_write(folder / files["curves"], _png(curves)))
    manifest = {**report, "display": {"colormap": cmap, "opacity": opacity}, "files": files,
                "map_format": "float32 H x W in [0, 1] over the model-input crop"}
    written.append(_write(folder / f"{stem}.json", json.dumps(manifest, indent=2, default=_json_default).encode()))
    return written


def side_by_side(images: list[Image.Image], labels: list[str] | None = None) -> Image.Image:
    """The images in one row, each under its label (when given) in a white band."""
    band = LABEL_BAND if labels else 0
    strip = Image.new("RGB", (sum(im.width for im in images), band + max(im.height for im in images)), "white")
    draw, font = ImageDraw.Draw(strip), _font(band * 2 // 3)
    x = 0
    for i, image in enumerate(images):
        strip.paste(image, (x, band))
        if labels:
            draw.text((x + image.width / 2, band / 2), labels[i], fill="black", font=font, anchor="mm")
        x += image.width
    return strip


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(size, 8))
    except TypeError:  # Pillow < 10.1: the fixed-size bitmap font
        return ImageFont.load_default()


def new_download_dir(base: str | Path | None = None) -> Path:
    """A fresh per-request folder under ``base`` (default: the temp dir); prunes folders older than an hour."""
    root = Path(base) if base else Path(tempfile.gettempdir()) / "micam_downloads"
    root.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - DOWNLOAD_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="req-", dir=root))


def _write(path: Path, data: bytes) -> Path:
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
    except OSError:
        pass
    path.write_bytes(data)
    return path


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
