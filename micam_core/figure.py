"""Publication-ready figure of one view: input, overlays, one colour bar, counterfactuals, curves, caption.

The figure is laid out in inches (7 in wide: a two-column page width), so every export of the same
view has the same page size. Vector formats (PDF, SVG) keep text as text; the PNG is 300 dpi. The
caption (``.txt``) and the BibTeX of the MI CAM paper (``.bib``) are written beside the figures.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .citation import BIBTEX
from .counterfactual import BASELINES, Faithfulness
from .escape import PLAIN_TEXT_RC
from .methods import Explanation
from .registry import METHOD_LABELS, REGISTRY, display_mode
from .render import overlay
from .settings import COLORMAPS
from .verdict import percent
from .version import __version__

log = logging.getLogger(__name__)

FORMATS = ("pdf", "svg", "png")
PNG_DPI = 300
WIDTH_IN = 7.0
MARGIN_IN, GAP_IN, CBAR_IN = 0.1, 0.08, 0.65
TITLE_IN, CURVES_IN, LEGEND_IN, CAPTION_LINE_IN = 0.3, 2.4, 0.45, 0.15
CAPTION_CHARS = 120
FONT_PT = 8
RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "micam_core",
      "font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "legend.fontsize": 6,
      "xtick.labelsize": 6, "ytick.labelsize": 6, **PLAIN_TEXT_RC}  # "$" in a label is a dollar sign
_METADATA = {"pdf": {"Creator": "micam_core", "Producer": "micam_core", "CreationDate": None},
             "svg": {"Creator": "micam_core", "Date": None}, "png": {"Software": "micam_core"}}


@dataclass(frozen=True)
class FigureLayout:
    """Sizes in inches of one figure: width, height and the height of each row."""

    columns: int
    panel: float
    image_row: float
    counterfactual_row: float
    curves_row: float
    caption_row: float

    @property
    def width(self) -> float:
        return WIDTH_IN

    @property
    def height(self) -> float:
        return (2 * MARGIN_IN + self.image_row + self.counterfactual_row + self.curves_row + self.caption_row)


def layout(n_methods: int, aspect: float = 1.0, counterfactuals: bool = False, curves: bool = False,
           caption_lines: int = 3) -> FigureLayout:
    """The figure's geometry for ``n_methods`` maps of height/width ``aspect`` (page size follows from it)."""
    columns = n_methods + 1
    panel = (WIDTH_IN - 2 * MARGIN_IN - CBAR_IN - GAP_IN * (columns - 1)) / columns
    image_row = TITLE_IN + panel * aspect
    cf_row = TITLE_IN + (panel - GAP_IN) / 2 * aspect if counterfactuals else 0.0
    curves_row = CURVES_IN if curves else 0.0
    return FigureLayout(columns, panel, image_row, cf_row, curves_row, CAPTION_LINE_IN * caption_lines + 0.1)


def caption_text(exp: Explanation, methods: Sequence[str], labels: Mapping[str, str], *, model: str = "",
                 revision: str | None = None, cmap: str = "jet", opacity: float = 0.5,
                 faith: Faithfulness | None = None, notes: Sequence[str] = ()) -> str:
    """One paragraph: model, layer, target, methods and every setting that shaped the figure."""
    short = revision[:12] if revision and len(revision) == 40 else revision  # a commit hash, shortened
    rev = f" (revision {short})" if short else ""
    prob = float(exp.probs[exp.target]) if exp.target < len(exp.probs) else float("nan")
    shown = ", ".join(labels.get(m, m) for m in methods)
    parts = [f"Model {model or 'unnamed'}{rev}, layer {exp.layer}; target class {exp.target} "
             f"'{exp.target_label}' (p = {prob:.3f}).",
             f"Maps: {shown}; upsampled {_upsampling_phrase(exp.upsampling, methods, labels)}; colour map {cmap}, "
             f"overlay opacity {opacity:.2f}; each map min-max normalised to [0, 1]."]
    agnostic = [labels.get(m, m) for m in methods if m in REGISTRY and not REGISTRY[m].class_specific]
    if agnostic:
        parts.append(f"{', '.join(agnostic)}: class-agnostic (the map does not depend on the target class).")
    parts += [REGISTRY[m].note for m in methods if m in REGISTRY and REGISTRY[m].note]
    if faith is not None:
        parts.append(f"Protocol {faith.protocol.describe()}.")
        parts.append(f"Counterfactuals: region = map >= {faith.threshold:g}, masked pixels filled with "
                     f"{faith.fill}; deletion/insertion curves with {faith.steps} steps "
                     "(lower deletion AUC and higher insertion AUC are better); ROAD: mean target probability "
                     "after removing and imputing each fraction (MoRF lower, LeRF higher, combined (LeRF-MoRF)/2 "
                     "higher is better). 'Flips': the target, top-1 on the "
                     "input, is no longer top-1 once the region is removed; where it was not top-1 the target's "
                     "probability before and after removal is shown instead.")
    parts += list(notes)
    parts.append(f"Made with micam_core {__version__}.")
    return " ".join(parts)


def _upsampling_phrase(upsampling: str, methods: Sequence[str], labels: Mapping[str, str]) -> str:
    """E.g. ``by nearest + Gaussian blur (the paper's) for MI CAM; bilinear for Grad-CAM``."""
    names = {"paper": "by nearest + Gaussian blur (the paper's)", "bilinear": "bilinearly"}
    groups: dict[str, list[str]] = {}
    for method in methods:
        mode = display_mode(method, upsampling) if method in REGISTRY else upsampling
        groups.setdefault(mode, []).append(labels.get(method, method))
    return "; ".join(f"{names.get(mode, mode)} for {', '.join(group)}" for mode, group in groups.items())


def make_figure(exp: Explanation, *, methods: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                model: str = "", revision: str | None = None, cmap: str = "jet", opacity: float = 0.5,
                faith: Faithfulness | None = None, counterfactuals: bool = True, curves: bool = True,
                notes: Sequence[str] = ()) -> tuple[Figure, str]:
    """The matplotlib figure of the view and its caption text (close the figure with ``plt.close``)."""
    methods = [m for m in (methods or list(exp.maps)) if m in exp.maps]
    if not methods:
        raise ValueError("No maps to draw: none of the chosen methods is in the explanation.")
    if cmap not in COLORMAPS:
        raise ValueError(f"Unknown colour map '{cmap}'; choose from {', '.join(COLORMAPS)}.")
    labels = {**METHOD_LABELS, **BASELINES, **(labels or {})}
    caption = caption_text(exp, methods, labels, model=model, revision=revision, cmap=cmap, opacity=opacity,
                           faith=faith, notes=notes)
    lines = textwrap.wrap(caption, CAPTION_CHARS)
    show_cf = faith is not None and counterfactuals and all(m in faith.results for m in methods)
    geo = layout(len(methods), exp.crop.height / exp.crop.width, show_cf, faith is not None and curves, len(lines))
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(geo.width, geo.height))
        top = geo.height - MARGIN_IN
        _image_row(fig, geo, top, exp, methods, labels, cmap, opacity)
        top -= geo.image_row
        if show_cf:
            _counterfactual_row(fig, geo, top, faith, methods)
            top -= geo.counterfactual_row
        if geo.curves_row:
            _curves_row(fig, geo, top, faith, methods, labels)
            top -= geo.curves_row
        fig.text(MARGIN_IN / geo.width, (top - 0.05) / geo.height, "\n".join(lines), ha="left", va="top",
                 fontsize=6.5, linespacing=1.3)
    return fig, caption


def export_figure(exp: Explanation, folder: str | Path, stem: str, *, formats: Sequence[str] = FORMATS,
                  **options) -> list[str]:
    """Write ``stem.pdf``, ``.svg``, ``.png`` (300 dpi), ``stem.txt`` (caption) and ``stem.bib`` into ``folder``.

    ``options`` go to :func:`make_figure` (methods, labels, model, revision, cmap, opacity, faith,
    counterfactuals, curves, notes). Returns the written paths, figures first.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"Unknown figure format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, caption = make_figure(exp, **options)
    paths: list[Path] = []
    try:
        with plt.rc_context(RC):
            for fmt in formats:
                path = folder / f"{stem}.{fmt}"
                fig.savefig(path, format=fmt, dpi=PNG_DPI, metadata=_METADATA[fmt])
                paths.append(path)
    finally:
        plt.close(fig)
    (folder / f"{stem}.txt").write_text(caption + "\n", encoding="utf-8")
    (folder / f"{stem}.bib").write_text(BIBTEX + "\n", encoding="utf-8")
    paths += [folder / f"{stem}.txt", folder / f"{stem}.bib"]
    log.info("figure written: %s", ", ".join(p.name for p in paths))
    return [str(p) for p in paths]


# --- rows -----------------------------------------------------------------------------------------
def _axes(fig: Figure, geo: FigureLayout, left: float, top: float, width: float, height: float):
    """Axes at a box given in inches from the figure's left and bottom edges."""
    return fig.add_axes((left / geo.width, (top - height) / geo.height, width / geo.width, height / geo.height))


def _column_left(geo: FigureLayout, column: int) -> float:
    return MARGIN_IN + column * (geo.panel + GAP_IN)


def _picture(ax, image, title: str, longest: int = 0) -> None:
    """The image without axes, titled in a size that fits its width (``longest``: fit that many characters)."""
    ax.imshow(np.asarray(image), interpolation="none")
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    chars = max(len(title), longest, 1)
    size = max(4.5, min(FONT_PT, 0.9 * 72 * width_in / chars / 0.55))  # ~0.55 em per character
    ax.set_title(title, pad=3, fontsize=size)
    ax.set_axis_off()


def _image_row(fig: Figure, geo: FigureLayout, top: float, exp: Explanation, methods: Sequence[str],
               labels: Mapping[str, str], cmap: str, opacity: float) -> None:
    height = geo.image_row - TITLE_IN
    box_top = top - TITLE_IN
    title = f"Input; target: {exp.target_label}"
    _picture(_axes(fig, geo, _column_left(geo, 0), box_top, geo.panel, height), exp.crop, _short(title, 40))
    for column, method in enumerate(methods, start=1):
        ax = _axes(fig, geo, _column_left(geo, column), box_top, geo.panel, height)
        _picture(ax, overlay(exp.crop, exp.maps[method], cmap, opacity), labels.get(method, method))
    cax = _axes(fig, geo, _column_left(geo, geo.columns) + 0.05, box_top, 0.12, height)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[cmap]), cax=cax, ticks=[0.0, 0.5, 1.0])
    bar.set_label("map value", labelpad=2)


def _counterfactual_row(fig: Figure, geo: FigureLayout, top: float, faith: Faithfulness,
                        methods: Sequence[str]) -> None:
    height = geo.counterfactual_row - TITLE_IN
    half = (geo.panel - GAP_IN) / 2
    fig.text(MARGIN_IN / geo.width, (top - TITLE_IN - height / 2) / geo.height,
             f"Counterfactuals\nregion: map >= {faith.threshold:g}\nfill: {faith.fill}", ha="left", va="center")
    for column, method in enumerate(methods, start=1):
        result = faith.results[method]
        left = _column_left(geo, column)
        remove_title = _remove_title(result)
        _picture(_axes(fig, geo, left, top - TITLE_IN, half, height), result.keep_image, "keep", len("remove (flips)"))
        _picture(_axes(fig, geo, left + half + GAP_IN, top - TITLE_IN, half, height), result.remove_image,
                 remove_title, len("remove (flips)"))


def _remove_title(result) -> str:
    """``remove (flips)`` only when the target was top-1 and loses it; else the target's probability change."""
    if result.flipped is None:
        return f"remove: {percent(result.p_original)}→{percent(result.p_remove)}"
    return "remove (flips)" if result.flipped else "remove"


PANELS = {  # kind -> (title, x label)
    "deletion": ("Deletion (lower AUC is better)", "fraction of pixels deleted"),
    "insertion": ("Insertion (higher AUC is better)", "fraction of pixels inserted"),
    "morf": ("ROAD MoRF (lower is better)", "fraction removed, most relevant first"),
    "lerf": ("ROAD LeRF (higher is better)", "fraction removed, least relevant first"),
}


def _series(faith: Faithfulness, name: str, kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) of one map's curve of ``kind``, or None when the protocol did not run it."""
    result = faith.results[name]
    if kind in ("morf", "lerf"):
        return None if result.road is None else (np.asarray(result.road.removed), getattr(result.road, kind))
    curve = getattr(result.curves, kind)
    return None if curve is None else (np.linspace(0.0, 1.0, len(curve)), curve)


def _curves_row(fig: Figure, geo: FigureLayout, top: float, faith: Faithfulness, methods: Sequence[str],
                labels: Mapping[str, str]) -> None:
    """The protocol's curves side by side (deletion/insertion, ROAD MoRF/LeRF), one legend below them."""
    names = [m for m in methods if m in faith.results] + [b for b in BASELINES if b in faith.results]
    kinds = [k for k in PANELS if names and _series(faith, names[0], k) is not None]
    count = max(1, len(kinds))
    plot_w = (WIDTH_IN - 2 * MARGIN_IN - 0.45 * (count + 0)) / count
    plot_h = geo.curves_row - LEGEND_IN - 0.7
    handles = []
    for index, kind in enumerate(kinds):
        ax = _axes(fig, geo, MARGIN_IN + 0.45 + index * (plot_w + 0.45), top - 0.25, plot_w - 0.1, plot_h)
        for name in names:
            xs, ys = _series(faith, name, kind)
            style = "--" if name in BASELINES else "-"
            (line,) = ax.plot(xs, ys, style, linewidth=1.0, label=_curve_label(faith, name, labels))
            if index == 0:
                handles.append(line)
        title, xlabel = PANELS[kind]
        ax.set_title(title, pad=3)
        ax.set_xlabel(xlabel, labelpad=1)
        ax.set_ylabel("target probability")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3, linewidth=0.5)
    bottom = top - geo.curves_row + 0.02
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, bottom / geo.height), ncol=2,
               frameon=False, columnspacing=1.2, handlelength=2.2)


def _curve_label(faith: Faithfulness, name: str, labels: Mapping[str, str]) -> str:
    result = faith.results[name]
    scores = [f"{kind} {value:.3f}" for kind, value in (("AUC del.", result.curves.deletion_auc),
                                                        ("ins.", result.curves.insertion_auc)) if not np.isnan(value)]
    if result.road is not None:
        scores.append(f"ROAD MoRF {result.road.morf_score:.3f}, LeRF {result.road.lerf_score:.3f}, "
                      f"comb. {result.road.combined:.3f}")
    return f"{labels.get(name, name)} ({', '.join(scores)})"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
