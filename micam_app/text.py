"""Every piece of Markdown the page shows, with anything from a visitor or a model file escaped."""

from __future__ import annotations

import html

from micam_core import METHOD_LABELS, REGISTRY, Explanation, LoadedModel
from micam_core.errors import shorten
from micam_core.maps import PAPER_SMOOTHING
from micam_core.permalink import echo
from micam_core.registry import display_mode

PAPER_URL = "https://arxiv.org/abs/2507.09092"


def md(text: object, limit: int = 120) -> str:
    """``text`` shown literally in Markdown: shortened, Markdown punctuation and HTML escaped."""
    return echo(text, limit)


def toast(text: object) -> str:
    """``text`` for a toast or modal (Gradio renders those as HTML): escaped and shortened."""
    return html.escape(shorten(str(text), 300), quote=False)


def class_note(methods: tuple[str, ...]) -> str:
    """Which of the shown maps ignore the target class."""
    agnostic = [METHOD_LABELS[m] for m in methods if not REGISTRY[m].class_specific]
    specific = [METHOD_LABELS[m] for m in methods if REGISTRY[m].class_specific]
    parts = []
    if agnostic:
        parts.append(f"**{' and '.join(agnostic)} {'is' if len(agnostic) == 1 else 'are'} class-agnostic**: "
                     "the map is the same whatever the target class")
    if specific:
        parts.append(f"{', '.join(specific)} explain the target class")
    return "; ".join(parts) + "."


def upsampling_note(exp: Explanation) -> str:
    """A sentence saying how the maps on screen were upsampled, and for which layer and target."""
    size = f"{exp.crop.size[0]}x{exp.crop.size[1]}"
    follows = [METHOD_LABELS[m] for m in exp.maps if REGISTRY[m].follows_display]
    h, w = next(exp.lowres[m] for m in exp.maps if REGISTRY[m].follows_display or m == exp.methods[-1]).shape
    parts = []
    if follows and exp.upsampling == "paper":
        parts.append(f"{' and '.join(follows)} shown the paper's way: the {h}x{w} map is upsampled to {size} by "
                     f"nearest neighbour, then smoothed with {PAPER_SMOOTHING}")
    by_shape: dict[tuple[int, int], list[str]] = {}
    for m in exp.maps:
        if display_mode(m, exp.upsampling) == "bilinear":
            by_shape.setdefault(exp.lowres[m].shape, []).append(METHOD_LABELS[m])
    for (mh, mw), labels in by_shape.items():  # methods on other grids (RefineCAM: the input size) say so
        already = (mw, mh) == tuple(exp.crop.size)
        parts.append(f"{', '.join(labels)}: " + ("computed at the input size" if already else
                                                  f"bilinear upsampling of the {mh}x{mw} map to {size}"))
    return (f"{'; '.join(parts)}. Layer {md(exp.layer)}, target class {exp.target} (*{md(exp.target_label)}*). "
            "The MI weights are always computed as in the paper.")


def display_note(exp: Explanation) -> str:
    notes = "".join(f" {REGISTRY[m].note}" for m in exp.methods if REGISTRY[m].note)
    return f"{class_note(exp.methods)} {upsampling_note(exp)}{notes}"


def describe_model(loaded: LoadedModel) -> str:
    """One line about a loaded model."""
    rev = loaded.revision or ""
    shown = rev[:12] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else rev
    revision = f", revision {md(shown)}" if rev else ""
    return (f"**{md(loaded.spec)}**: {md(type(loaded.model).__name__)}, {len(loaded.class_names)} classes, "
            f"{loaded.num_bytes / 2**20:.0f} MB, input {loaded.input_size[1]}x{loaded.input_size[0]}, "
            f"default layer {md(loaded.default_layer)}, on {loaded.device.type.upper()}{revision}")


def model_failure(spec: str, message: str) -> str:
    return f"**Model not loaded** ({md(spec)}): {md(message, 400)}"


def alert(message: str) -> str:
    return f"**Could not finish:** {md(message, 400)}"


def methods_table() -> str:
    """The registry as a Markdown table: label, class-specific, formula, paper, display upsampling."""
    rows = ["| Method | Class-specific | Map | Upsampling | Paper |", "|---|---|---|---|---|"]
    for m in REGISTRY.values():
        ups = "the display setting" if m.follows_display else m.upsampling
        rows.append(f"| {m.label} (`{m.id}`) | {'yes' if m.class_specific else 'no'} | `{m.formula}` | {ups} | "
                    f"{m.reference} |")
    return "\n".join(rows)


UPDATING = "Updating ..."  # plain text: shown in the counterfactual blocks (blocks.py)
CANCELLED = "**Cancelled.** What is on screen may not match the controls: press Explain to run again."


def status_html(message: str, done: float | None = None) -> str:
    """The status bar: a sentence (Markdown-escaped already or plain) and a progress bar at ``done``."""
    bar = "" if done is None else f'<progress max="100" value="{max(0.0, min(1.0, done)) * 100:.0f}"></progress>'
    return f'<div class="status-line" role="status" aria-live="polite">{bar}<span>{html.escape(message)}</span></div>'


def method_list(methods: tuple[str, ...]) -> str:
    return ", ".join(METHOD_LABELS[m] for m in methods)


LINK_NOTE = "The link holds the model, layer, target, methods, settings, and the image when it is an example."


def link_note(example: str | None) -> str:
    """Under the link box: whether the image travels with the link."""
    if example is not None:
        return LINK_NOTE
    return ("**The image was uploaded, so it cannot travel in a link.** This link opens the same model, layer, "
            "target, methods and settings without it: add the image there and press Explain.")


def link_messages(refused: list[str], missing: list[str]) -> str:
    """The sentence(s) shown when a link is opened with parts refused or missing (empty when neither)."""
    parts = []
    if "example" in missing:
        parts.append("**This link holds no image** (an uploaded image cannot travel in a link): add one and press "
                     "Explain.")
    others = [m for m in missing if m != "example"]
    if others:
        parts.append(f"Not in the link, so the defaults are used: {', '.join(others)}.")
    if refused:
        parts.append("**Some link parameters were ignored:** " + " ".join(refused))
    return " ".join(parts)
