"""Widget choices, labels and tables built from the core's plain results (no tensors, no Markdown)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from micam_core import BUNDLED_SPEC, METHOD_LABELS, METHODS, REGISTRY, LoadedModel, MicamError, metrics_table, policy
from micam_core.cost import estimate_seconds, extra_passes
from micam_core.counterfactual import BASELINES, MethodResult
from micam_core.escape import html_text
from micam_core.permalink import build_query, example_index
from micam_core.protocols import get_protocol
from micam_core.registry import FAMILIES
from micam_core.view import AUTO_LAYER, TOP1, View

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = example_index(ROOT / "examples")  # stem -> path: the only images a link can name
_EXAMPLE_BY_HASH = {hashlib.sha256(p.read_bytes()).hexdigest(): stem for stem, p in EXAMPLES.items()}

# (shown name, spec) of the model picker; the bundled model works offline and is the default.
POPULAR_MODELS: list[tuple[str, str]] = [
    ("EfficientNet-Lite0 (bundled, offline)", BUNDLED_SPEC),
    ("ResNet-50 (timm/resnet50.a1_in1k)", "timm/resnet50.a1_in1k"),
    ("ConvNeXt-Tiny (timm/convnext_tiny.fb_in22k_ft_in1k)", "timm/convnext_tiny.fb_in22k_ft_in1k"),
    ("EfficientNet-B0 (timm/efficientnet_b0.ra_in1k)", "timm/efficientnet_b0.ra_in1k"),
    ("MobileNetV3-Large (timm/mobilenetv3_large_100.ra_in1k)", "timm/mobilenetv3_large_100.ra_in1k"),
    ("RegNetY-1.6GF (timm/regnety_016.tv2_in1k)", "timm/regnety_016.tv2_in1k"),
    ("VGG-16 (timm/vgg16.tv_in1k)", "timm/vgg16.tv_in1k"),
    ("DenseNet-121 (timm/densenet121.tv_in1k)", "timm/densenet121.tv_in1k"),
    ("ViT-B/16 (timm/vit_base_patch16_224.augreg2_in21k_ft_in1k)", "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k"),
    ("DeiT-S (timm/deit_small_patch16_224.fb_in1k)", "timm/deit_small_patch16_224.fb_in1k"),
    ("Swin-T (timm/swin_tiny_patch4_window7_224.ms_in1k)", "timm/swin_tiny_patch4_window7_224.ms_in1k"),
    ("EVA02-Tiny (timm/eva02_tiny_patch14_336.mim_in22k_ft_in1k)", "timm/eva02_tiny_patch14_336.mim_in22k_ft_in1k"),
    ("MaxViT-T (timm/maxvit_tiny_tf_224.in1k)", "timm/maxvit_tiny_tf_224.in1k"),
]
TOP1_LABEL = "predicted class (top-1)"


def resolve_spec(choice: str | None, custom: str | None) -> str:
    """The spec to load: the free-text field when filled, else the picker's choice, else the bundled model."""
    custom = (custom or "").strip()
    if custom:
        return custom
    return (str(choice or "")).strip() or BUNDLED_SPEC


def layer_choices(loaded: LoadedModel) -> list[tuple[str, str]]:
    """``(shown, value)`` pairs for a layer picker: ``auto`` first, then every candidate, deepest first."""
    auto = f"auto: {loaded.default_layer}"
    return [(auto, AUTO_LAYER)] + [(info.describe(), info.name) for info in loaded.layers]


def target_choices(loaded: LoadedModel) -> list[tuple[str, str]]:
    """``(shown, value)`` pairs for a class picker: top-1 first, then ``index: name`` per class."""
    return [(TOP1_LABEL, TOP1)] + [(f"{i}: {name}", str(i)) for i, name in enumerate(loaded.class_names)]


FEW_PASSES = 8  # up to this many extra passes a method is cheap enough to name without seconds
UNAVAILABLE = " — unavailable: "  # marks a choice the page greys out (see layout.DISABLE_JS)


def ordered_methods() -> list[str]:
    """The registry's methods grouped by family (the selector's order), registry order within a family."""
    return [m for family in FAMILIES for m in METHODS if REGISTRY[m].group == family]


def method_choices(loaded: LoadedModel | None = None, layer: str | None = None) -> list[tuple[str, str]]:
    """``(shown, id)`` for the method selector, grouped by family, each with its cost on this model and layer.

    A method that cannot run here (wrong kind of model or layer, or over the server's pass limit) stays listed
    with the reason, and the page greys it out.
    """
    out = []
    for method in ordered_methods():
        record = REGISTRY[method]
        family = FAMILIES[record.group].split(" (")[0]
        shown = f"{family} › {METHOD_LABELS[method]} · {cost_phrase(loaded, layer, method)}"
        reason = unavailable_reason(loaded, layer, method)
        out.append((shown + (UNAVAILABLE + reason if reason else ""), method))
    return out


def unavailable_reason(loaded: LoadedModel | None, layer: str | None, method: str) -> str | None:
    """Why ``method`` cannot run on ``loaded`` at ``layer`` here (``None``: it can, or no model yet)."""
    if loaded is None:
        return None
    try:
        reason = REGISTRY[method].why_not(loaded, layer)
        passes = extra_passes(loaded, layer, [method])
    except MicamError:  # a layer without a map: refused, with its own sentence, when explained
        return None
    limit = policy.max_extra_passes()
    if reason is None and passes > limit:
        reason = f"{passes} forward passes on this layer, over this server's limit of {limit}"
    return reason


def runnable(loaded: LoadedModel, layer: str | None, methods: Any) -> list[str]:
    """The chosen ``methods`` that can run on ``loaded`` at ``layer`` (the others are unticked)."""
    return [m for m in methods or [] if m in REGISTRY and unavailable_reason(loaded, layer, m) is None]


def cost_phrase(loaded: LoadedModel | None, layer: str | None, method: str) -> str:
    """E.g. ``"shared pass"``, ``"+1 pass"`` or ``"+1281 passes, ~40 s on CPU"`` (extra forward passes, at most)."""

    # Seconds are measured only for models on the CPU: on a ZeroGPU Space the main process, where this
    # runs, must not run CUDA work (only ``spaces.GPU`` functions may).
    if REGISTRY[method].single_pass:
        return "shared pass"
    try:
        passes = extra_passes(loaded, layer, [method]) if loaded is not None else None
    except MicamError:  # a layer without a map: refused when explained
        passes = None
    if passes is None:
        return "extra passes"
    if passes <= FEW_PASSES or loaded.device.type != "cpu":
        return f"+{passes} pass{'es' * (passes != 1)}"
    seconds = estimate_seconds(loaded, layer, [method]) or 0.0
    return f"+{passes} passes, ~{seconds:.0f} s on CPU"


def label_dict(top: list[tuple[int, str, float]]) -> dict[str, float]:
    """Top-k predictions as ``{label: probability}`` (labels made unique with their index when needed)."""
    out: dict[str, float] = {}
    for index, label, prob in top:
        key = label if label not in out else f"{label} ({index})"
        out[key] = float(prob)
    return out


def metrics_rows(results: Mapping[str, MethodResult], methods: Sequence[str],
                 protocol: str | None = None) -> dict[str, list]:
    """The metrics table's value (``headers`` and ``data``): the columns of ``protocol`` (a name; None: every
    column), a row per method, then the baselines; a map not scored yet has its row, marked as being scored."""
    chosen = get_protocol(protocol) if protocol else None
    heads = metrics_table.headers(chosen)
    rows = []
    for name in (*methods, *BASELINES):
        result = results.get(name)
        if result is None:
            rows.append([METHOD_LABELS.get(name) or BASELINES[name], *(["scoring ..."] * (len(heads) - 1))])
        else:
            rows.append(metrics_table.row(result, chosen))
    return {"headers": heads, "data": rows}


def metrics_html(results: Mapping[str, MethodResult], methods: Sequence[str], protocol: str | None = None) -> str:
    """:func:`metrics_rows` as an HTML table, in a box that scrolls sideways on a narrow screen (a Dataframe
    component would cost the page about 0.15 s at every load: docs/measurements.md)."""
    table = metrics_rows(results, methods, protocol)
    head = "".join(f'<th scope="col">{html_text(h)}</th>' for h in table["headers"])
    body = "".join(f'<tr><th scope="row">{html_text(row[0])}</th>'
                   + "".join(f"<td>{html_text(v)}</td>" for v in row[1:]) + "</tr>" for row in table["data"])
    return (f'<div class="metrics-scroll" role="region" aria-label="Faithfulness metrics" tabindex="0">'
            f'<table class="metrics-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def example_stem(path: str | None) -> str | None:
    """The example's stem when ``path`` holds the bytes of one of the bundled examples (else ``None``)."""
    if not path:
        return None
    try:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None
    return _EXAMPLE_BY_HASH.get(digest)


def view_query(session: dict, default_layer: str, view: View) -> str:
    """The query string of ``view`` with the session's explanation's layer, target, methods and upsampling."""
    exp = session["exp"]
    view = view.replace(layer=AUTO_LAYER if exp.layer == default_layer else exp.layer, target=exp.target,
                        methods=exp.methods, upsampling=exp.upsampling)  # every part written: a complete link
    return build_query(view)
