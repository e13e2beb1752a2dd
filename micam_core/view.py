"""The request record: one :class:`View` (model, example, layer, target and every setting), one :func:`parse`.

Every entrance builds its view here: the app's handlers, the API/MCP endpoint, permalinks,
``micam explain``, ``micam evaluate`` and the figure caption. A value is checked once, where it
enters, by its record: the four parts below, the settings of :data:`~micam_core.settings.SETTINGS`
and the methods' parameters (settings named ``<method id>_<name>``). A refused value gives one
sentence, the same at every entrance: ``Label (name) must be ...; got '...'.``

Adding a setting is adding its record to :mod:`micam_core.settings` (then its consumer and, when it
has one, its widget): the view, links, the command-line flags and the API's checks follow.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError, shorten
from .fields import SettingError, refusal
from .protocols import PROTOCOL_SETTINGS, PROTOCOLS
from .registry import REGISTRY
from .settings import BUNDLED_SPEC, DEFAULTS, SETTINGS

MAX_VALUE_CHARS = 300  # longer values in a link are refused before any parsing
MAX_NAME_CHARS = 120  # layer and class names
AUTO_LAYER = "auto"
TOP1 = "top-1"
TOP1_WORDS = (TOP1, "top1", "auto", "predicted", "none")
_LAYER = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Class names in links: letters (any script), digits, spaces and the punctuation real label sets use; no markup.
_CLASS_NAME = re.compile(r"^[\w .,'()\-/+:]+$")


@dataclass(frozen=True)
class Context:
    """What a parse may consult: the examples a link can name, and whether the values come from a link."""

    examples: Mapping[str, Path] = field(default_factory=dict)
    link: bool = False


def _model(value: str, ctx: Context) -> str:
    from .models import normalize_spec  # models loads torch; a view is parsed without it (fast refusals, --help)

    try:
        spec = normalize_spec(value)
    except ModelLoadError as error:  # its own sentence says what a spec looks like
        raise SettingError(str(error)) from None
    if ctx.link and spec.startswith("local-dir:"):
        raise refusal("model", "Model", "a model on the Hub or a bundled one (links cannot name local folders)", value)
    if ctx.link and spec.startswith("bundled:") and not re.fullmatch(r"bundled:[a-z0-9_]+", spec):
        raise refusal("model", "Model", "a bundled model's name", value)
    return spec


def _example(value: str, ctx: Context) -> str:
    if value not in ctx.examples:
        known = ", ".join(sorted(ctx.examples)) or "none"
        raise refusal("example", "Example", f"the name of an example ({shorten(known, 200)})", value)
    return value


def _layer(value: str, ctx: Context) -> str | None:
    if value.lower() == AUTO_LAYER:
        return None
    if ctx.link and (len(value) > MAX_NAME_CHARS or not _LAYER.match(value)):
        raise refusal("layer", "Layer", "a layer name (letters, digits, '.', '_' and '-' only) or auto", value)
    return value  # elsewhere the model says whether it has such a layer, naming near ones


def _target(value: str, ctx: Context) -> int | str | None:
    if value.lower() in TOP1_WORDS:
        return None
    if value.isascii() and value.isdigit() and len(value) <= 18:
        if ctx.link and int(value) >= 1_000_000:
            raise refusal("target", "Target class", "a class index, a class name or top-1", value)
        return int(value)
    if ctx.link and (len(value) > MAX_NAME_CHARS or not _CLASS_NAME.match(value)):
        raise refusal("target", "Target class", "a class index, a class name or top-1", value)
    return value  # elsewhere the model's class names decide (with a sentence naming close ones)


# The parts of a view besides the settings: name -> (label, parser of a non-empty string).
PARTS: dict[str, tuple[str, Callable[[str, Context], Any]]] = {
    "model": ("Model", _model), "example": ("Example", _example), "layer": ("Layer", _layer),
    "target": ("Target class", _target),
}


PARAM_NAMES = frozenset(s.name for m in REGISTRY.values() for s in m.settings())


@dataclass(frozen=True)
class View:
    """One request, every value checked: build it with :func:`parse`, or ``View()`` for the defaults.

    Settings are read as attributes (``view.threshold``) or from :attr:`settings`; values are kept as a
    tuple of pairs so that a view is hashable (a cache key) and picklable (ZeroGPU, Ray).
    """

    model: str = BUNDLED_SPEC
    example: str | None = None
    layer: str | None = None
    target: int | str | None = None
    values: tuple[tuple[str, Any], ...] = tuple(DEFAULTS.items())

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", ())
        for key, value in values:
            if key == name:
                return value
        raise AttributeError(f"A view has no part or setting {name!r}.")

    @property
    def settings(self) -> dict[str, Any]:
        """Every setting's value, by name (method parameters included)."""
        return {**DEFAULTS, **dict(self.values)}

    def params(self) -> dict[str, dict[str, Any]]:
        """The parameters of the chosen methods that have any: ``{method: {parameter: value}}``."""
        settings = self.settings
        return {m: {p.name: settings[f"{m}_{p.name}"] for p in REGISTRY[m].params}
                for m in self.methods if REGISTRY[m].params}

    def chosen_settings(self) -> dict[str, Any]:
        """Every setting by name, method parameters only of the chosen methods (what a report records)."""
        mine = {s.name for m in self.methods for s in REGISTRY[m].settings()}
        return {k: v for k, v in self.settings.items() if k in mine or k not in PARAM_NAMES}

    def computed(self) -> dict[str, Any]:
        """:meth:`chosen_settings` the numbers depend on (no display-only ones: colour map, opacity)."""
        return {k: v for k, v in self.chosen_settings().items() if not SETTINGS[k].display}

    def stage(self, stage: str) -> dict[str, Any]:
        """The settings one stage reads, by name: ``analyse(loaded, exp, **view.stage("counterfactual"))``."""
        return {k: v for k, v in self.settings.items() if SETTINGS[k].stage == stage}

    def as_dict(self) -> dict[str, Any]:
        """Parts and :meth:`chosen_settings` by name, as a link writes them."""
        return {**{k: getattr(self, k) for k in PARTS}, **self.chosen_settings()}

    def replace(self, **changes: Any) -> View:
        """A view with ``changes`` (checked values, as :func:`parse` gives them)."""
        parts = {k: changes.pop(k) for k in list(changes) if k in PARTS}
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise SettingError(f"Unknown setting(s): {shorten(', '.join(unknown))}.")
        values = tuple({**self.settings, **changes}.items())
        return View(**{**{k: getattr(self, k) for k in PARTS}, **parts, "values": values})


def parse(mapping: Mapping[str, Any], *, examples: Mapping[str, Path] | None = None, link: bool = False,
          required: bool = False, base: View | None = None) -> tuple[View, list[str]]:
    """A view from ``mapping`` (strings or values, by part or setting name) and the sentences of what was refused.

    Missing, ``None`` or empty values keep ``base``'s (default: the defaults); a refused value keeps it
    too and adds one sentence. ``examples``: the only images an ``example`` may name (by stem).
    ``link``: the values come from a link (overlong values, local model folders and markup refused).
    ``required``: an empty setting is refused rather than defaulted (the API: a client sent it empty).
    Strict entrances (command line, API) refuse the request when there is any message.
    """
    ctx = Context(examples=examples or {}, link=link)
    view = base or View()
    parts: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    messages: list[str] = []
    for key, raw in mapping.items():
        value = raw
        if key not in PARTS and key not in SETTINGS:
            messages.append(f"'{shorten(key, 40)}' is not a part or setting of a view.")
            continue
        if value is None or (isinstance(value, str) and not value.strip()):
            if required and key in SETTINGS:
                messages.append(str(SETTINGS[key].refuse(value)))
            continue
        try:
            if link and isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                label = PARTS[key][0] if key in PARTS else SETTINGS[key].label
                raise refusal(key, label, f"at most {MAX_VALUE_CHARS} characters long (this is {len(value)})", value)
            if key in PARTS:
                parts[key] = PARTS[key][1](str(value).strip(), ctx)
            else:
                changes[key] = SETTINGS[key].parse(value)
        except SettingError as error:
            messages.append(str(error))
    if "protocol" in changes:  # a protocol brings its own threshold, fill and steps unless they are given too
        chosen = PROTOCOLS[changes["protocol"]]
        changes = {**{name: getattr(chosen, name) for name in PROTOCOL_SETTINGS}, **changes}
    return view.replace(**parts, **changes), messages


def checked(mapping: Mapping[str, Any], **options: Any) -> View:
    """:func:`parse` for strict entrances (command line, API, widgets): the first refusal raises its sentence."""
    view, messages = parse(mapping, **options)
    if messages:
        raise SettingError(messages[0])
    return view


def part(name: str, value: Any) -> Any:
    """One part's checked value (``"layer"``: ``None`` for auto; ``"target"``: ``None`` for top-1)."""
    if value is None or not str(value).strip():
        return None
    return PARTS[name][1](str(value).strip(), Context())
