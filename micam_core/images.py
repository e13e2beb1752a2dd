"""Reading user images safely into 8-bit RGB PIL images."""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # about 7700 x 5200; larger images are refused, never decoded

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]  # noqa: UP007 (runtime alias, py3.10)


def load_image(source: ImageInput) -> Image.Image:
    """Return ``source`` (path, bytes, PIL image or ``H x W [x C]`` array) as an upright RGB image.

    EXIF orientation is applied, transparency is composited on white, palette, CMYK, 1-bit,
    16-bit and float images are converted without clipping, animations give their first frame.
    Raises :class:`ImageError` with a readable message for anything that is not a usable image.
    """
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return to_rgb(_array_to_pil(source))
    data = _read_bytes(source)
    return to_rgb(_decode(data))


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"Image file not found: {path}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(_too_big_bytes(size))
        data = path.read_bytes()
    if not data:
        raise ImageError("The image file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big_bytes(len(data)))
    return data


def _too_big_bytes(size: int) -> str:
    return f"The image file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB."


def _decode(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_pixels(img.size)
            img.seek(0)  # animated images: first frame
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("The image is too large to decode safely (a possible decompression bomb); "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} MP.") from None
    except UnidentifiedImageError:
        raise ImageError("The file is not an image in a format this tool can read "
                         "(JPEG, PNG, GIF, WebP, BMP, TIFF, ...).") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"The image file is damaged or truncated and cannot be decoded ({err}).") from None
    return img


def _check_pixels(size: tuple[int, int]) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageError("The image has no pixels.")
    if w * h > MAX_PIXELS:
        raise ImageError(f"The image is {w} x {h} pixels ({w * h / 1e6:.0f} MP); "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} MP.")


def _array_to_pil(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"An image array must be H x W, H x W x 3 or H x W x 4; got {arr.shape}.")
    _check_pixels((arr.shape[1], arr.shape[0]))
    if arr.dtype != np.uint8:
        arr = _scale_to_u8(arr.astype(np.float64), arr.dtype)
    return Image.fromarray(arr)


def _scale_to_u8(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.floating):
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
    elif dtype == np.bool_:
        top = 1.0
    else:
        top = float(np.iinfo(dtype).max)
    return np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL image to upright 8-bit RGB (see :func:`load_image`)."""
    _check_pixels(img.size)
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8))
    elif mode == "F":
        img = _array_to_pil(np.asarray(img, dtype=np.float32))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")
