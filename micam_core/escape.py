"""Text from visitors and model files, escaped once per target: plain text, Markdown, CSV, matplotlib.

* :func:`printable`: control characters dropped (every target starts from this);
* :func:`markdown`: shown literally in Markdown and HTML: punctuation escaped, nothing auto-linked;
* :func:`html_text`: shown literally in HTML that is not Markdown (the page's HTML blocks);
* :func:`csv_cell` / :func:`write_csv`: cells that a spreadsheet would read as a formula are prefixed;
* :data:`PLAIN_TEXT_RC`: matplotlib settings under which ``$`` is a dollar sign, not mathtext.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any

PLAIN_TEXT_RC = {"text.parse_math": False, "text.usetex": False}  # labels are never TeX or mathtext
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula (OWASP CSV injection)
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~$])")
# What GFM turns into links without any markup: schemes, www., e-mail addresses.
_AUTOLINK = (("://", "&#58;//"), ("www.", "www&#46;"), ("WWW.", "WWW&#46;"), ("@", "&#64;"))


def printable(value: Any) -> str:
    """``value`` as a string without control or other non-printable characters (spaces kept)."""
    return "".join(ch for ch in str(value) if ch.isprintable())


def printable_within(value: Any, limit: int | None = None) -> str:
    """:func:`printable`, shortened to ``limit`` characters (then ``...``)."""
    text = printable(value)
    return text[:limit] + "..." if limit is not None and len(text) > limit else text


def markdown(value: Any, limit: int | None = None) -> str:
    """``value`` shown literally in Markdown (and HTML): printable, shortened, escaped, never auto-linked."""
    text = _MARKDOWN.sub(r"\\\1", printable_within(value, limit))
    text = html.escape(text, quote=True)
    for needle, entity in _AUTOLINK:
        text = text.replace(needle, entity)
    return text


def html_text(value: Any, limit: int | None = None) -> str:
    """``value`` shown literally in HTML (attribute values too): printable, shortened, escaped."""
    return html.escape(printable_within(value, limit), quote=True)


def csv_cell(value: Any) -> Any:
    """A text cell made inert for spreadsheets (``'`` before ``= + - @``); other values unchanged."""
    if not isinstance(value, str):
        return value
    text = printable(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_csv(frame: Any, path: str | os.PathLike) -> None:
    """Write a pandas ``DataFrame`` as CSV with every text cell passed through :func:`csv_cell`."""
    safe = frame.copy()
    for column in safe.columns:
        if getattr(safe[column].dtype, "kind", "O") not in "biufcmM":  # text (object or string dtype)
            safe[column] = safe[column].map(csv_cell)
    safe.to_csv(path, index=False)
