"""The open photo set of the results in docs/evaluate.md: scikit-image's CC0 / public-domain photos + variants.

    python bench/photos.py OUT_DIR [--variants 3]

Copies every photograph in scikit-image's data folder whose licence is CC0 or public domain (list
below, licences as scikit-image documents them) and adds seeded variants of each (mirror, crops,
small rotation, colour change), so that the set is reproducible from `pip install scikit-image`.
Variants of one photo are not independent images: count photos, not files, when reading results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# file in skimage/data -> licence (scikit-image's docstrings)
PHOTOS = {
    "astronaut.png": "public domain (NASA)",
    "camera.png": "CC0 (Lav Varshney)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "rocket.jpg": "public domain (SpaceX)",
    "coins.png": "no known copyright restrictions (Walters Art Museum)",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "retina.jpg": "CC0 (Mikael Häggström)",
    "brick.png": "CC0 (CC0Textures)",
    "grass.png": "CC0 (CC0Textures)",
    "gravel.png": "CC0 (CC0Textures)",
    "clock_motion.png": "public domain (Stefan van der Walt)",
    "text.png": "public domain",
    "ihc.png": "no known copyright restrictions (immunohistochemistry)",
    "cell.png": "CC0",
}


def variants(img: Image.Image, count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    w, h = img.size
    out = [ImageOps.mirror(img)]
    for _ in range(count - 1):
        s = rng.uniform(0.6, 0.85)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        v = img.crop((x, y, x + cw, y + ch)).rotate(float(rng.uniform(-12, 12)), resample=Image.BICUBIC)
        v = ImageEnhance.Color(v).enhance(float(rng.uniform(0.6, 1.4)))
        out.append(ImageEnhance.Brightness(v).enhance(float(rng.uniform(0.8, 1.2))))
    return out[:count]


def build(out: Path, count: int = 3) -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, name in enumerate(sorted(PHOTOS)):
        img = Image.open(data / name).convert("RGB")
        stem = Path(name).stem
        for j, im in enumerate([img, *variants(img, count, seed=i)]):
            path = out / (f"{stem}.jpg" if j == 0 else f"{stem}_v{j}.jpg")
            im.save(path, quality=92)
            files.append(path)
    return files


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--variants", type=int, default=3)
    args = parser.parse_args()
    print(f"{len(build(args.out, args.variants))} images in {args.out}")
