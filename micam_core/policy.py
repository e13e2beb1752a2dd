"""What a server allows its visitors, read from the environment in one place."""

from __future__ import annotations

import math
import os

from .images import MAX_FILE_BYTES, MAX_PIXELS
from .models import LoadedModel, ModelCache


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if math.isfinite(value) and value > 0 else default


def local_models_allowed() -> bool:
    """Visitors may load ``local-dir:`` specs only where ``MICAM_ALLOW_LOCAL_MODELS=1``."""
    return os.environ.get("MICAM_ALLOW_LOCAL_MODELS", "0").strip() == "1"


def private_urls_allowed() -> bool:
    """The MCP tool fetches image URLs on private or loopback addresses only where ``MICAM_ALLOW_PRIVATE_URLS=1``."""
    return os.environ.get("MICAM_ALLOW_PRIVATE_URLS", "0").strip() == "1"


def load_timeout() -> float:
    """Seconds a visitor's model load may take (``MICAM_LOAD_TIMEOUT``, default 180)."""
    return _env_number("MICAM_LOAD_TIMEOUT", 180.0)


def max_model_bytes() -> int:
    """Largest model a visitor may load (``MICAM_MAX_MODEL_MB``, default 1024 MB of weights)."""
    return int(_env_number("MICAM_MAX_MODEL_MB", 1024.0) * 2**20)


def max_extra_passes() -> int:
    """Most masked forward passes one request may spend on Score-CAM (``MICAM_MAX_EXTRA_PASSES``, default 4096)."""
    return int(_env_number("MICAM_MAX_EXTRA_PASSES", 4096))


def cache_kwargs() -> dict:
    """The policy arguments of :meth:`ModelCache.get`."""
    return {"allow_local": local_models_allowed(), "timeout": load_timeout(), "max_bytes": max_model_bytes()}


def get_model(cache: ModelCache, spec: str) -> LoadedModel:
    """A model from ``cache``, honouring the local-folder switch, the size limit and the load deadline."""
    return cache.get(spec, **cache_kwargs())


def limits_note() -> str:
    """One sentence stating the limits a visitor meets."""
    local = "allowed" if local_models_allowed() else "not accepted from visitors"
    return (f"Limits: images up to {MAX_FILE_BYTES // 2**20} MB and {MAX_PIXELS // 10**6} megapixels "
            f"(larger ones are refused, not shrunk); models up to {max_model_bytes() // 2**20} MB of weights, "
            f"loaded as safetensors or weights-only, never running repository code; `local-dir:` models {local}.")


# What a model's config may ask for (Hub, local and cached models; checked before the model is built).
INPUT_SIDE = (32, 448)  # pixels a side of the model input; 1024 took +2.5 GB and 45x the time (bench/memory.py)
CROP_PCT = (0.5, 1.25)  # share of the resized image the centre crop keeps (timm: 0.875 to 1.15)
MEAN_RANGE = (0.0, 1.0)  # per-channel normalisation mean, on pixels scaled to [0, 1]
STD_RANGE = (0.01, 10.0)  # per-channel normalisation std (timm: 0.14 to 1.0)
MAX_CLASSES = 120_000  # timm's largest head has 115,217 classes
MAX_LABEL_CHARS = 200  # one class name or description
