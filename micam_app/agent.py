"""The MCP tool ``explain`` for agents: the image as a data: URI or an http(s) URL, the answer as JSON text.

Gradio's MCP server hands a tool's string output to the client as it is, so one JSON string is what an
agent receives (a dict or several outputs would arrive as a Python repr). The image argument is plain
text that we read ourselves, so every refusal is one of our sentences, never Gradio's.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import gradio as gr

from micam_core import BUNDLED_SPEC, DEFAULTS, MicamError, policy
from micam_core.errors import shorten
from micam_core.images import MAX_FILE_BYTES
from micam_core.report import build_report

from . import views
from .api import args_doc, run
from .handlers import fail

FETCH_TIMEOUT_S = 15.0
EXAMPLE_URI = "data:image/jpeg;base64,/9j/4AAQSkZJRg..."


def explain(image: str, model: str = BUNDLED_SPEC, layer: str = views.AUTO_LAYER, target: str = views.TOP1,
            upsampling: str = DEFAULTS["upsampling"], threshold: float = DEFAULTS["threshold"],
            fill: str = DEFAULTS["fill"], steps: float = DEFAULTS["steps"],
            methods: str = ",".join(DEFAULTS["methods"])) -> str:
    settings = {"upsampling": upsampling, "threshold": threshold, "fill": fill, "steps": steps,
                "cmap": DEFAULTS["cmap"], "opacity": DEFAULTS["opacity"], "methods": methods}
    try:
        loaded, exp, faith, view = run(image_bytes(image), model, layer, target, settings)
    except Exception as err:
        raise fail(err, for_page=False) from None
    report = build_report(loaded, exp, counterfactuals=faith.to_report(), settings=view.chosen_settings())
    return json.dumps(report, default=_plain)


IMAGE_TEXT = (f'the image as a data: URI (e.g. "{EXAMPLE_URI}") or an http(s) URL of a JPEG, PNG, WebP, ... file '
              "(at most 20 MB and 40 megapixels); a file path cannot reach the server.")
explain.__doc__ = f"""Explain one image with MI CAM and other CAM methods; answers with a JSON faithfulness report.

    Args:
{args_doc(IMAGE_TEXT, display=False)}

    Returns:
        JSON text: model, revision, layer, target, top-5 predictions, settings, and per method and baseline its
        formula, Average Drop, deletion and insertion AUCs and curves, and the predictions with the region kept
        and removed.
    """


def image_bytes(image: str | None) -> bytes:
    """The bytes of a data: URI or of an http(s) URL; anything else is refused with a sentence."""
    text = (image or "").strip()
    if not text:
        raise MicamError(f"No image given: send a data: URI ({EXAMPLE_URI}) or an http(s) URL.")
    if text[:5].lower() == "data:":
        return _data_uri(text)
    if text.lower().startswith(("http://", "https://")):
        return fetch(text)
    raise MicamError(f"The image must be a data: URI ({EXAMPLE_URI}) or an http(s) URL, not "
                     f"'{shorten(text)}'; a file path on your machine cannot reach this server, so encode "
                     "the file as a data: URI.")


def _data_uri(text: str) -> bytes:
    header, comma, payload = text.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise MicamError(f"The data: URI must be base64-encoded, like {EXAMPLE_URI}")
    if len(payload) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise MicamError(f"The image is larger than {MAX_FILE_BYTES // 2**20} MB.")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MicamError("The data: URI's payload is not valid base64.") from None


def fetch(url: str) -> bytes:
    """GET ``url`` (http or https, a public address unless the server allows others), at most 20 MB."""
    opener = urllib.request.build_opener(_CheckedRedirects())
    _check_address(url)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "micam-explorer"}),
                         timeout=FETCH_TIMEOUT_S) as response:
            data = response.read(MAX_FILE_BYTES + 1)
    except urllib.error.HTTPError as err:
        raise MicamError(f"The image URL answered HTTP {err.code} ({err.reason}): '{shorten(url)}'.") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise MicamError(f"Could not fetch the image at '{shorten(url)}' ({shorten(str(reason))}); check that "
                         "the URL is public and reachable, or send the image as a data: URI.") from None
    if len(data) > MAX_FILE_BYTES:
        raise MicamError(f"The image at '{shorten(url)}' is larger than {MAX_FILE_BYTES // 2**20} MB.")
    return data


def _check_address(url: str) -> None:
    """Refuse URLs whose host resolves to a private, loopback or link-local address (unless allowed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MicamError(f"'{shorten(url)}' is not an http(s) URL with a host name.")
    if policy.private_urls_allowed():
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as err:
        raise MicamError(f"Could not fetch the image at '{shorten(url)}': the host name does not resolve "
                         f"({shorten(str(err))}).") from None
    if any(not ipaddress.ip_address(info[4][0].split("%")[0]).is_global for info in infos):
        raise MicamError(f"'{shorten(url)}' points to a private or local address; this server only fetches "
                         "images from public addresses.")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another public http(s) address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_address(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _text(value: Any) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays in the report as plain JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def components() -> tuple[list[gr.components.Component], gr.components.Component]:
    """Hidden text inputs (the image too: we read it) and the one JSON text output."""
    names = ("image", "model", "layer", "target", "upsampling", "threshold", "fill", "steps", "methods")
    defaults = ("", BUNDLED_SPEC, views.AUTO_LAYER, views.TOP1, *(_text(DEFAULTS[n]) for n in names[4:]))
    return [gr.Textbox(value=d, label=n) for n, d in zip(names, defaults)], gr.Textbox(label="report (JSON)")
