"""Every user-facing setting as one record: default, allowed values, and one validation.

The library, the command line, the API endpoint and the app's widgets all read :data:`SETTINGS`;
:func:`validate` is the single place a value is checked, and its error names the setting and
what it accepts, in a sentence meant for the person who typed the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MicamError, shorten


class SettingError(MicamError):
    """A setting's value is outside what the setting accepts."""


@dataclass(frozen=True)
class Setting:
    """One setting: its kind decides how values are parsed; bounds and choices what is allowed."""

    name: str
    label: str
    kind: str  # "float", "int", "choice" or "methods"
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None  # slider step in the UI
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe(self) -> str:
        """What the setting accepts, as a phrase."""
        if self.kind in ("float", "int"):
            kind = "a number" if self.kind == "float" else "a whole number"
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return "one or more of " + ", ".join(self.choices) if self.kind == "methods" else (
            "one of " + ", ".join(self.choices))


def _fmt(x: float | None) -> str:
    return f"{x:g}" if x is not None else "?"


def _method_ids() -> tuple[str, ...]:
    from .registry import METHODS

    return METHODS


UPSAMPLING = ("paper", "bilinear")  # the display modes of MI maps
FILLS = ("black", "blur", "mean")
BUNDLED_SPEC = "bundled:efficientnet_lite0"  # the offline model that ships with the package
DEFAULT_SPEC = BUNDLED_SPEC
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "gray")


def _build() -> dict[str, Setting]:
    from .registry import DEFAULT_METHODS

    records = [
        Setting("methods", "Methods", "methods", DEFAULT_METHODS, choices=_method_ids(),
                help="comma-separated method ids"),
        Setting("upsampling", "Display upsampling of MI maps", "choice", "paper", choices=UPSAMPLING,
                help="paper: nearest + Gaussian blur; bilinear"),
        Setting("threshold", "Region threshold (map >= threshold)", "float", 0.5, 0.0, 1.0, 0.05,
                help="pixels where a map is at least this value form its region"),
        Setting("fill", "Fill of masked pixels", "choice", "black", choices=FILLS),
        Setting("steps", "Deletion/insertion steps", "int", 32, 2, 64, 2,
                help="each step costs two forward passes per map"),
        Setting("cmap", "Colour map", "choice", "jet", choices=COLORMAPS),
        Setting("opacity", "Map opacity", "float", 0.5, 0.0, 1.0, 0.05),
    ]
    return {s.name: s for s in records}


SETTINGS: dict[str, Setting] = _build()
DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}


def validate(name: str, value: Any, missing_ok: bool = True) -> Any:
    """``value`` parsed and checked for setting ``name``; :class:`SettingError` with a sentence if bad.

    ``None`` and empty strings give the default, or are refused when ``missing_ok`` is false.
    """
    setting = SETTINGS[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        if not missing_ok:
            raise _bad(setting, value)
        return setting.default
    parse = {"float": _number, "int": _number, "choice": _choice, "methods": _methods}[setting.kind]
    return parse(setting, value)


def validate_all(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every known setting in ``values`` validated (missing ones get their default)."""
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise SettingError(f"Unknown setting(s): {shorten(', '.join(unknown))}.")
    return {name: validate(name, values.get(name)) for name in SETTINGS}


def _bad(setting: Setting, value: Any) -> SettingError:
    shown = shorten(repr(value) if not isinstance(value, str) else f"'{value}'")
    return SettingError(f"{setting.label} ({setting.name}) must be {setting.describe()}; got {shown}.")


def _number(setting: Setting, value: Any) -> float | int:
    if isinstance(value, bool):
        raise _bad(setting, value)
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise _bad(setting, value) from None
    if not math.isfinite(number) or not setting.minimum <= number <= setting.maximum:
        raise _bad(setting, value)
    if setting.kind == "int":
        if number != int(number):
            raise _bad(setting, value)
        return int(number)
    return number


def _choice(setting: Setting, value: Any) -> str:
    text = str(value).strip()
    if text not in setting.choices:
        raise _bad(setting, value)
    return text


def _methods(setting: Setting, value: Any) -> tuple[str, ...]:
    items: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        ids = [str(item).strip() for item in items]
    except TypeError:
        raise _bad(setting, value) from None
    ids = list(dict.fromkeys(i for i in ids if i))
    unknown = [i for i in ids if i not in setting.choices]
    if unknown or not ids:
        raise _bad(setting, value)
    return tuple(ids)
