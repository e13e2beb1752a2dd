"""Publication-ready figure of one view: input, overlays, one colour bar, counterfactuals, curves.

The figure is laid out in inches for a column of a paper: single (3.3 in, the default; fits IEEE, ACM
and Springer single columns) or double (7 in). Panels wrap onto as many rows as they need, every text
is at least 7 pt at that width and no text overlaps another or a picture (``tests/test_figure.py`` checks
the PDF's word boxes). Vector formats (PDF, SVG) keep text as text; the PNG is 300 dpi. The caption is
written beside the figure as ``.txt`` and ``.tex`` (inside the image only on request), with the BibTeX
of the MI CAM paper and of this tool (``.bib``). File names carry the model, the image and the methods.
"""

from __future__ import annotations

import logging
import math
import re
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
from .fields import UPSAMPLING_MODES
from .methods import Explanation
from .registry import METHOD_LABELS, REGISTRY, display_mode
from .render import overlay
from .settings import COLORMAPS
from .verdict import percent
from .version import __version__

log = logging.getLogger(__name__)

FORMATS = ("pdf", "svg", "png")
PNG_DPI = 300
WIDTHS_IN = {"single": 3.3, "double": 7.0}
FONT_PT = 7.0  # every text in the figure; a column's smallest legible size
LINE_IN = FONT_PT * 1.4 / 72  # one line of text (matplotlib's line spacing 1.15, and room)
CHAR_IN = FONT_PT * 0.56 / 72  # an average character width (DejaVu Sans), a little generous
MARGIN_IN, GAP_IN, MIN_PANEL_IN = 0.06, 0.06, 0.72
CBAR_IN = 0.42  # the colour bar, its ticks and its label, under the maps
CURVE_IN, CURVE_LEFT_IN, CURVE_BOTTOM_IN = 1.0, 0.45, 0.32
LEGEND_HANDLE_IN = 3.5 * FONT_PT / 72  # a legend entry's line sample and the gap after it (2 + 0.5 em), and room
RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "micam_core",
      "font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT, "legend.fontsize": FONT_PT,
      "xtick.labelsize": FONT_PT, "ytick.labelsize": FONT_PT, "font.family": "DejaVu Sans",
      **PLAIN_TEXT_RC}  # "$" in a label is a dollar sign
_METADATA = {"pdf": {"Creator": "micam_core", "Producer": "micam_core", "CreationDate": None},
             "svg": {"Creator": "micam_core", "Date": None}, "png": {"Software": "micam_core"}}


def wrap(text: str, width_in: float, max_lines: int = 3) -> list[str]:
    """``text`` in lines that fit ``width_in`` at :data:`FONT_PT` (at most ``max_lines``; the last one cut)."""
    chars = max(4, int(width_in / CHAR_IN))
    lines = textwrap.wrap(text, chars, break_long_words=True) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: chars - 1].rstrip() + "…"
    return lines


@dataclass(frozen=True)
class Grid:
    """Panels of one row kind laid out in rows: columns per row, panel size and title lines per row."""

    count: int
    columns: int
    panel: float
    titles: tuple[int, ...]  # title lines of each row
    aspect: float

    @property
    def rows(self) -> int:
        return math.ceil(self.count / self.columns) if self.count else 0

    def row_height(self, row: int) -> float:
        return self.titles[row] * LINE_IN + self.panel * self.aspect

    @property
    def height(self) -> float:
        return sum(self.row_height(r) for r in range(self.rows)) + GAP_IN * max(0, self.rows - 1)


def columns_for(width: float, minimum: float = MIN_PANEL_IN) -> int:
    """How many panels of at least ``minimum`` inches fit side by side."""
    return max(1, int((width - 2 * MARGIN_IN + GAP_IN) // (minimum + GAP_IN)))


def grid(titles: Sequence[Sequence[str]], width: float, columns: int, aspect: float, span: int = 1) -> Grid:
    """A grid of ``len(titles)`` cells of ``span`` panels each (``titles``: each cell's wrapped lines)."""
    columns = max(1, min(columns // span, len(titles) or 1))
    panel = (width - 2 * MARGIN_IN - GAP_IN * (columns * span - 1)) / (columns * span)
    rows = math.ceil(len(titles) / columns) if titles else 0
    lines = tuple(max(len(t) for t in titles[r * columns:(r + 1) * columns]) for r in range(rows))
    return Grid(len(titles), columns, panel, lines, aspect)


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
    """E.g. ``by nearest + Gaussian blur (the paper's) for MI CAM; by bilinear interpolation for Grad-CAM``."""
    names = {mode: f"by {how}" + (" (the paper's)" if mode == "paper" else "")
             for mode, how in UPSAMPLING_MODES.items()}
    groups: dict[str, list[str]] = {}
    for method in methods:
        mode = display_mode(method, upsampling) if method in REGISTRY else upsampling
        groups.setdefault(mode, []).append(labels.get(method, method))
    return "; ".join(f"{names.get(mode, mode)} for {', '.join(group)}" for mode, group in groups.items())


def make_figure(exp: Explanation, *, methods: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                model: str = "", revision: str | None = None, cmap: str = "jet", opacity: float = 0.5,
                faith: Faithfulness | None = None, counterfactuals: bool = True, curves: bool = True,
                notes: Sequence[str] = (), caption: bool = False, width: str = "single") -> tuple[Figure, str]:
    """The matplotlib figure of the view and its caption text (close the figure with ``plt.close``).

    ``caption``: also print the caption under the figure. ``width``: ``"single"`` or ``"double"`` column.
    """
    methods = [m for m in (methods or list(exp.maps)) if m in exp.maps]
    if not methods:
        raise ValueError("No maps to draw: none of the chosen methods is in the explanation.")
    if cmap not in COLORMAPS:
        raise ValueError(f"Unknown colour map '{cmap}'; choose from {', '.join(COLORMAPS)}.")
    if width not in WIDTHS_IN:
        raise ValueError(f"Unknown figure width '{width}'; choose from {', '.join(WIDTHS_IN)}.")
    labels = {**METHOD_LABELS, **BASELINES, **(labels or {})}
    text = caption_text(exp, methods, labels, model=model, revision=revision, cmap=cmap, opacity=opacity,
                        faith=faith, notes=notes)
    show_cf = faith is not None and counterfactuals and all(m in faith.results for m in methods)
    plan = _Plan(exp, methods, labels, WIDTHS_IN[width], faith if show_cf else None,
                 faith if faith is not None and curves else None, text if caption else None)
    with plt.rc_context(RC):
        fig = plt.figure(figsize=(plan.width, plan.height))
        top = plan.height - MARGIN_IN
        top = _image_rows(fig, plan, top, exp, cmap, opacity)
        if plan.cf is not None:
            top = _counterfactual_rows(fig, plan, top)
        if plan.curves is not None:
            top = _curves_rows(fig, plan, top)
        if plan.caption_lines:
            fig.text(MARGIN_IN / plan.width, (top - GAP_IN) / plan.height, "\n".join(plan.caption_lines),
                     ha="left", va="top", linespacing=1.15)
    return fig, text


def _remove_note(result) -> str:
    """`` (flips)`` only when the target was top-1 and loses it; where it was not top-1, its probability change."""
    if result.flipped is None:
        return f" (target {percent(result.p_original)}→{percent(result.p_remove)})"
    return " (flips)" if result.flipped else ""


class _Plan:
    """Every size of one figure, worked out before anything is drawn (the page size follows from it)."""

    def __init__(self, exp: Explanation, methods: Sequence[str], labels: Mapping[str, str], width: float,
                 cf: Faithfulness | None, curves: Faithfulness | None, caption: str | None) -> None:
        self.methods, self.labels, self.width, self.cf, self.curves = list(methods), labels, width, cf, curves
        aspect = exp.crop.height / exp.crop.width
        columns = columns_for(width)
        probe = grid([["x"]] * (len(methods) + 1), width, columns, aspect)
        self.image_titles = [wrap(f"Input; target: {exp.target_label}", probe.panel)]
        self.image_titles += [wrap(labels.get(m, m), probe.panel) for m in methods]
        self.images = grid(self.image_titles, width, columns, aspect)
        self.cf_heading, self.pairs, self.pair_titles = [], None, []
        if cf is not None:
            self.cf_heading = wrap(f"Counterfactuals: keep | remove the region map ≥ {cf.threshold:g} (masked pixels "
                                   f"filled with {cf.fill}); flips: the target, top-1 on the input, loses top-1 "
                                   "when it is removed",
                                   width - 2 * MARGIN_IN)
            probe = grid([["x"]] * len(methods), width, columns, aspect, span=2)
            pair_w = 2 * probe.panel + GAP_IN
            self.pair_titles = [wrap(labels.get(m, m) + _remove_note(cf.results[m]), pair_w, 2) for m in methods]
            self.pairs = grid(self.pair_titles, width, columns, aspect, span=2)
        self.stacked = width < 5.0  # curves one above the other in a single column
        self.caption_lines = wrap(caption, width - 2 * MARGIN_IN, 40) if caption else []

    def legend_labels(self) -> list[str]:
        """Each curve's legend label, wrapped to its legend column (a line sample takes the left part)."""
        columns = 1 if self.stacked else 2
        text_w = (self.width - 2 * MARGIN_IN) / columns - LEGEND_HANDLE_IN
        return ["\n".join(wrap(_curve_label(self.curves, name, self.labels), text_w))
                for name in self.curve_names()]

    def legend_rows(self) -> int:
        """Text lines of the tallest legend column (matplotlib fills the columns one after the other)."""
        lines = [label.count("\n") + 1 for label in self.legend_labels()]
        per_column = math.ceil(len(lines) / (1 if self.stacked else 2)) or 1
        return max((sum(lines[i:i + per_column]) for i in range(0, len(lines), per_column)), default=0)

    def curve_kinds(self) -> list[str]:
        """The curves the protocol ran (of :data:`PANELS`)."""
        names = self.curve_names()
        return [k for k in PANELS if names and _series(self.curves, names[0], k) is not None]

    def curve_names(self) -> list[str]:
        faith = self.curves
        return [] if faith is None else [m for m in self.methods if m in faith.results] + [
            b for b in BASELINES if b in faith.results]

    @property
    def curves_height(self) -> float:
        if self.curves is None:
            return 0.0
        plots = (len(self.curve_kinds()) if self.stacked else 1) * (LINE_IN + CURVE_IN + CURVE_BOTTOM_IN)
        return GAP_IN + plots + self.legend_rows() * LINE_IN + GAP_IN

    @property
    def height(self) -> float:
        h = 2 * MARGIN_IN + self.images.height + CBAR_IN
        if self.pairs is not None:
            h += GAP_IN + len(self.cf_heading) * LINE_IN + self.pairs.height
        h += self.curves_height
        if self.caption_lines:
            h += GAP_IN + len(self.caption_lines) * LINE_IN
        return h


def export_figure(exp: Explanation, folder: str | Path, stem: str, *, formats: Sequence[str] = FORMATS,
                  **options) -> list[str]:
    """Write ``stem.pdf``, ``.svg``, ``.png`` (300 dpi), the caption (``stem.txt``, ``stem.tex``) and the
    BibTeX (``stem.bib``) into ``folder``.

    ``options`` go to :func:`make_figure` (methods, labels, model, revision, cmap, opacity, faith,
    counterfactuals, curves, notes, caption, width). Returns the written paths, figures first.
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
    (folder / f"{stem}.tex").write_text(caption_tex(caption, stem), encoding="utf-8")
    (folder / f"{stem}.bib").write_text(BIBTEX + "\n", encoding="utf-8")
    paths += [folder / f"{stem}.{suffix}" for suffix in ("txt", "tex", "bib")]
    log.info("figure written: %s", ", ".join(p.name for p in paths))
    return [str(p) for p in paths]


def figure_stem(model: str, image: str, methods: Sequence[str]) -> str:
    """A file stem naming the model, the image and the method set, e.g.
    ``micam_efficientnet_lite0_chelsea_cat_micam-gradcam-migradcam`` (safe on every file system)."""
    name = model.split(":", 1)[-1].split("@", 1)[0].rsplit("/", 1)[-1]
    parts = [_slug(name, 60), _slug(Path(str(image)).stem, 40), "-".join(_slug(m, 20) for m in methods)]
    return "micam_" + "_".join(p for p in parts if p)[:150]


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-._")[:limit]


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", ">=": r"$\geq$"}


def caption_tex(caption: str, stem: str) -> str:
    """The caption as LaTeX: ``\\caption{...}`` with special characters escaped, and a label from the stem."""
    pattern = re.compile("|".join(re.escape(k) for k in sorted(_TEX_SPECIALS, key=len, reverse=True)))
    body = pattern.sub(lambda m: _TEX_SPECIALS[m.group(0)], caption)
    return f"\\caption{{{body}}}\n\\label{{fig:{_slug(stem, 80)}}}\n"


# --- rows -----------------------------------------------------------------------------------------
def _axes(fig: Figure, width: float, height: float, left: float, top: float, w: float, h: float):
    """Axes at a box given in inches from the figure's left edge and its bottom."""
    return fig.add_axes((left / width, (top - h) / height, w / width, h / height))


def _cells(fig: Figure, plan: _Plan, g: Grid, top: float, span: int = 1):
    """For each cell of grid ``g``, row by row: ``(index, left, title_top, picture_top)`` in inches."""
    for row in range(g.rows):
        for col in range(g.columns):
            index = row * g.columns + col
            if index >= g.count:
                break
            left = MARGIN_IN + col * span * (g.panel + GAP_IN)
            yield index, left, top, top - g.titles[row] * LINE_IN
        top -= g.row_height(row) + GAP_IN


def _picture(fig: Figure, plan: _Plan, left: float, top: float, panel: float, aspect: float, image) -> None:
    ax = _axes(fig, plan.width, plan.height, left, top, panel, panel * aspect)
    ax.imshow(np.asarray(image), interpolation="none")
    ax.set_axis_off()


def _title(fig: Figure, plan: _Plan, left: float, top: float, width: float, lines: list[str]) -> None:
    fig.text((left + width / 2) / plan.width, top / plan.height, "\n".join(lines), ha="center", va="top",
             linespacing=1.15)


def _image_rows(fig: Figure, plan: _Plan, top: float, exp: Explanation, cmap: str, opacity: float) -> float:
    g = plan.images
    pictures = [exp.crop] + [overlay(exp.crop, exp.maps[m], cmap, opacity) for m in plan.methods]
    for index, left, title_top, picture_top in _cells(fig, plan, g, top):
        _title(fig, plan, left, title_top, g.panel, plan.image_titles[index])
        _picture(fig, plan, left, picture_top, g.panel, g.aspect, pictures[index])
    top -= g.height
    bar_w = min(2.0, plan.width - 2 * MARGIN_IN - 0.6)
    cax = _axes(fig, plan.width, plan.height, (plan.width - bar_w) / 2, top - GAP_IN, bar_w, 0.08)
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[cmap]), cax=cax, orientation="horizontal",
                       ticks=[0.0, 0.5, 1.0])
    bar.set_label("map value (each map min-max normalised)", labelpad=1)
    bar.ax.tick_params(length=2, pad=1)
    return top - CBAR_IN


def _counterfactual_rows(fig: Figure, plan: _Plan, top: float) -> float:
    top -= GAP_IN
    fig.text(MARGIN_IN / plan.width, top / plan.height, "\n".join(plan.cf_heading), ha="left", va="top",
             linespacing=1.15)
    top -= len(plan.cf_heading) * LINE_IN
    g = plan.pairs
    for index, left, title_top, picture_top in _cells(fig, plan, g, top, span=2):
        result = plan.cf.results[plan.methods[index]]
        _title(fig, plan, left, title_top, 2 * g.panel + GAP_IN, plan.pair_titles[index])
        _picture(fig, plan, left, picture_top, g.panel, g.aspect, result.keep_image)
        _picture(fig, plan, left + g.panel + GAP_IN, picture_top, g.panel, g.aspect, result.remove_image)
    return top - g.height


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


def _curves_rows(fig: Figure, plan: _Plan, top: float) -> float:
    """The protocol's curves (deletion/insertion, ROAD MoRF/LeRF; stacked in a single column), one legend
    with every map's scores below them."""
    faith, names, kinds = plan.curves, plan.curve_names(), plan.curve_kinds()
    top -= GAP_IN
    count = max(1, len(kinds))
    plot_w = (plan.width - CURVE_LEFT_IN - MARGIN_IN - 0.1) if plan.stacked else (
        (plan.width - count * CURVE_LEFT_IN - MARGIN_IN - 0.1) / count)
    handles, labels = [], plan.legend_labels()
    for index, kind in enumerate(kinds):
        left = CURVE_LEFT_IN + (0 if plan.stacked else index * (plot_w + CURVE_LEFT_IN))
        box_top = top - LINE_IN - (index * (LINE_IN + CURVE_IN + CURVE_BOTTOM_IN) if plan.stacked else 0)
        ax = _axes(fig, plan.width, plan.height, left, box_top, plot_w, CURVE_IN)
        for name, label in zip(names, labels):
            xs, ys = _series(faith, name, kind)
            (line,) = ax.plot(xs, ys, "--" if name in BASELINES else "-", linewidth=1.0, label=label)
            if index == 0:
                handles.append(line)
        title, xlabel = PANELS[kind]
        ax.set_title(title, pad=2)
        ax.set_xlabel(xlabel, labelpad=1)
        ax.set_ylabel("target prob.", labelpad=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_yticks([0.0, 0.5, 1.0])
        ax.tick_params(axis="y", length=2, pad=1)
        ax.tick_params(axis="x", length=2, pad=3)  # clear of the y axis' "0"
        ax.grid(alpha=0.3, linewidth=0.5)
    top -= (count if plan.stacked else 1) * (LINE_IN + CURVE_IN + CURVE_BOTTOM_IN)
    legend_h = plan.legend_rows() * LINE_IN
    lax = _axes(fig, plan.width, plan.height, MARGIN_IN, top, plan.width - 2 * MARGIN_IN, legend_h)
    lax.set_axis_off()
    lax.legend(handles=handles, loc="upper center", ncol=1 if plan.stacked else 2, frameon=False, borderaxespad=0,
               borderpad=0, labelspacing=0.25, columnspacing=1.0, handlelength=2.0, handletextpad=0.5)
    return top - legend_h - GAP_IN


def _curve_label(faith: Faithfulness, name: str, labels: Mapping[str, str]) -> str:
    result = faith.results[name]
    scores = [f"{kind} {value:.3f}" for kind, value in (("AUC del.", result.curves.deletion_auc),
                                                        ("ins.", result.curves.insertion_auc)) if not np.isnan(value)]
    if result.road is not None:
        scores.append(f"ROAD MoRF {result.road.morf_score:.3f}, LeRF {result.road.lerf_score:.3f}, "
                      f"comb. {result.road.combined:.3f}")
    return f"{labels.get(name, name)}: {', '.join(scores)}"
