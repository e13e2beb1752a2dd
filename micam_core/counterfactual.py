"""Counterfactual masked predictions and faithfulness metrics, batched through the model.

All masking happens in pixel space on the model-input crop (0..255, before normalisation).
Every masked variant of one image (keep / remove / saliency x image per map, each deletion and
insertion step) goes through :class:`_Evaluator`, which runs them as chunked batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import MicamError
from .images import ImageInput, load_image
from .maps import gaussian_blur, minmax
from .methods import class_index
from .models import LoadedModel
from .protocols import Protocol, get_protocol
from .road import RoadResult
from .settings import SETTINGS
from .verdict import removal_sentence

BASELINES = {"random": "Random map (baseline)", "centre": "Centred Gaussian (baseline)"}
# Petsiuk et al.'s insertion start: Gaussian blur, kernel 11, sigma 5 at 224 px.
BLUR_KERNEL, BLUR_SIGMA = 11, 5.0
DEFAULT_CHUNK = 8  # small batches run fastest on CPU (measured: 8-9 ms/image at 4-8, 13+ at 32)


class _Evaluator:
    """Queue pixel images (``H x W x 3`` float, 0..255); run them through the model in chunks."""

    def __init__(self, loaded: LoadedModel, chunk: int = DEFAULT_CHUNK) -> None:
        self.loaded = loaded
        self.chunk = max(1, int(chunk))
        self.pending: list[torch.Tensor] = []
        self.probs: list[torch.Tensor] = []
        self.forward_calls = 0
        self.forward_seconds = 0.0  # time inside the model's forward calls (the floor of any analysis)

    def add(self, pixels: torch.Tensor) -> int:
        self.pending.append(pixels)
        if len(self.pending) >= self.chunk:
            self._flush()
        return len(self.probs) + len(self.pending) - 1

    def _flush(self) -> None:
        if not self.pending:
            return
        x = self.loaded.normalize(torch.stack(self.pending))
        self.pending = []
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.loaded.model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            self.probs.extend(torch.softmax(out.float(), dim=1).cpu())
        self.forward_seconds += time.perf_counter() - start
        self.forward_calls += 1

    def results(self) -> torch.Tensor:
        self._flush()
        return torch.stack(self.probs)

    @property
    def images(self) -> int:
        return len(self.probs) + len(self.pending)


def pixels_of(crop: Image.Image) -> torch.Tensor:
    """The crop as an ``H x W x 3`` float32 tensor of 0..255 values."""
    return torch.from_numpy(np.array(crop.convert("RGB"), dtype=np.float32))


def blurred(pixels: torch.Tensor) -> torch.Tensor:
    """Gaussian-blurred copy (kernel 11, sigma 5 at 224 px, scaled), as Petsiuk et al. insert onto."""
    h, w = pixels.shape[:2]
    scale = min(h, w) / 224.0
    ksize = max(3, int(round(BLUR_KERNEL * scale)) | 1)
    chw = pixels.permute(2, 0, 1).unsqueeze(1)  # 3 x 1 x H x W: each colour channel alone
    out = gaussian_blur(chw, (h, w), ksize=ksize, sigma=BLUR_SIGMA * scale)
    return out.squeeze(1).permute(1, 2, 0).contiguous()


def fill_pixels(pixels: torch.Tensor, fill: str) -> torch.Tensor:
    """What masked pixels become: black, the blurred image, or the image's mean colour."""
    if fill == "black":
        return torch.zeros_like(pixels)
    if fill == "blur":
        return blurred(pixels)
    if fill == "mean":
        return pixels.mean(dim=(0, 1), keepdim=True).expand_as(pixels).clone()
    raise SETTINGS["fill"].refuse(fill)


def region(saliency: np.ndarray, threshold: float) -> torch.Tensor:
    """Boolean ``H x W`` mask of the salient region: normalised map >= threshold (checked by the caller)."""
    return torch.from_numpy(np.asarray(saliency, dtype=np.float32)) >= threshold


def masked(pixels: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``pixels`` with ``fill`` wherever ``mask`` is true (all three colour channels)."""
    return torch.where(mask.unsqueeze(-1), fill, pixels)


def pixel_ranks(saliency: np.ndarray) -> torch.Tensor:
    """Rank of each pixel, 0 = most salient; ties in row-major order (stable sort)."""
    flat = torch.from_numpy(np.asarray(saliency, dtype=np.float32).ravel())
    order = torch.sort(-flat, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(flat.numel())
    return ranks.reshape(np.shape(saliency))


def step_counts(num_pixels: int, steps: int) -> list[int]:
    """Pixels changed at each of the ``steps + 1`` points: ``round(i * N / steps)``."""
    return [int(round(i * num_pixels / steps)) for i in range(steps + 1)]


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoid rule)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float(np.trapezoid(curve, np.linspace(0.0, 1.0, len(curve))))


@dataclass(frozen=True)
class CurveEnds:
    """Target probabilities at the curves' fixed ends: the image as it is, wholly filled, and blurred."""

    original: float
    filled: float
    blurred: float


@dataclass
class _CurvePlan:
    """Where the inner points of a deletion/insertion curve sit in the evaluator's results (None: not run)."""

    deletion: list[int] | None
    insertion: list[int] | None

    def read(self, target_probs: torch.Tensor, ends: CurveEnds) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Both curves with their fixed ends (``None`` for a curve the protocol does not run)."""
        deletion = None if self.deletion is None else [ends.original, *target_probs[self.deletion].tolist(),
                                                       ends.filled]
        insertion = None if self.insertion is None else [ends.blurred, *target_probs[self.insertion].tolist(),
                                                         ends.original]
        return tuple(None if c is None else np.asarray(c, dtype=np.float64) for c in (deletion, insertion))


def _plan_curves(ev: _Evaluator, pixels: torch.Tensor, filled: torch.Tensor, start: torch.Tensor,
                 saliency: np.ndarray, steps: int,
                 kinds: tuple[str, ...] = ("deletion", "insertion")) -> _CurvePlan:
    """Queue the inner steps of the curves in ``kinds`` (their ends are the same for every map)."""
    if steps < 2:
        raise MicamError(f"steps must be at least 2, got {steps}.")
    if not kinds:
        return _CurvePlan(None, None)
    ranks = pixel_ranks(saliency)
    counts = step_counts(ranks.numel(), steps)
    deletion, insertion = [], []
    for count in counts[1:-1]:
        changed = ranks < count
        if "deletion" in kinds:
            deletion.append(ev.add(masked(pixels, filled, changed)))
        if "insertion" in kinds:
            insertion.append(ev.add(masked(start, pixels, changed)))
    return _CurvePlan(deletion if "deletion" in kinds else None, insertion if "insertion" in kinds else None)


@dataclass
class CurveResult:
    """Deletion and insertion curves (``steps + 1`` points each, ``None`` when the protocol skips one) and AUCs."""

    deletion: np.ndarray | None
    insertion: np.ndarray | None
    steps: int
    fill: str

    @property
    def deletion_auc(self) -> float:
        return float("nan") if self.deletion is None else auc(self.deletion)

    @property
    def insertion_auc(self) -> float:
        return float("nan") if self.insertion is None else auc(self.insertion)

    def as_lists(self) -> dict[str, list[float]]:
        """The curves that were run, as lists."""
        return {kind: curve.tolist() for kind, curve in (("deletion", self.deletion), ("insertion", self.insertion))
                if curve is not None}


def deletion_insertion(loaded: LoadedModel, image: ImageInput, saliency: np.ndarray,
                       target: int | str | None = None, steps: int = 32, fill: str = "black",
                       chunk: int = DEFAULT_CHUNK) -> CurveResult:
    """Score any saliency map (``H x W`` over the model-input crop) by deletion and insertion.

    ``image`` is the image as given to :func:`explain`; it is preprocessed the same way.
    Deletion starts at the unmasked image's probability and sets the highest-ranked pixels to
    ``fill``; insertion starts from a blurred copy and ends at the unmasked image.
    """
    crop = loaded.crop(load_image(image))
    pixels = pixels_of(crop)
    _check_map(saliency, pixels)
    filled, start = fill_pixels(pixels, fill), blurred(pixels)
    ev = _Evaluator(loaded, chunk)
    shared = (ev.add(pixels), ev.add(filled), ev.add(start))
    plan = _plan_curves(ev, pixels, filled, start, saliency, steps)
    probs = ev.results()
    t = int(probs[shared[0]].argmax()) if target is None else class_index(loaded, target)
    deletion, insertion = plan.read(probs[:, t], CurveEnds(*(float(probs[i, t]) for i in shared)))
    return CurveResult(deletion, insertion, steps, fill)


def _check_map(saliency: np.ndarray, pixels: torch.Tensor) -> None:
    if np.shape(saliency) != tuple(pixels.shape[:2]):
        raise MicamError(f"The saliency map is {np.shape(saliency)}; the model-input crop is "
                         f"{tuple(pixels.shape[:2])}.")
    if not np.all(np.isfinite(saliency)):
        raise MicamError("The saliency map contains NaN or infinity.")


class TargetRanks:
    """The one definition of a flip, for anything holding the target's ranks (original, after removal)."""

    rank_original: int
    rank_remove: int

    @property
    def target_was_top1(self) -> bool:
        return self.rank_original == 1

    @property
    def flipped(self) -> bool | None:
        """The target lost top-1 when the region was removed; ``None`` (undefined) when it was not top-1."""
        return self.rank_remove != 1 if self.target_was_top1 else None


@dataclass
class KeepRemove(TargetRanks):
    """One map's counterfactual pair: the region kept (the rest filled) and removed (filled)."""

    name: str
    label: str
    keep_image: Image.Image
    remove_image: Image.Image
    top_keep: list[tuple[int, str, float]]
    top_remove: list[tuple[int, str, float]]
    p_original: float
    p_keep: float
    p_remove: float
    region_fraction: float
    rank_original: int  # the target's rank (1 = top-1) on the original image
    rank_keep: int  # ... on the keep image
    rank_remove: int  # ... on the remove image


@dataclass
class MethodResult(KeepRemove):
    """Counterfactuals and metrics of one map (a method or a baseline) for one image: its keep/remove pair
    and the scores."""

    p_explanation: float  # target probability on saliency x image
    p_paper_baseline: float  # target probability with every pixel of map > 0 filled
    curves: CurveResult
    road: RoadResult | None = None  # when the protocol runs ROAD


    @property
    def average_drop(self) -> float:
        """Chattopadhay et al.: ``100 * max(0, Y - O) / Y`` with O on saliency x image."""
        return 100.0 * max(0.0, self.p_original - self.p_explanation) / max(self.p_original, 1e-12)

    @property
    def increase(self) -> bool:
        """Chattopadhay et al.'s Increase in Confidence for one image: ``O > Y``."""
        return self.p_explanation > self.p_original

    @property
    def paper_drop(self) -> float:
        """The MI CAM authors' Drop %: ``100 * max(0, Y - P_keep) / Y`` (thresholded keep image)."""
        return 100.0 * max(0.0, self.p_original - self.p_keep) / max(self.p_original, 1e-12)

    @property
    def paper_increase(self) -> float:
        """The authors' Increase %: ``100 * max(0, P_keep - P_base) / P_keep`` (base: map > 0 filled)."""
        return 100.0 * max(0.0, self.p_keep - self.p_paper_baseline) / max(self.p_keep, 1e-12)

    def to_report(self) -> dict[str, Any]:
        def preds(items):
            return [{"index": i, "label": n, "probability": p} for i, n, p in items]

        return {
            "label": self.label, "region_fraction": self.region_fraction,
            "target_probability": {"original": self.p_original, "keep": self.p_keep,
                                   "remove": self.p_remove, "saliency_x_image": self.p_explanation},
            "keep_predictions": preds(self.top_keep), "remove_predictions": preds(self.top_remove),
            "target_rank": {"original": self.rank_original, "keep": self.rank_keep, "remove": self.rank_remove},
            "flipped_when_removed": self.flipped,
            "average_drop_pct": self.average_drop, "increase_in_confidence": self.increase,
            "paper_drop_pct": self.paper_drop, "paper_increase_pct": self.paper_increase,
            **{f"{kind}_auc": getattr(self.curves, f"{kind}_auc") for kind in self.curves.as_lists()},
            **{f"{kind}_curve": curve for kind, curve in self.curves.as_lists().items()},
            **(self.road.to_report() if self.road is not None else {}),
        }


@dataclass
class Faithfulness:
    """Counterfactual analysis of one explanation: one :class:`MethodResult` per map."""

    target: int
    target_label: str
    threshold: float
    fill: str
    steps: int
    results: dict[str, MethodResult]
    images_evaluated: int
    forward_calls: int
    top_original: list[tuple[int, str, float]] = field(default_factory=list)
    protocol: Protocol = field(default_factory=lambda: get_protocol(None))

    def labels(self) -> dict[str, str]:
        """The label of every map (methods and baselines)."""
        return {name: r.label for name, r in self.results.items()}

    def curves(self) -> dict[str, dict[str, list[float]]]:
        return {name: r.curves.as_lists() for name, r in self.results.items()}

    def road_curves(self) -> dict[str, dict[str, list[float]]]:
        """MoRF and LeRF curves of every map and the fractions removed (empty when the protocol has no ROAD)."""
        return {name: {"morf": r.road.morf.tolist(), "lerf": r.road.lerf.tolist(), "removed": list(r.road.removed)}
                for name, r in self.results.items() if r.road is not None}

    def to_report(self) -> dict[str, Any]:
        """Per-map facts for the JSON report, with the settings next to every number."""
        settings = {"protocol": self.protocol.name, "protocol_description": self.protocol.describe(),
                    "threshold": self.threshold, "fill": self.fill, "steps": self.steps,
                    "images_evaluated": self.images_evaluated, "forward_calls": self.forward_calls}
        return {name: {**r.to_report(), "removal_sentence": self.sentence(name), "settings": settings}
                for name, r in self.results.items()}

    def sentence(self, method: str, **style: Any) -> str:
        """What removing map ``method``'s region did to the target, in words (see :func:`removal_sentence`)."""
        return removal_sentence(self.results[method], self.target_label, self.threshold, **style)


def baseline_maps(size: tuple[int, int], lowres_shape: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """The honest baselines: a random map (seeded, at feature resolution, bilinear) and a centred Gaussian."""
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand((1, 1, *lowres_shape), generator=gen)
    random_map = minmax(F.interpolate(noise, size=size, mode="bilinear", align_corners=False)[0, 0])
    ys = torch.arange(h, dtype=torch.float32).view(-1, 1) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32).view(1, -1) - (w - 1) / 2
    sigma = 0.25 * min(h, w)
    centre = minmax(torch.exp(-(ys**2 + xs**2) / (2 * sigma**2)))
    return {"random": random_map.numpy(), "centre": centre.numpy()}


def rank_of(probs: torch.Tensor, index: int) -> int:
    """1-based rank of class ``index`` in ``probs`` (1 = top-1; classes with equal probability share a rank)."""
    return int((probs > probs[index]).sum()) + 1
