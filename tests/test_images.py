"""Every kind of image a visitor may send: refused clearly, or explained correctly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES
from micam_core import ImageError, explain, load_image
from micam_core.images import MAX_FILE_BYTES


def encoded(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.open(EXAMPLES / "chelsea_cat.jpg").convert("RGB")


def bomb_png(side: int = 20000) -> bytes:
    """A tiny file that claims a huge image (all black, compresses to a few kB)."""
    return encoded(Image.new("1", (side, side)), "PNG", optimize=True)


@pytest.mark.parametrize("name,data,message", [
    ("empty", b"", "empty"),
    ("text as png", b"this is certainly not a PNG file", "not an image"),
    ("bomb", None, "limit|too large"),
    ("too big", b"\xff\xd8" + b"0" * (MAX_FILE_BYTES + 1), "limit is 20 MB"),
])
def test_broken_images_are_refused_with_a_message(name, data, message):
    data = bomb_png() if data is None else data
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_jpeg_is_refused(cat):
    data = encoded(cat, "JPEG", quality=90)
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")


def test_one_pixel_and_large_images_are_explained(bundled):
    exp = explain(bundled, Image.new("RGB", (1, 1), (200, 30, 30)))
    assert exp.crop.size == (224, 224) and all(np.isfinite(m).all() for m in exp.maps.values())
    big = Image.open(EXAMPLES / "chelsea_cat.jpg").resize((6000, 4000))
    assert explain(bundled, big, methods=("micam",)).crop.size == (224, 224)


def test_modes_convert_correctly(cat):
    rgba = cat.copy()
    rgba.putalpha(0)  # fully transparent: composited on white
    assert np.all(np.asarray(load_image(rgba)) == 255)
    palette = cat.convert("P")
    np.testing.assert_array_equal(np.asarray(load_image(palette)), np.asarray(palette.convert("RGB")))
    cmyk = load_image(encoded(cat.convert("CMYK"), "JPEG", quality=95))
    assert cmyk.mode == "RGB" and np.abs(np.asarray(cmyk, float) - np.asarray(cat, float)).mean() < 8
    one_bit = load_image(encoded(cat.convert("1"), "PNG"))
    assert set(np.unique(np.asarray(one_bit))) <= {0, 255}


def test_sixteen_bit_grey_is_scaled_not_clipped(bundled, cat):
    grey8 = np.asarray(cat.convert("L"))
    grey16 = Image.fromarray(grey8.astype(np.uint16) * 257)  # same picture, 16 bits
    loaded16 = load_image(encoded(grey16, "PNG"))
    np.testing.assert_array_equal(np.asarray(loaded16)[..., 0], grey8)
    a = explain(bundled, encoded(grey16, "PNG"), methods=("micam",))
    b = explain(bundled, Image.fromarray(grey8), methods=("micam",))
    assert a.predicted == b.predicted
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)


def test_arrays_of_other_types():
    floats = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    assert np.asarray(load_image(floats))[..., 0].tolist()[2][3] == 255
    with pytest.raises(ImageError, match="H x W"):
        load_image(np.zeros((4, 4, 5), np.uint8))


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert tuple(np.asarray(load_image(data))[0, 0]) == (255, 0, 0)


def test_exif_rotated_photo_is_shown_upright():
    upright = np.zeros((40, 20, 3), np.uint8)  # tall picture, red at the top
    upright[:10] = (255, 0, 0)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # stored lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img = load_image(encoded(stored, "JPEG", quality=95, exif=exif))
    assert img.size == (20, 40)
    top = np.asarray(img)[:5].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60
