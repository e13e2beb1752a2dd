"""Hub requests with deadlines and size caps: connect, read and the whole body, in one place.

``huggingface_hub`` waits without limit by default (``timeout=None``) and retries; a Hub that hangs or
drips one byte a second kept a search or a precheck busy for minutes. Every metadata request here
runs in a worker thread that the caller waits on for at most ``deadline_s``; the worker itself stops
at its read timeout, at the deadline (checked between chunks) or as soon as the body passes
``max_bytes``. Failures are :class:`HubError` with a sentence saying what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONNECT_S = 5.0
READ_S = 10.0  # a download's longest wait for its next bytes
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="micam-hub")


class HubError(Exception):
    """A Hub request that failed: ``str(err)`` says what happened; ``status`` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def endpoint_url(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def get_bytes(url: str, params: Any = None, *, deadline_s: float, max_bytes: int) -> bytes:
    """The body of ``GET url``, or :class:`HubError` (no answer in ``deadline_s``, an HTTP error, too large)."""
    future = _POOL.submit(_fetch, url, params, deadline_s, max_bytes, time.monotonic() + deadline_s)
    try:
        return future.result(timeout=deadline_s + 0.5)
    except FutureTimeout:
        raise HubError(f"the Hub did not answer in {deadline_s:.0f} s") from None


def get_json(url: str, params: Any = None, *, deadline_s: float, max_bytes: int) -> Any:
    """The JSON body of ``GET url`` (NaN and infinities allowed; the caller checks every value)."""
    body = get_bytes(url, params, deadline_s=deadline_s, max_bytes=max_bytes)
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise HubError("the Hub's answer could not be read (not JSON)") from None


def config_dict(body: bytes, shown: str, error: type[Exception]) -> dict:
    """A ``config.json`` body as a dict, or ``error`` with a sentence naming ``shown``."""
    try:
        config = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise error(f"{shown}: config.json is not valid JSON.") from None
    if not isinstance(config, dict):
        raise error(f"{shown}: config.json is not a JSON object.")
    return config


def _fetch(url: str, params: Any, deadline_s: float, max_bytes: int, deadline: float) -> bytes:
    import httpx

    timeout = httpx.Timeout(connect=min(CONNECT_S, deadline_s), read=deadline_s, write=deadline_s, pool=deadline_s)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True) as client, client.stream(
                "GET", url, params=params, headers={"user-agent": "micam_core"}) as response:
            if response.status_code >= 400:
                raise HubError(f"the Hub answered with an error (HTTP {response.status_code})",
                               response.status_code, response.headers.get("x-error-code"))
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise HubError(f"the Hub's answer is larger than {_size(max_bytes)}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():  # as they arrive: the deadline is checked on every one
                size += len(chunk)
                if size > max_bytes:
                    raise HubError(f"the Hub's answer is larger than {_size(max_bytes)}")
                if time.monotonic() > deadline:
                    raise HubError(f"the Hub did not answer in {deadline_s:.0f} s")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException:
        raise HubError(f"the Hub did not answer in {deadline_s:.0f} s") from None
    except httpx.HTTPError as err:
        log.info("Hub request failed: %s: %s", type(err).__name__, err)
        raise HubError("the Hugging Face Hub cannot be reached") from None


def download(url: str, path: Path, *, deadline_s: float, max_bytes: int, too_large: str, late: str,
             server: str = "the Hub") -> str:
    """Stream ``GET url`` into ``path``; the body's sha256, or :class:`HubError` with ``path`` deleted.

    Stops as soon as the body passes ``max_bytes`` (``too_large`` says so) or ``deadline_s`` passes
    (``late``, with ``{s}`` for the seconds); a read waits at most :data:`READ_S`. ``server`` names who
    answers in the other sentences (an HTTP error, no answer, unreachable).
    """
    future = _POOL.submit(_download, url, path, deadline_s, max_bytes, too_large, late, server)
    try:
        return future.result(timeout=deadline_s + READ_S + 1.0)
    except FutureTimeout:  # the worker stops at its next read timeout and deletes the file itself
        raise HubError(late.format(s=f"{deadline_s:.0f}")) from None


def _download(url: str, path: Path, deadline_s: float, max_bytes: int, too_large: str, late: str,
              server: str) -> str:
    import httpx

    deadline = time.monotonic() + deadline_s
    timeout = httpx.Timeout(connect=min(CONNECT_S, deadline_s), read=min(READ_S, deadline_s), write=READ_S,
                            pool=READ_S)
    digest, size = hashlib.sha256(), 0
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, trust_env=True) as client, client.stream(
                "GET", url, headers={"user-agent": "micam_core"}) as response, open(path, "wb") as out:
            if response.status_code >= 400:
                raise HubError(f"{server} answered with an error (HTTP {response.status_code})",
                               response.status_code, response.headers.get("x-error-code"))
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise HubError(too_large)
            for chunk in response.iter_bytes():  # as they arrive: the deadline is checked on every one
                size += len(chunk)
                if size > max_bytes:
                    raise HubError(too_large)
                if time.monotonic() > deadline:
                    raise HubError(late.format(s=f"{deadline_s:.0f}"))
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()
    except BaseException as err:
        path.unlink(missing_ok=True)  # nothing partial or oversized stays on disk
        if isinstance(err, httpx.TimeoutException):
            raise HubError(f"{server} did not answer in {READ_S:.0f} s") from None
        if isinstance(err, httpx.HTTPError):
            log.info("download failed: %s: %s", type(err).__name__, err)
            raise HubError(f"{'the Hugging Face Hub' if server == 'the Hub' else server} cannot be reached") from None
        raise


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n // 2**10} kB"
