"""Permalinks: a :class:`~micam_core.view.View` in URL query parameters, and back.

A link holds no server-side state, so it survives restarts. It is parsed by :func:`micam_core.view.parse`
(as a link: overlong values, local model folders and markup in class names refused), so links accept
exactly what the widgets, the API and the command line accept, with the same sentences. Examples are
resolved only by exact lookup of a file stem in a dict built from the examples folder's listing (never
by joining a path), and every value echoed in a message is shortened and escaped for HTML and Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from .escape import markdown
from .settings import SETTINGS
from .view import PARTS, View, parse

PARAMS: tuple[str, ...] = tuple(View().as_dict())  # parts, then every setting (plus chosen methods' parameters)
DEFAULTS: dict[str, Any] = View().as_dict()
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ECHO_CHARS = 80
MAX_MESSAGES = 20


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
    """The query string (no leading ``?``) for a view (a :class:`View` or a mapping); empty values left out.

    ``methods`` may be a sequence of ids (joined by commas); floats are written compactly.
    """
    items = state.as_dict() if isinstance(state, View) else state
    order = [*PARAMS, *(k for k in items if k not in PARAMS)]
    pairs = [(key, text) for key in order if (text := _format(items.get(key)))]
    return urlencode(pairs, quote_via=quote, safe=",:/")


def permalink(base_url: str, state: Mapping[str, Any]) -> str:
    """``base_url`` with the view's query string (any query already on ``base_url`` is replaced)."""
    query = build_query(state)
    base = base_url.split("?", 1)[0].split("#", 1)[0]
    return f"{base}?{query}" if query else base


def parse_query(query: Mapping[str, Any], examples: Mapping[str, Path]) -> tuple[dict[str, Any], list[str]]:
    """Validate a query (e.g. ``dict(gr.Request.query_params)``) into a view state and messages.

    The state is :meth:`View.as_dict` of the parsed view (defaults where a parameter is absent or
    refused) plus ``example_path``: the example's file, found only by exact stem lookup in ``examples``.
    Each refused parameter adds one sentence to the messages (values echoed shortened and escaped).
    """
    known = {k: _single(v) for k, v in query.items() if k in PARTS or k in SETTINGS}
    messages = [f"Ignored the unknown link parameter '{echo(key, 40)}'." for key in query if key not in known]
    view, refused = parse(known, examples=examples, link=True)
    messages += [f"Ignored: {echo(message, 300)}" for message in refused]
    state = {**view.as_dict(), "example_path": examples[view.example] if view.example is not None else None}
    if len(messages) > MAX_MESSAGES:
        messages = [*messages[:MAX_MESSAGES], f"... and {len(messages) - MAX_MESSAGES} more refused parameters."]
    return state, messages


def view_of(state: Mapping[str, Any]) -> View:
    """The view of a state as :func:`parse_query` returns it (values already checked)."""
    return View().replace(**{k: v for k, v in state.items() if k != "example_path"})


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
