"""Live Hugging Face Hub look-ups: search timm image classifiers, and check a model before downloading it.

Everything the Hub answers is treated as untrusted: ids must look like ids, numbers must be finite
and plausible, a config must name an architecture timm knows. When the Hub cannot be reached
(``HF_HUB_OFFLINE=1``, no network, a timeout) the functions return a clear message instead of
raising, and callers keep their curated list.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .hubhttp import HubError, config_dict, endpoint_url, get_bytes, get_json

log = logging.getLogger(__name__)

HUB_UNREACHABLE = ("The Hugging Face Hub cannot be reached (offline or no network), so live search and checks "
                   "are unavailable; the curated models still work.")
MAX_LIMIT = 100
MAX_QUERY_CHARS = 100
MAX_CONFIG_BYTES = 1 << 20
MAX_COUNT = 10**15  # larger "downloads" or parameter counts are not believed
MAX_CLASSES = 100_000
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
               "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
PROBE_TIMEOUT_S, PROBE_MEMORY_S = 2.0, 30.0
SEARCH_DEADLINE_S = 8.0  # a search gives up after this (connect, read and the whole body)
METADATA_DEADLINE_S = 10.0  # config.json, the file list: each
SEARCH_CACHE_S, SEARCH_CACHE_ITEMS = 60.0, 256  # answers kept per query (failures a sixth as long)
MAX_SEARCH_BYTES = 4 << 20
MAX_INFO_BYTES = 8 << 20
SEARCH_EXPAND = ("downloads", "safetensors", "pipeline_tag", "library_name")
_SEARCHES: dict[tuple, tuple[float, SearchResult]] = {}
_UNREACHABLE: dict[tuple[str, int], float] = {}  # (host, port) -> until when it counts as unreachable
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]{0,95}/[\w.\-]{1,96}$")


@dataclass(frozen=True)
class HubModel:
    """One search hit: the repository id, its downloads (last 30 days) and its weights' size, where known."""

    id: str
    downloads: int | None
    weight_bytes: int | None
    parameters: int | None

    @property
    def spec(self) -> str:
        return f"hf-hub:{self.id}"

    def describe(self) -> str:
        """A one-line label for a picker, e.g. ``timm/resnet50.a1_in1k (1.2M downloads, 98 MB)``."""
        facts = []
        if self.downloads is not None:
            facts.append(f"{_short_count(self.downloads)} downloads")
        if self.weight_bytes is not None:
            facts.append(f"{self.weight_bytes / 2**20:.0f} MB")
        return f"{self.id} ({', '.join(facts)})" if facts else self.id


@dataclass
class SearchResult:
    """Search hits and, when something went wrong or was left out, a sentence for the user."""

    models: list[HubModel] = field(default_factory=list)
    message: str | None = None
    skipped: int = 0  # hits refused as malformed


@dataclass
class Precheck:
    """What a look at ``config.json`` and the file list says about a Hub model, before any weights."""

    repo_id: str
    ok: bool
    message: str
    architecture: str | None = None
    num_classes: int | None = None
    input_size: tuple[int, int, int] | None = None
    weight_bytes: int | None = None


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` switches the Hub off."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hub opens within ``timeout`` s (a failure is remembered for a while).

    The Hub client retries network errors with back-off (about 20 s in all); this probe lets an
    unreachable Hub fail in at most ``timeout`` seconds instead.
    """
    from huggingface_hub import constants

    parts = urlsplit(endpoint or constants.ENDPOINT)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    now = time.monotonic()
    if _UNREACHABLE.get((host, port), 0.0) > now:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as err:
        log.info("the Hub at %s:%s cannot be reached: %s", host, port, err)
        _UNREACHABLE[(host, port)] = now + PROBE_MEMORY_S
        return False


def search_models(query: str = "", limit: int = 20, *, endpoint: str | None = None) -> SearchResult:
    """timm image classifiers on the Hub matching ``query``, most downloaded first (at most ``limit``).

    Gives up after :data:`SEARCH_DEADLINE_S` with a sentence saying so; answers are kept for
    :data:`SEARCH_CACHE_S` per query, so typing the same letters again asks the Hub nothing.
    """
    if hub_offline() or not hub_reachable(endpoint):
        return SearchResult(message=HUB_UNREACHABLE)
    query = " ".join((query or "").split())[:MAX_QUERY_CHARS]
    limit = max(1, min(int(limit), MAX_LIMIT))
    key = (query.lower(), limit, endpoint_url(endpoint))
    cached = _SEARCHES.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    result = _search(query, limit, endpoint)
    _SEARCHES[key] = (time.monotonic() + (SEARCH_CACHE_S if result.models else SEARCH_CACHE_S / 6), result)
    while len(_SEARCHES) > SEARCH_CACHE_ITEMS:
        _SEARCHES.pop(next(iter(_SEARCHES)))
    return result


def _search(query: str, limit: int, endpoint: str | None) -> SearchResult:
    params = [("filter", "timm"), ("pipeline_tag", "image-classification"), ("sort", "downloads"),
              ("direction", "-1"), ("limit", str(limit))] + [("expand", e) for e in SEARCH_EXPAND]
    if query:
        params.append(("search", query))
    try:
        hits = get_json(f"{endpoint_url(endpoint)}/api/models", params, deadline_s=SEARCH_DEADLINE_S,
                        max_bytes=MAX_SEARCH_BYTES)
    except HubError as err:
        return SearchResult(message=_failure(err, "search the Hub"))
    if not isinstance(hits, list):
        return SearchResult(message="Could not search the Hub: the Hub's answer could not be read.")
    models, skipped = [], 0
    for hit in hits[:limit]:
        model = _hub_model(hit)
        if model is None:
            skipped += 1
        else:
            models.append(model)
    if not models and skipped:
        return SearchResult(message="Could not search the Hub: the Hub's answer could not be read.", skipped=skipped)
    message = None if models else f"No timm image classifier on the Hub matches '{_plain(query)}'."
    if skipped:
        log.warning("skipped %d malformed Hub search hits", skipped)
    return SearchResult(models=models, message=message, skipped=skipped)


def precheck(repo_id: str, max_bytes: int = 1024 * 2**20, *, endpoint: str | None = None,
             timeout: float = METADATA_DEADLINE_S) -> Precheck:
    """Check a Hub model before downloading its weights: timm config, architecture, classes, input, size."""
    repo_id = (repo_id or "").strip().removeprefix("hf-hub:")
    shown = _plain(repo_id)
    if not _REPO_ID.match(repo_id):
        return Precheck(shown, False, f"'{shown}' is not a Hugging Face model id (expected org/name).")
    if hub_offline() or not hub_reachable(endpoint):
        return Precheck(repo_id, False, HUB_UNREACHABLE)
    try:
        config = _read_config(repo_id, endpoint, timeout)
        facts = _config_facts(repo_id, config)
        weight_bytes = _weight_bytes(repo_id, endpoint, timeout)
    except _RefusedError as err:
        return Precheck(repo_id, False, str(err))
    except Exception as err:
        return Precheck(repo_id, False, _failure(err, f"check '{repo_id}'"))
    check = Precheck(repo_id, True, "", **facts, weight_bytes=weight_bytes)
    if weight_bytes is not None and weight_bytes > max_bytes:
        check.ok = False
        check.message = (f"{repo_id} has {weight_bytes / 2**20:.0f} MB of weights; the limit here is "
                         f"{max_bytes / 2**20:.0f} MB.")
    else:
        size = f"{weight_bytes / 2**20:.0f} MB of weights" if weight_bytes is not None else "weights of unknown size"
        check.message = (f"{repo_id}: timm {check.architecture}, {check.num_classes} classes, input "
                         f"{check.input_size[2]}x{check.input_size[1]}, {size}.")
    return check


class _RefusedError(Exception):
    """A Hub answer this module will not use (message for the user)."""


# --- search helpers ---------------------------------------------------------------------------------
def _hub_model(hit: Any) -> HubModel | None:
    """A :class:`HubModel` from one search hit (a JSON object), or ``None`` when its id is not a plausible id."""
    repo_id = hit.get("id") if isinstance(hit, dict) else None
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id):
        return None
    params, weight_bytes = None, None
    safetensors = hit.get("safetensors")
    if isinstance(safetensors, dict):
        params = _count(safetensors.get("total"))
        weight_bytes = _bytes_of(safetensors.get("parameters"))
    return HubModel(id=repo_id, downloads=_count(hit.get("downloads")), weight_bytes=weight_bytes,
                    parameters=params)


def _count(value: Any) -> int | None:
    """A believable non-negative count, else ``None`` (no NaN, infinities, strings, negatives or 1e300)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return None
    return int(value) if 0 <= value <= MAX_COUNT else None


def _bytes_of(parameters: Any) -> int | None:
    """Bytes of weights from a safetensors ``{dtype: count}`` summary (``None`` when any entry is odd)."""
    if not isinstance(parameters, dict) or not parameters:
        return None
    total = 0
    for dtype, count in parameters.items():
        number = _count(count)
        if number is None or dtype not in DTYPE_BYTES:
            return None
        total += number * DTYPE_BYTES[dtype]
    return total


def _short_count(n: int) -> str:
    for unit, scale in (("B", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


# --- precheck helpers -------------------------------------------------------------------------------
def _read_config(repo_id: str, endpoint: str | None, timeout: float) -> dict[str, Any]:
    """``config.json`` of the repository (only that file, at most 1 MB, within ``timeout``), parsed."""
    try:
        body = get_bytes(f"{endpoint_url(endpoint)}/{repo_id}/resolve/main/config.json", deadline_s=timeout,
                         max_bytes=MAX_CONFIG_BYTES)
    except HubError as err:
        if err.status == 404 and err.code != "RepoNotFound":
            raise _RefusedError(f"{repo_id} has no config.json, so it is not a timm model.") from None
        raise
    return config_dict(body, repo_id, _RefusedError)


def _config_facts(repo_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """Architecture (known to timm), number of classes and input size from a timm ``config.json``."""
    import timm

    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    arch = config.get("architecture") or pretrained.get("architecture")
    if not isinstance(arch, str) or not arch:
        raise _RefusedError(f"{repo_id} is not a timm model: its config.json names no timm architecture.")
    if len(arch) > 100 or not timm.is_model(arch.split(".")[0]):
        raise _RefusedError(f"{repo_id}: timm {timm.__version__} does not know the architecture '{_plain(arch)}'.")
    from .errors import ModelLoadError
    from .model_config import check_config

    try:
        check_config(config, repo_id)  # the same bounds as before building: input size, crop, mean/std, labels
    except ModelLoadError as err:
        raise _RefusedError(str(err)) from None
    classes = _count(config.get("num_classes", pretrained.get("num_classes")))
    if classes is None or not 1 <= classes <= MAX_CLASSES:
        raise _RefusedError(f"{repo_id}: config.json gives no believable number of classes.")
    size = pretrained.get("input_size") or config.get("input_size") or [3, 224, 224]
    if not isinstance(size, list) or len(size) != 3 or any(_count(v) is None for v in size):
        raise _RefusedError(f"{repo_id}: config.json gives no believable input size.")
    return {"architecture": arch, "num_classes": classes, "input_size": tuple(int(v) for v in size)}


def _weight_bytes(repo_id: str, endpoint: str | None, timeout: float) -> int | None:
    """Size of the largest weight file, from the file list with sizes (nothing downloaded)."""
    sizes = [_count(size) for name, size in file_sizes(repo_id, endpoint=endpoint, timeout=timeout)
             if name.endswith(WEIGHT_SUFFIXES)]
    if not sizes:
        raise _RefusedError(f"{repo_id} has no weights file (.safetensors, .bin or .pth).")
    if any(s is None for s in sizes):
        raise _RefusedError(f"{repo_id}: the Hub gives no believable size for its weights.")
    return max(s for s in sizes if s is not None)


def file_sizes(repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
               timeout: float = METADATA_DEADLINE_S) -> list[tuple[str, Any]]:
    """``(file name, size as the Hub states it)`` of every file of a model repository (:class:`HubError`)."""
    path = f"/api/models/{repo_id}" + (f"/revision/{revision}" if revision else "")
    info = get_json(endpoint_url(endpoint) + path, [("blobs", "true")], deadline_s=timeout,
                    max_bytes=MAX_INFO_BYTES)
    siblings = info.get("siblings") if isinstance(info, dict) else None
    if not isinstance(siblings, list):
        raise HubError("the Hub's answer could not be read")
    return [(str(f.get("rfilename", "")), f.get("size")) for f in siblings if isinstance(f, dict)]


# --- errors -----------------------------------------------------------------------------------------
def _failure(err: Exception, doing: str) -> str:
    """A sentence for a failed Hub call: no answer in time, an HTTP error, not found, unreachable, unreadable."""
    name = type(err).__name__
    log.info("could not %s: %s: %s", doing, name, err)
    if isinstance(err, HubError):
        if err.status in (401, 403, 404):
            return f"Could not {doing}: no such public model on the Hub."
        if "cannot be reached" in str(err):
            return HUB_UNREACHABLE
        return f"Could not {doing}: {err}."
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return f"Could not {doing}: no such public model on the Hub."
    if name in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
        return f"Could not {doing}: the repository has no config.json, so it is not a timm model."
    if name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError") or _is_connection_error(err):
        return HUB_UNREACHABLE
    if isinstance(err, (KeyError, TypeError, ValueError, AttributeError)):
        return f"Could not {doing}: the Hub's answer could not be read."
    return f"Could not {doing}: {name}."


def _is_connection_error(err: BaseException) -> bool:
    while err is not None:
        name = type(err).__name__
        if any(word in name for word in ("Connect", "Timeout", "Network", "Proxy")) or isinstance(err, OSError):
            return True
        err = err.__cause__ or err.__context__
    return False


def _plain(text: str, limit: int = 80) -> str:
    """``text`` for a message: printable characters only, no markup, shortened."""
    import html

    text = "".join(ch for ch in str(text) if ch.isprintable())
    return html.escape(text[:limit] + ("..." if len(text) > limit else ""), quote=True)
