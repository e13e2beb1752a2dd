"""``explain``: one shared capture serves every chosen method of the registry."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .capture import EXTRAS, Capture, TargetChooser, capture
from .errors import MicamError, TargetError, shorten
from .images import ImageInput, load_image
from .maps import gaussian_blur, minmax, paper_kernel, render_map
from .models import LoadedModel
from .registry import (
    DEFAULT_METHODS,
    METHOD_LABELS,
    METHODS,
    REGISTRY,
    MapInputs,
    compute_maps,
    display_mode,
    needs_of,
    objectives_of,
    taps_of,
)
from .settings import DEFAULTS, UPSAMPLING, validate

__all__ = ["DEFAULT_METHODS", "METHODS", "METHOD_LABELS", "UPSAMPLING", "Explanation", "class_index", "explain",
           "gaussian_blur", "minmax", "paper_kernel", "render_map", "top_k"]


@dataclass
class Explanation:
    """Everything one image's explanation holds. Maps are float32 ``H x W`` in [0, 1], in method order."""

    crop: Image.Image
    probs: np.ndarray
    target: int
    target_label: str
    layer: str
    maps: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]  # channel weights of the methods that have them
    lowres: dict[str, np.ndarray]  # ReLU'd map at feature resolution, before upsampling
    upsampling: str = "paper"
    class_names: list[str] = field(default_factory=list, repr=False)
    extra_forward_passes: int = 0  # Score-CAM's masked passes for this image
    mi: np.ndarray | None = field(default=None, repr=False)  # K mutual informations, when a method used them
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # the values of the methods' own parameters

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as ``(index, label, probability)``."""
        return top_k(self.probs, self.class_names, k)

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def with_upsampling(self, upsampling: str) -> Explanation:
        """The same explanation with MI maps upsampled another way (no forward pass)."""
        upsampling = validate("upsampling", upsampling)
        maps = {m: render_map(self.lowres[m], self.crop.size[::-1], display_mode(m, upsampling)) for m in self.maps}
        return Explanation(**{**self.__dict__, "maps": maps, "upsampling": upsampling})


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list[tuple[int, str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in order]


def explain(
    loaded: LoadedModel,
    image: ImageInput | Sequence[ImageInput],
    target: int | str | Sequence[int | str] | None = None,
    layer: str | None = None,
    methods: Sequence[str] | str = DEFAULTS["methods"],
    upsampling: str = DEFAULTS["upsampling"],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> Explanation | list[Explanation]:
    """Explain one image (returns an :class:`Explanation`) or a list of images (returns a list).

    ``methods``: ids from :data:`METHODS` (or a comma-separated string); one forward pass and at
    most one partial backward pass serve all of them (Score-CAM adds its masked passes).
    ``target``: class index or name per image (default: the top-1 class). ``layer``: module
    name (default: ``loaded.default_layer``). ``upsampling``: how MI maps are brought to the
    input size, one of :data:`~micam_core.fields.UPSAMPLING_MODES`; the other methods are
    always bilinear. ``params``: per method id, values of its own parameters (defaults otherwise).
    """
    single = not isinstance(image, (list, tuple))
    images = [image] if single else list(image)
    if not images:
        raise MicamError("No image given.")
    methods = validate("methods", methods)
    upsampling = validate("upsampling", upsampling)
    targets = _per_image(target, len(images))
    wanted = [None if t is None else class_index(loaded, t) for t in targets]
    crops = [loaded.crop(load_image(img)) for img in images]
    layer = layer or loaded.default_layer
    params = {m: REGISTRY[m].param_values((params or {}).get(m)) for m in methods}

    def choose(logits: torch.Tensor) -> list[int]:
        top1 = logits.argmax(1).tolist()
        return [t if t is not None else p for t, p in zip(wanted, top1)]

    refuse_unavailable(loaded, layer, methods)
    explanations = explain_crops(loaded, crops, choose, layer, methods, upsampling, params)
    return explanations[0] if single else explanations


def explain_crops(loaded: LoadedModel, crops: list[Image.Image], choose: TargetChooser, layer: str,
                  methods: tuple[str, ...], upsampling: str = DEFAULTS["upsampling"],
                  params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Explanation]:
    """What :func:`explain` does once the images are decoded and cropped (values already checked): the shared
    pass on the model-input ``crops`` and every chosen method's map."""
    cap, inputs = capture_inputs(loaded, crops, choose, layer, methods, params)
    return _build(loaded, cap, crops, layer, methods, upsampling, inputs, params)


def capture_inputs(loaded: LoadedModel, crops: list[Image.Image], choose: TargetChooser, layer: str,
                   methods: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> tuple[Capture, MapInputs]:
    """The shared pass on model-input ``crops`` and what it gives the chosen ``methods``."""
    needs = needs_of(methods)
    batch = loaded.to_input(crops)
    cap = capture(loaded.model, layer, batch, choose, want_logit_grad="grad_logit" in needs,
                  want_prob_grad="grad_prob" in needs, objectives=objectives_of(methods, params),
                  extras=needs & set(EXTRAS), **taps_of(methods, loaded, layer, params))
    inputs = MapInputs(activations=cap.activations, grays=[np.array(c.convert("L")) for c in crops],
                       targets=cap.targets, grad_logit=cap.grad_logit, grad_prob=cap.grad_prob,
                       batch=batch, model=loaded.model, logits=cap.logits, layer=layer, loaded=loaded,
                       grads=cap.grads, hvp=cap.hvp, input_grad=cap.input_grad, guided_grad=cap.guided_grad,
                       bias_grads=cap.bias_grads, layer_maps=cap.layers, attention=cap.attention)
    return cap, inputs


def refuse_unavailable(loaded: LoadedModel, layer: str | None, methods: Sequence[str]) -> None:
    """A :class:`MicamError` with the method's own sentence when a chosen method cannot run here."""
    for method in methods:
        reason = REGISTRY[method].why_not(loaded, layer)
        if reason:
            raise MicamError(f"{REGISTRY[method].label} cannot run here: {reason}")


def _per_image(target, count: int) -> list:
    if isinstance(target, (list, tuple)):
        if len(target) != count:
            raise TargetError(f"Got {len(target)} targets for {count} images.")
        return list(target)
    return [target] * count


def class_index(loaded: LoadedModel, target: int | str) -> int:
    """A class index from an index, a numeric string, or a (case-insensitive) class name."""
    names = loaded.class_names
    text = target.strip() if isinstance(target, str) else None
    if isinstance(target, (int, np.integer)) or (text and text.isascii() and text.isdigit()):
        index = int(target) if text is None or len(text) <= 18 else len(names)  # no 5000-digit ints
        if not 0 <= index < len(names):
            raise TargetError(f"Class {shorten(text or index)} is out of range: the model has {len(names)} classes.")
        return index
    if not isinstance(target, str):
        raise TargetError(f"The target class must be a class index or name; got {shorten(repr(target))}.")
    wanted = text.lower()
    for i, name in enumerate(names):
        if name.lower() == wanted or wanted in [part.strip() for part in name.lower().split(",")]:
            return i
    close = difflib.get_close_matches(wanted[:200], [n.lower() for n in names], n=3)
    hint = f" Did you mean: {'; '.join(close)}?" if close else ""
    raise TargetError(f"The target class '{shorten(target)}' is not one of this model's class names.{hint}")


def _build(loaded: LoadedModel, cap: Capture, crops: list[Image.Image], layer: str,
           methods: tuple[str, ...], upsampling: str, inputs: MapInputs,
           params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Explanation]:
    probs = torch.softmax(cap.logits.float(), dim=1).cpu().numpy()
    results = compute_maps(methods, inputs, params)
    per_image_passes = inputs.extra_passes // max(1, len(crops))
    used = {m: REGISTRY[m].param_values((params or {}).get(m)) for m in methods if REGISTRY[m].params}
    mi = inputs.__dict__.get("mi")  # the cached property, only when some method computed it
    out = []
    for i, crop in enumerate(crops):
        lowres = {m: results[m][0][i].cpu().numpy() for m in methods}
        size = crop.size[::-1]
        out.append(Explanation(
            crop=crop, probs=probs[i], target=cap.targets[i], target_label=loaded.label(cap.targets[i]),
            layer=layer, maps={m: render_map(lowres[m], size, display_mode(m, upsampling)) for m in methods},
            weights={m: w[i].cpu().numpy() for m, (_, w) in results.items() if w is not None}, lowres=lowres,
            upsampling=upsampling, class_names=loaded.class_names, extra_forward_passes=per_image_passes,
            mi=None if mi is None else mi[i].cpu().numpy(), params={m: dict(v) for m, v in used.items()},
        ))
    return out
