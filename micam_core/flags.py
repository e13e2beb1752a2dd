"""Command-line options from the records: one ``--name`` per setting, and the view they give."""

from __future__ import annotations

import argparse

from .protocols import PROTOCOL_SETTINGS, supplied_defaults
from .settings import SETTINGS
from .view import View, checked


def add_setting(p: argparse.ArgumentParser, name: str, *aliases: str) -> None:
    """The option ``--name`` for setting ``name`` (help from :data:`SETTINGS`; checked by :func:`parse`)."""
    s = SETTINGS[name]
    p.add_argument(f"--{name.replace('_', '-')}", *aliases, dest=name, default=None,
                   help=f"{s.label}: {s.describe()} ({default_words(name)})")


def default_words(name: str) -> str:
    """The default of setting ``name`` in words: the protocol's for the settings a protocol supplies."""
    if name in PROTOCOL_SETTINGS:
        return f"default: the one of --protocol: {supplied_defaults(name)}"
    s = SETTINGS[name]
    return f"default {','.join(s.default) if s.kind == 'methods' else s.default}"


def add_settings(p: argparse.ArgumentParser, numbers_only: bool = False) -> None:
    """One option per setting of :data:`SETTINGS` (``numbers_only``: leave out the display-only ones)."""
    for name, s in SETTINGS.items():
        if not (numbers_only and s.display):
            add_setting(p, name, *ALIASES.get(name, ()))


ALIASES = {"opacity": ("--alpha",)}  # --alpha: the old name, kept for existing scripts


def view_of(args: argparse.Namespace, *parts: str) -> View:
    """The view of the parsed options (``parts``: which of model, layer, target the command has).

    A refused value raises :class:`~micam_core.fields.SettingError` with the same sentence as every other entrance.
    """
    return checked({name: getattr(args, name) for name in (*parts, *SETTINGS) if hasattr(args, name)})
