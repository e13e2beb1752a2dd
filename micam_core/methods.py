"""MI CAM, MI-Grad-CAM and Grad-CAM from one shared capture: channel weights -> maps."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .capture import Capture, capture
from .errors import MicamError, TargetError, shorten
from .images import ImageInput, load_image
from .mi import mutual_information_torch
from .models import LoadedModel

METHODS = ("micam", "gradcam", "migradcam")
METHOD_LABELS = {"micam": "MI CAM", "gradcam": "Grad-CAM", "migradcam": "MI-Grad-CAM"}
UPSAMPLING = ("paper", "bilinear")
# The authors' smoothing: an 11 x 11 Gaussian kernel with sigma 7 at 224 px (scaled with size).
PAPER_KERNEL, PAPER_SIGMA, PAPER_SIZE = 11, 7.0, 224


@dataclass
class Explanation:
    """Everything one image's explanation holds. Maps are float32 ``H x W`` in [0, 1]."""

    crop: Image.Image
    probs: np.ndarray
    target: int
    target_label: str
    layer: str
    maps: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    lowres: dict[str, np.ndarray]  # ReLU(sum_k w_k A_k) at feature resolution, before upsampling
    upsampling: str = "paper"
    class_names: list[str] = field(default_factory=list, repr=False)

    def top(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes as ``(index, label, probability)``."""
        return top_k(self.probs, self.class_names, k)

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs))

    def with_upsampling(self, upsampling: str) -> Explanation:
        """The same explanation with MI maps upsampled another way (no forward pass)."""
        maps = {m: render_map(self.lowres[m], self.crop.size[::-1], _mode_for(m, upsampling))
                for m in self.maps}
        return Explanation(**{**self.__dict__, "maps": maps, "upsampling": upsampling})


def top_k(probs: np.ndarray, names: Sequence[str], k: int) -> list[tuple[int, str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), names[i] if i < len(names) else f"class {i}", float(probs[i])) for i in order]


def explain(
    loaded: LoadedModel,
    image: ImageInput | Sequence[ImageInput],
    target: int | str | Sequence[int | str] | None = None,
    layer: str | None = None,
    methods: Sequence[str] = METHODS,
    upsampling: str = "paper",
) -> Explanation | list[Explanation]:
    """Explain one image (returns an :class:`Explanation`) or a list of images (returns a list).

    ``target``: class index or name per image (default: the top-1 class). ``layer``: module
    name (default: ``loaded.default_layer``). ``upsampling``: how MI maps are brought to the
    input size, ``"paper"`` (nearest + Gaussian blur) or ``"bilinear"``; the MI weights are
    always computed the paper's way and Grad-CAM is always bilinear.
    """
    single = not isinstance(image, (list, tuple))
    images = [image] if single else list(image)
    if not images:
        raise MicamError("No image given.")
    methods = _checked_methods(methods)
    if upsampling not in UPSAMPLING:
        raise MicamError(f"upsampling must be one of {UPSAMPLING}, got '{shorten(upsampling)}'.")
    targets = _per_image(target, len(images))
    wanted = [None if t is None else class_index(loaded, t) for t in targets]
    crops = [loaded.crop(load_image(img)) for img in images]
    layer = layer or loaded.default_layer

    def choose(logits: torch.Tensor) -> list[int]:
        top1 = logits.argmax(1).tolist()
        return [t if t is not None else p for t, p in zip(wanted, top1)]

    cap = capture(loaded.model, layer, loaded.to_input(crops), choose,
                  want_logit_grad="gradcam" in methods, want_prob_grad="migradcam" in methods)
    explanations = _build(loaded, cap, crops, layer, methods, upsampling)
    return explanations[0] if single else explanations


def _checked_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise MicamError(f"Unknown method(s) {shorten(unknown)}; choose from {', '.join(METHODS)}.")
    return methods


def _per_image(target, count: int) -> list:
    if isinstance(target, (list, tuple)):
        if len(target) != count:
            raise TargetError(f"Got {len(target)} targets for {count} images.")
        return list(target)
    return [target] * count


def class_index(loaded: LoadedModel, target: int | str) -> int:
    """A class index from an index, a numeric string, or a (case-insensitive) class name."""
    names = loaded.class_names
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().isdigit()):
        text = str(target).strip()
        index = int(text) if len(text) <= 18 else len(names)  # no 5000-digit ints
        if not 0 <= index < len(names):
            raise TargetError(f"Class {shorten(text)} is out of range: the model has {len(names)} classes.")
        return index
    wanted = str(target).strip().lower()
    for i, name in enumerate(names):
        if name.lower() == wanted or wanted in [part.strip() for part in name.lower().split(",")]:
            return i
    close = difflib.get_close_matches(wanted, [n.lower() for n in names], n=3) if len(wanted) <= 200 else []
    hint = f" Did you mean: {'; '.join(close)}?" if close else ""
    raise TargetError(f"'{shorten(target)}' is not one of this model's class names.{hint}")


def _build(loaded: LoadedModel, cap: Capture, crops: list[Image.Image], layer: str,
           methods: tuple[str, ...], upsampling: str) -> list[Explanation]:
    probs = torch.softmax(cap.logits.float(), dim=1).cpu().numpy()
    weights = channel_weights(cap, [np.array(c.convert("L")) for c in crops], methods)
    cams = {m: combine(weights[m], cap.activations) for m in methods}
    out = []
    for i, crop in enumerate(crops):
        lowres = {m: cams[m][i].cpu().numpy() for m in methods}
        size = crop.size[::-1]
        out.append(Explanation(
            crop=crop, probs=probs[i], target=cap.targets[i], target_label=loaded.label(cap.targets[i]),
            layer=layer, maps={m: render_map(lowres[m], size, _mode_for(m, upsampling)) for m in methods},
            weights={m: weights[m][i].cpu().numpy() for m in methods}, lowres=lowres,
            upsampling=upsampling, class_names=loaded.class_names,
        ))
    return out


def channel_weights(cap: Capture, grays: list[np.ndarray], methods: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-image, per-channel weights (``B x K``) of each method."""
    weights: dict[str, torch.Tensor] = {}
    acts = cap.activations
    mi = None
    if "micam" in methods or "migradcam" in methods:
        mi = torch.stack([
            mutual_information_torch(torch.from_numpy(g).to(acts.device), acts[i])
            for i, g in enumerate(grays)  # one call per image, all channels at once
        ]).to(acts.dtype)
    if "micam" in methods:
        weights["micam"] = mi
    if "gradcam" in methods:
        weights["gradcam"] = cap.grad_logit.mean(dim=(2, 3))
    if "migradcam" in methods:
        share = mi / mi.sum(1, keepdim=True).clamp_min(torch.finfo(mi.dtype).tiny)
        weights["migradcam"] = cap.grad_prob.mean(dim=(2, 3)) * share
    return weights


def combine(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)`` at feature resolution (upsampling is linear: upsample once, later)."""
    return torch.relu(torch.einsum("bk,bkhw->bhw", weights.to(acts.dtype), acts))


def _mode_for(method: str, upsampling: str) -> str:
    return "bilinear" if method == "gradcam" else upsampling


def render_map(lowres: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Upsample a feature-resolution map to ``size`` (H, W) and min-max it to [0, 1].

    ``mode="paper"``: nearest upsampling, then the authors' Gaussian smoothing (kernel 11, sigma 7
    at 224 px, scaled with the size, reflected borders). ``mode="bilinear"``: bilinear upsampling
    (half-pixel centres, as OpenCV and pytorch-grad-cam).
    """
    t = torch.as_tensor(np.asarray(lowres, dtype=np.float32))[None, None]
    if mode == "paper":
        up = gaussian_blur(F.interpolate(t, size=size, mode="nearest"), size)
    elif mode == "bilinear":
        up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    else:
        raise MicamError(f"Unknown upsampling '{shorten(mode)}'; choose from {UPSAMPLING}.")
    return minmax(up[0, 0]).numpy()


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Scale to [0, 1]; a constant map becomes all zeros."""
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 0.0:
        return torch.zeros_like(x, dtype=torch.float32)
    return ((x - lo) / (hi - lo)).to(torch.float32)


def paper_kernel(size: tuple[int, int]) -> tuple[int, float]:
    """Kernel size (odd) and sigma of the paper's smoothing, scaled from 224 px to ``size``."""
    scale = min(size) / PAPER_SIZE
    ksize = max(1, int(round(PAPER_KERNEL * scale)) | 1)
    return ksize, PAPER_SIGMA * scale


def gaussian_blur(x: torch.Tensor, size: tuple[int, int], ksize: int | None = None,
                  sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of an ``N x 1 x H x W`` tensor with reflected borders (OpenCV's default).

    Kernel size and sigma default to the paper's smoothing scaled to ``size``.
    """
    if ksize is None or sigma is None:
        ksize, sigma = paper_kernel(size)
    if ksize < 3 or min(x.shape[-2:]) <= ksize // 2:
        return x
    half = ksize // 2
    coords = torch.arange(ksize, dtype=torch.float32) - half
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(x.dtype)
    x = F.pad(x, (half, half, half, half), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, ksize))
    return F.conv2d(x, kernel.view(1, 1, ksize, 1))


