"""Permalinks: every part of a view in URL query parameters, and back, validated.

A link holds no server-side state, so it survives restarts. Parsing never trusts a value: examples are
resolved only by exact lookup of a file stem in a dict built from the examples folder's listing (never
by joining a path), numbers must be finite and in range, choices must be allowed ids, and every value
echoed in a message is shortened and escaped for HTML and Markdown.

Settings (methods, upsampling, threshold, fill, steps, cmap, opacity) are parsed by
:func:`micam_core.settings.validate`, so links accept exactly what the widgets and the API accept;
pass ``methods`` to accept another list of method ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .errors import ModelLoadError
from .escape import markdown
from .models import normalize_spec
from .protocols import PROTOCOLS
from .registry import METHODS
from .settings import BUNDLED_SPEC, SETTINGS, SettingError, validate
from .settings import DEFAULTS as SETTING_DEFAULTS

PARAMS = ("model", "example", "layer", "target", "methods", "upsampling", "protocol", "threshold", "fill", "steps",
          "cmap", "opacity")
BY_PROTOCOL = ("threshold", "fill", "steps")  # absent from a link: the link's protocol's own value
DEFAULTS: dict[str, Any] = {"model": BUNDLED_SPEC, "example": None, "layer": None, "target": None,
                             **SETTING_DEFAULTS}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ECHO_CHARS = 80
MAX_VALUE_CHARS = 300  # longer values are refused before any parsing
MAX_NAME_CHARS = 120  # layer and class names
MAX_MESSAGES = 20
_LAYER = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Class names: letters (any script), digits, spaces and the punctuation real label sets use; no markup.
_CLASS_NAME = re.compile(r"^[\w .,'()\-/+:]+$")


def example_index(folder: str | Path) -> dict[str, Path]:
    """``{stem: path}`` for the image files directly in ``folder`` (the only way a link names an image)."""
    root = Path(folder)
    if not root.is_dir():
        return {}
    return {p.stem: p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """``value`` made safe to show in a message: control characters dropped, shortened, HTML and Markdown
    escaped, nothing auto-linked (see :func:`micam_core.escape.markdown`)."""
    return markdown(value, limit)


def build_query(state: Mapping[str, Any]) -> str:
    """The query string (no leading ``?``) for a view; ``None`` or empty values are left out.

    ``methods`` may be a sequence of ids (joined by commas); floats are written compactly.
    """
    pairs: list[tuple[str, str]] = []
    for key in PARAMS:
        text = _format(state.get(key))
        if text:
            pairs.append((key, text))
    return urlencode(pairs, quote_via=quote, safe=",:/")


def permalink(base_url: str, state: Mapping[str, Any]) -> str:
    """``base_url`` with the view's query string (any query already on ``base_url`` is replaced)."""
    query = build_query(state)
    base = base_url.split("?", 1)[0].split("#", 1)[0]
    return f"{base}?{query}" if query else base


def parse_query(query: Mapping[str, Any], examples: Mapping[str, Path], *,
                methods: Sequence[str] | None = None,
                defaults: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Validate a query (e.g. ``dict(gr.Request.query_params)``) into a view state and messages.

    The state has every key of :data:`PARAMS` (defaults where a parameter is absent or refused) plus
    ``example_path``: the example's file, found only by exact stem lookup in ``examples``. Each
    refused parameter adds one sentence to the messages (values echoed shortened and escaped).
    """
    state: dict[str, Any] = {**DEFAULTS, **(defaults or {})}
    methods = tuple(methods) if methods is not None else METHODS
    state["example_path"] = None
    messages: list[str] = []
    for key, raw in query.items():
        if key not in PARAMS:
            messages.append(f"Ignored the unknown link parameter '{echo(key, 40)}'.")
            continue
        value = _single(raw)
        if value is None or value.strip() == "":
            continue
        if len(value) > MAX_VALUE_CHARS:
            messages.append(f"Ignored '{key}': the value is {len(value)} characters long (at most "
                            f"{MAX_VALUE_CHARS}): '{echo(value)}'.")
            continue
        try:
            state[key] = _PARSERS[key](value.strip(), examples=examples, methods=methods)
        except ValueError as err:
            messages.append(f"Ignored '{key}': {err}")
    if _single(query.get("protocol")):  # a link naming a protocol: its own threshold, fill, steps unless given
        protocol = PROTOCOLS[state["protocol"]]
        state.update({k: getattr(protocol, k) for k in BY_PROTOCOL if not (_single(query.get(k)) or "").strip()})
    if state["example"] is not None:
        state["example_path"] = examples[state["example"]]
    if len(messages) > MAX_MESSAGES:
        messages = [*messages[:MAX_MESSAGES], f"... and {len(messages) - MAX_MESSAGES} more refused parameters."]
    return state, messages


# --- formatting -----------------------------------------------------------------------------------
def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value).strip()


def _single(raw: Any) -> str | None:
    """One string from a query value (a list gives its first item)."""
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
    return None if raw is None else str(raw)


# --- one parser per parameter; each raises ValueError with a sentence --------------------------------
def _model(value: str, **_: Any) -> str:
    try:
        spec = normalize_spec(value)
    except ModelLoadError:
        raise ValueError(f"'{echo(value)}' is not a model name or Hugging Face model id.") from None
    if spec.startswith("local-dir:"):
        raise ValueError("links cannot name models in local folders.")
    if spec.startswith("bundled:") and not re.fullmatch(r"bundled:[a-z0-9_]+", spec):
        raise ValueError(f"'{echo(value)}' is not a bundled model.")
    return spec


def _example(value: str, *, examples: Mapping[str, Path], **_: Any) -> str:
    if value not in examples:
        known = ", ".join(sorted(examples)) or "none"
        raise ValueError(f"there is no example called '{echo(value)}' (examples: {echo(known, 200)}).")
    return value


def _layer(value: str, **_: Any) -> str | None:
    if value.lower() == "auto":
        return None
    if len(value) > MAX_NAME_CHARS or not _LAYER.match(value):
        raise ValueError(f"'{echo(value)}' is not a layer name (letters, digits, '.', '_' and '-' only).")
    return value


def _target(value: str, **_: Any) -> int | str | None:
    if value.lower() in ("top-1", "top1", "auto", "predicted"):
        return None
    if value.isdigit():
        index = int(value) if len(value) <= 7 else -1
        if not 0 <= index < 1_000_000:
            raise ValueError(f"class index '{echo(value)}' is out of range.")
        return index
    if len(value) > MAX_NAME_CHARS or not _CLASS_NAME.match(value):
        raise ValueError(f"'{echo(value)}' is not a class index or class name.")
    return value


def _methods(value: str, *, methods: Sequence[str], **_: Any) -> tuple[str, ...]:
    chosen = _unique(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in methods]
    if unknown or not chosen:
        raise ValueError(f"unknown method '{echo(','.join(unknown) or value)}' (choose from {', '.join(methods)}).")
    return tuple(chosen)


def _setting(name: str):
    """A parser for setting ``name`` by the settings record's own validation."""

    def parse(value: str, **_: Any) -> Any:
        try:
            return validate(name, value)
        except SettingError:
            raise ValueError(f"'{echo(value)}' is not {SETTINGS[name].describe()}.") from None

    return parse


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


_PARSERS = {
    "model": _model, "example": _example, "layer": _layer, "target": _target, "methods": _methods,
    **{name: _setting(name) for name in ("upsampling", "protocol", "threshold", "fill", "steps", "cmap", "opacity")},
}
