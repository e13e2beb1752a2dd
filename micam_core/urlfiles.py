"""Weights that timm fetches from a plain URL (not the Hub): streamed, capped and deadline-bound.

timm downloads such weights (``pretrained_cfg.url``, e.g. ``legacy_seresnet18.in1k``) with torch's
downloader: whole, with no size cap and no deadline. Here the file is streamed through
:func:`micam_core.hubhttp.download` into the folder where torch's and timm's downloaders keep it
(``<torch hub>/checkpoints/<file name>``), so an offline load finds it later; it stops as soon as it
passes the model limit or its deadline, and the partial file is deleted.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import torch

from .errors import ModelLoadError, shorten
from .hubfiles import LOAD_DEADLINE_S, MIN_RATE, _mb
from .hubhttp import HubError, download


def checkpoint(url: str, shown: str) -> Path:
    """Where torch's and timm's downloaders keep the weights at ``url``."""
    name = os.path.basename(urlsplit(url).path)
    if name in ("", ".", ".."):
        raise ModelLoadError(f"'{shorten(shown)}': its weights' address names no file.")
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def fetch(url: str, shown: str, max_bytes: int, expected: int | None) -> Path:
    """The weights at ``url`` in torch's hub cache (downloaded unless there), or a :class:`ModelLoadError`.

    The download stops at ``max_bytes`` or at its deadline: 25 s plus 1 s per 10 MB of ``expected`` bytes
    (the model's size counted before, else ``max_bytes``), as a Hub model's.
    """
    path = checkpoint(url, shown)
    if path.is_file():
        if path.stat().st_size > max_bytes:
            raise ModelLoadError(f"{shorten(shown)} has {_mb(path.stat().st_size)} of weights; "
                                 f"the limit here is {_mb(max_bytes)}.")
        return path
    host = urlsplit(url).hostname or "the server"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        download(url, partial, deadline_s=LOAD_DEADLINE_S + (expected or max_bytes) / MIN_RATE, max_bytes=max_bytes,
                 too_large=f"{host} sent more than the {_mb(max_bytes)} allowed for {path.name}",
                 late=f"{host} did not send {path.name} in {{s}} s", server=host)
    except HubError as err:
        raise ModelLoadError(f"Could not load '{shorten(shown)}': {err}.") from None
    os.replace(partial, path)
    return path
