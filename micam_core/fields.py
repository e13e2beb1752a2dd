"""What a setting is: one :class:`Setting` record (default, bounds or choices, help) and its one check.

:mod:`micam_core.settings` holds the records of the user-facing settings; a method's own parameters
(:class:`Param`, declared on its :class:`~micam_core.registry.Method`) become settings of the same kind,
so one check and one sentence serve both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MicamError, shorten

# The display modes of MI maps and how each upsamples: the one wording that help, the page and captions ask.
UPSAMPLING_MODES = {"paper": "nearest + Gaussian blur", "bilinear": "bilinear interpolation"}
UPSAMPLING = tuple(UPSAMPLING_MODES)


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
    stage: str = "explain"  # who reads it: "explain" (the maps), "counterfactual" (analyse's keyword) or "display"

    @property
    def display(self) -> bool:
        """Only changes how results are drawn (colour map, opacity): nothing is recomputed."""
        return self.stage == "display"

    def describe(self) -> str:
        """What the setting accepts, as a phrase."""
        if self.kind in ("float", "int"):
            kind = "a number" if self.kind == "float" else "a whole number"
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}"
        return "one or more of " + ", ".join(self.choices) if self.kind == "methods" else (
            "one of " + ", ".join(self.choices))

    def parse(self, value: Any, missing_ok: bool = True) -> Any:
        """``value`` parsed and checked; :class:`SettingError` with a sentence if bad.

        ``None`` and empty strings give the default, or are refused when ``missing_ok`` is false.
        """
        if value is None or (isinstance(value, str) and not value.strip()):
            if not missing_ok:
                raise self.refuse(value)
            return self.default
        parse = {"float": _number, "int": _number, "choice": _choice, "methods": _methods}[self.kind]
        return parse(self, value)

    def refuse(self, value: Any) -> SettingError:
        """The error for a value this setting does not accept."""
        return refusal(self.name, self.label, self.describe(), value)


@dataclass(frozen=True, kw_only=True)
class Param:
    """A method's own parameter, declared on its record: ``Param(name="strength", default=0.5, minimum=0, ...)``.

    ``name``: keyword the method's ``compute`` receives (lowercase, no spaces). ``default``: its value
    when none is given; its type decides the kind (``int`` a whole number, ``float`` a number, ``str`` a
    choice among ``choices``). ``minimum``/``maximum``: bounds of a number; ``step``: slider step;
    ``help``: one phrase for people; ``label``: shown name (default: ``name``).
    As a setting it is named ``<method id>_<name>`` and checked like every other setting.
    """

    name: str
    default: float | int | str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    step: float | None = None
    help: str = ""
    label: str = ""

    def setting(self, method_id: str, method_label: str) -> Setting:
        """This parameter as the setting ``<method id>_<name>``."""
        kind = "choice" if self.choices else "int" if isinstance(self.default, int) else "float"
        return Setting(f"{method_id}_{self.name}", f"{method_label} {self.label or self.name}", kind, self.default,
                       self.minimum, self.maximum, self.step, self.choices, self.help)


def refusal(name: str, label: str, accepts: str, value: Any) -> SettingError:
    """The one sentence for a refused value: ``Label (name) must be <accepts>; got '<value>'.``"""
    shown = shorten(repr(value) if not isinstance(value, str) else f"'{value}'")
    return SettingError(f"{label} ({name}) must be {accepts}; got {shown}.")


def _fmt(x: float | None) -> str:
    return f"{x:g}" if x is not None else "?"


def _number(setting: Setting, value: Any) -> float | int:
    if isinstance(value, bool):
        raise setting.refuse(value)
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise setting.refuse(value) from None
    if not math.isfinite(number) or not setting.minimum <= number <= setting.maximum:
        raise setting.refuse(value)
    if setting.kind == "int":
        if number != int(number):
            raise setting.refuse(value)
        return int(number)
    return number


def _choice(setting: Setting, value: Any) -> str:
    text = str(value).strip()
    if text not in setting.choices:
        raise setting.refuse(value)
    return text


def _methods(setting: Setting, value: Any) -> tuple[str, ...]:
    items: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        ids = [str(item).strip() for item in items]
    except TypeError:
        raise setting.refuse(value) from None
    ids = list(dict.fromkeys(i for i in ids if i))
    unknown = [i for i in ids if i not in setting.choices]
    if unknown:  # the unknown ids first: the list of choices is long
        raise SettingError(f"{setting.label} ({setting.name}): {shorten(', '.join(unknown))} "
                           f"{'is not a method id' if len(unknown) == 1 else 'are not method ids'}; "
                           f"choose {setting.describe()}.")
    if not ids:
        raise setting.refuse(value)
    return tuple(ids)
