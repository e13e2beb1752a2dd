"""The page's two method grids as HTML: the maps (per method: title, overlay, download) and the counterfactual
pairs (per method: title, verdict, keep and remove photos, top classes), each grid showing the chosen methods.

One component per grid, instead of 3 and 10 per method in the registry (hidden while not chosen): Gradio builds
every component of the page at each load, hidden or not. Text from a model is escaped.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence

from PIL import Image

from micam_core import METHOD_LABELS, REGISTRY
from micam_core.analysis import KeepRemove
from micam_core.escape import html_text
from micam_core.verdict import removal_sentence

# JPEG: 6 photos per panel before any metric; it encodes about 25x faster than WebP on this CPU, at a similar size.
JPEG_QUALITY = 90
PNG_LEVEL = 1
SIDES = {"keep": "Keep region", "remove": "Remove region"}
# One listener per block (added once, when it mounts): a click on a photo shows it full screen; the download
# button saves the block's photo under its name (the photo travels once, as the img's data URI).
PHOTO_JS = """element.addEventListener('click', (e) => {
  const save = e.target.closest('.overlay-dl');
  const photo = save && save.closest('.method-block').querySelector('img.zoomable');
  if (save && photo) {
    const link = document.createElement('a');
    link.href = photo.src; link.download = save.dataset.name; link.click();
    return;
  }
  const img = e.target.closest('img.zoomable');
  if (img && img.requestFullscreen) img.requestFullscreen();
});"""


def data_uri(image: Image.Image, fmt: str = "JPEG") -> str:
    """``image`` as a data URI (it travels inside the page's HTML: no file, no second request)."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, fmt, quality=JPEG_QUALITY)
    else:  # level 1: 4-5x faster than PIL's default 6, files 10% larger (the maps message waits for it)
        image.save(buffer, fmt, compress_level=PNG_LEVEL)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def top_html(title: str, top: list[tuple[int, str, float]], k: int = 3) -> str:
    """E.g. ``<strong>Kept:</strong> tabby 62% · tiger cat 21% · Egyptian cat 9%``."""
    return f"<strong>{title}:</strong> " + " · ".join(f"{html_text(name, 40)} {100 * p:.0f}%" for _, name, p in top[:k])


def verdict_html(result: KeepRemove, target_label: str, threshold: float) -> str:
    """What removing the map's region did to the target class (a flip only when the target was top-1)."""
    return removal_sentence(result, target_label, threshold, name=lambda label: f"<em>{html_text(label)}</em>",
                            strong=lambda word: f"<strong>{word}</strong>")


def side_html(method: str, side: str, image: Image.Image | None, caption: str) -> str:
    """One photo of the pair (an empty frame before it exists) and its top classes."""
    label = f"{SIDES[side]} ({METHOD_LABELS[method]})"
    photo = (f'<img class="cf-photo zoomable" src="{data_uri(image)}" alt="{html_text(label)}" '
             'title="Click for full screen">' if image is not None else "")
    return (f'<figure class="cf-side"><div class="cf-img" id="{side}-{method}" role="img" '
            f'aria-label="{html_text(label)}">{photo}</div>'
            f'<figcaption class="note top" id="{side}-top-{method}">{caption}</figcaption></figure>')


def pair_html(method: str, result: KeepRemove | None = None, target_label: str = "", threshold: float = 0.0,
              note: str = "") -> str:
    """A method's block: its pair and verdict from ``result``, or empty frames under ``note`` (plain text)."""
    if result is None:
        verdict = f"<em>{html_text(note)}</em>" if note else ""
        sides = side_html(method, "keep", None, "") + side_html(method, "remove", None, "")
    else:
        verdict = verdict_html(result, target_label, threshold)
        sides = (side_html(method, "keep", result.keep_image, top_html("Kept", result.top_keep))
                 + side_html(method, "remove", result.remove_image, top_html("Removed", result.top_remove)))
    return (f'<h3 class="method-title">{html_text(METHOD_LABELS[method])}</h3>'
            f'<p class="note flip" id="flip-{method}">{verdict}</p><div class="pair">{sides}</div>')


def grid(kind: str, sections: dict[str, str]) -> str:
    """The method blocks in one grid (``kind``: ``maps`` or ``pairs``), in the order given."""
    ids = {"maps": "overlay-col-{}", "pairs": "cf-{}"}[kind]
    body = "".join(f'<section class="method-block" id="{ids.format(m)}" data-method="{m}">{html}</section>'
                   for m, html in sections.items())
    return f'<div class="method-grid {kind}">{body}</div>'


def maps_html(overlays: Mapping[str, Image.Image | None]) -> str:
    """The maps grid: each method's overlay (None: an empty frame)."""
    return grid("maps", {m: overlay_html(m, image) for m, image in overlays.items()})


def pairs_html(methods: Sequence[str], kept: Mapping[str, KeepRemove] | None = None, target_label: str = "",
               threshold: float = 0.0, note: str = "") -> str:
    """The pairs grid: each method's pair from ``kept`` (empty frames under ``note`` where it has none yet)."""
    kept = kept or {}
    return grid("pairs", {m: pair_html(m, kept.get(m), target_label, threshold, note) for m in methods})


def has_photos(grid_html: object, method: str | None = None) -> bool:
    """Whether a grid's HTML (an update's value) shows photos: ``method``'s, or any method's."""
    if not isinstance(grid_html, str):
        return False
    if method is None:
        return "<img " in grid_html
    found = re.search(rf'<section [^>]*data-method="{re.escape(method)}">(.*?)</section>', grid_html, re.DOTALL)
    return bool(found) and "<img " in found.group(1)


def overlay_title(method: str) -> str:
    """The title above a method's overlay (it wraps, so it is never cut)."""
    return f"<strong>{html_text(METHOD_LABELS[method])}</strong>" + (
        "" if REGISTRY[method].class_specific else " · class-agnostic")


def overlay_html(method: str, image: Image.Image | None = None) -> str:
    """A method's map block: its title, the overlay (PNG; an empty frame before it exists) with a download
    button in its corner."""
    label = html_text(f"{METHOD_LABELS[method]} map over the image")
    photo = save = ""
    if image is not None:
        photo = (f'<img class="map-photo zoomable" src="{data_uri(image, "PNG")}" alt="{label}" '
                 'title="Click for full screen">')
        save = (f'<button class="overlay-dl" type="button" data-name="{method}_overlay.png" '
                f'title="Download the overlay (PNG)" aria-label="Download the {label} (PNG)">&#8615; PNG</button>')
    return (f'<div class="overlay-head"><span>{overlay_title(method)}</span></div>'
            f'<div class="overlay-img" id="overlay-{method}">{photo}{save}</div>')
