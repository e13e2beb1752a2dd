"""Pictures: heat-map overlays, colour bars and deletion/insertion curve plots (no tensors)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from .escape import PLAIN_TEXT_RC, printable
from .settings import COLORMAPS


def colorize(saliency: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """``H x W`` map in [0, 1] -> ``H x W x 3`` uint8 colours."""
    if cmap not in COLORMAPS:
        raise ValueError(f"Unknown colour map '{cmap}'; choose from {', '.join(COLORMAPS)}.")
    rgba = colormaps[cmap](np.clip(saliency, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(crop: Image.Image, saliency: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """Blend the colourised map over the model-input image; ``alpha`` is the map's opacity."""
    base = np.asarray(crop.convert("RGB"), dtype=np.float32)
    heat = colorize(saliency, cmap).astype(np.float32)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    return Image.fromarray((base * (1.0 - alpha) + heat * alpha + 0.5).astype(np.uint8))


def colorbar(cmap: str = "jet", width: int = 256, height: int = 18) -> Image.Image:
    """A horizontal colour bar from 0 (left) to 1 (right)."""
    ramp = np.tile(np.linspace(0.0, 1.0, width), (height, 1))
    return Image.fromarray(colorize(ramp, cmap))


PANELS = {  # kind -> (title, x label, which way is better)
    "deletion": ("deletion", "fraction of pixels deleted", "lower"),
    "insertion": ("insertion", "fraction of pixels inserted", "higher"),
    "morf": ("ROAD MoRF (most relevant removed first)", "fraction of pixels removed and imputed", "lower"),
    "lerf": ("ROAD LeRF (least relevant removed first)", "fraction of pixels removed and imputed", "higher"),
}


Curves = Mapping[str, Mapping[str, Sequence[float]]]


def figure_image(fig: Figure) -> Image.Image:
    """``fig`` drawn as an RGB image, then closed. The canvas's own pixels: a PNG round trip gives the same image
    about 0.1 s later (the counterfactual panel waits for its curves)."""
    fig.canvas.draw()
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    plt.close(fig)
    return image.convert("RGB")


def curves_figure(curves: Curves, title: str = "", labels: Mapping[str, str] | None = None,
                  road: Curves | None = None, protocol: str = "") -> Image.Image:
    """Plot the curves that were run, one panel per kind and one line per map.

    ``curves``: ``{map: {"deletion": [...], "insertion": [...]}}`` (either may be absent); ``road``:
    ``{map: {"morf": [...], "lerf": [...], "removed": [...]}}``, each curve plotted at the fractions
    removed that produced it. ``labels`` names the lines
    (default: the keys); the baselines ``random`` and ``centre`` are dashed. ``protocol`` is printed
    under the title.
    """
    with plt.rc_context(PLAIN_TEXT_RC):  # a "$" in a class or method name is a dollar sign
        return _curves_png(curves, title, labels or {}, road or {}, protocol)


def _curves_png(curves: Curves, title: str, labels: Mapping[str, str], road: Curves, protocol: str) -> Image.Image:
    series = {kind: {name: c[kind] for name, c in source.items() if kind in c}
              for source, kinds in ((curves, ("deletion", "insertion")), (road, ("morf", "lerf")))
              for kind in kinds}
    kinds = [kind for kind, lines in series.items() if lines]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(4.5 * max(1, len(kinds)), 3.6), dpi=100, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        name_, xlabel, better = PANELS[kind]
        for name, curve in series[kind].items():
            ys = np.asarray(curve, dtype=float)
            road_kind = kind in ("morf", "lerf")
            xs = np.asarray(road[name]["removed"], dtype=float) if road_kind else np.linspace(0.0, 1.0, len(ys))
            style = "--" if name in ("random", "centre") else "-"
            score = f"mean {ys.mean():.3f}" if road_kind else f"AUC {np.trapezoid(ys, xs):.3f}"
            ax.plot(xs, ys, style, marker="o" if road_kind else None, markersize=3,
                    label=f"{printable(labels.get(name, name))} ({score})")
        ax.set_title(f"{name_} ({better} is better)", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("target probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    heading = "\n".join(t for t in (printable(title), f"protocol: {printable(protocol)}" if protocol else "") if t)
    if heading:
        fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    return figure_image(fig)
