"""Which of a browser session's runs is the newest: Explain (maps, then the counterfactual panel in the same event)
and the panel alone (a counterfactual setting changed). An older run stops after its current stage."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr


@dataclass
class Page:
    """One browser session's runs: the newest panel and Explain, and panel settings asked for during the maps."""

    panel: int = -1
    explain: int = -1
    mapping: bool = False  # its maps are being computed (the page has not got the new session yet)
    deferred: dict[str, Any] | None = None  # panel settings changed meanwhile: that explanation's panel takes them


class Runs:
    """The newest runs of each browser session (at most ``max_sessions``, least recently used dropped).

    Explain's event computes the maps and goes on to the panel: a newer Explain stops it (after its maps, or after
    its panel's current stage); a changed panel setting stops its panel. A panel setting changed while the maps are
    computed cannot be run on the page's session (it still holds the old explanation): it is handed to the
    Explain run instead (:meth:`defer`), whose panel then takes it.
    """

    def __init__(self, max_sessions: int = 4096) -> None:
        self.max_sessions = max_sessions
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._count = itertools.count()
        self._lock = threading.Lock()

    def _page(self, key: str) -> Page:
        page = self._pages.setdefault(key, Page())
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_sessions:
            self._pages.popitem(last=False)
        return page

    def _bump(self, request: gr.Request | None, explain: bool) -> Callable[[], bool]:
        key = getattr(request, "session_hash", None)
        if key is None:
            return lambda: True
        with self._lock:
            page = self._page(key)
            token = page.panel = next(self._count)
            if explain:
                page.explain = token
        if explain:
            return lambda: self._pages.get(key, Page()).explain == token
        return lambda: self._pages.get(key, Page()).panel == token

    def start(self, request: gr.Request | None) -> Callable[[], bool]:
        """Make a new panel run the session's newest; returns "is it still the newest?" (always, without a session)."""
        return self._bump(request, explain=False)

    def start_explain(self, request: gr.Request | None) -> Callable[[], bool]:
        """A new Explain (its panel's runs and any older one's stop); returns "is it still the newest Explain?"."""
        return self._bump(request, explain=True)

    def begin_maps(self, request: gr.Request | None) -> Callable[[], bool]:
        """Explain's event starts computing the maps (the button already superseded the older runs); returns "is
        it still the newest Explain?"."""
        key = getattr(request, "session_hash", None)
        if key is None:
            return lambda: True
        with self._lock:
            page = self._page(key)
            page.mapping, page.deferred, token = True, None, page.explain
        return lambda: self._pages.get(key, Page()).explain == token

    def maps_done(self, request: gr.Request | None) -> dict[str, Any]:
        """The maps are done (or failed): the panel settings deferred meanwhile, taken ({} if none)."""
        key = getattr(request, "session_hash", None)
        with self._lock:
            page = self._pages.get(key) if key is not None else None
            if page is None:
                return {}
            deferred, page.mapping, page.deferred = page.deferred or {}, False, None
        return deferred

    def defer(self, request: gr.Request | None, settings: dict[str, Any]) -> bool:
        """Hand ``settings`` to the session's Explain run when its maps are being computed (True: handed over)."""
        key = getattr(request, "session_hash", None)
        with self._lock:
            page = self._pages.get(key) if key is not None else None
            if page is None or not page.mapping:
                return False
            page.deferred = {**(page.deferred or {}), **settings}
        return True
