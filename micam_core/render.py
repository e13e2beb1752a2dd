"""Pictures: heat-map overlays, colour bars and deletion/insertion curve plots (no tensors)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
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


def curves_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "",
                  labels: Mapping[str, str] | None = None) -> Image.Image:
    """Plot deletion and insertion curves, one line per method: ``{method: {"deletion": [...], ...}}``.

    ``labels`` names the lines (default: the keys); the baselines ``random`` and ``centre`` are dashed.
    """
    labels = labels or {}
    with plt.rc_context(PLAIN_TEXT_RC):  # a "$" in a class or method name is a dollar sign
        return _curves_png(curves, title, labels)


def _curves_png(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str, labels: Mapping[str, str]
                ) -> Image.Image:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for name, curve in curves.items():
            ys = np.asarray(curve[kind], dtype=float)
            xs = np.linspace(0.0, 1.0, len(ys))
            style = "--" if name in ("random", "centre") else "-"
            ax.plot(xs, ys, style, label=f"{printable(labels.get(name, name))} (AUC {np.trapezoid(ys, xs):.3f})")
        ax.set_title(f"{kind} ({'lower' if kind == 'deletion' else 'higher'} is better)")
        ax.set_xlabel("fraction of pixels " + ("deleted" if kind == "deletion" else "inserted"))
        ax.set_ylabel("target probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(printable(title), fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
