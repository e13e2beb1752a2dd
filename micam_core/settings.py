"""Every user-facing setting as one record: default, allowed values, and one validation.

The library, the command line, the API endpoint and the app's widgets all read :data:`SETTINGS`;
:func:`validate` is the single place a value is checked, and its error names the setting and
what it accepts, in a sentence meant for the person who typed the value. The parameters methods
declare (:class:`~micam_core.fields.Param`) are settings too, named ``<method id>_<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import shorten
from .fields import UPSAMPLING, UPSAMPLING_MODES, Setting, SettingError
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS
from .registry import DEFAULT_METHODS, METHODS, REGISTRY

__all__ = ["COLORMAPS", "DEFAULTS", "FILLS", "SETTINGS", "UPSAMPLING", "Setting", "SettingError", "validate",
           "validate_all"]

FILLS = ("black", "blur", "mean")
BUNDLED_SPEC = "bundled:efficientnet_lite0"  # the offline model that ships with the package
DEFAULT_SPEC = BUNDLED_SPEC
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma", "gray")


def _build() -> dict[str, Setting]:
    records = [
        Setting("methods", "Methods", "methods", DEFAULT_METHODS, choices=METHODS,
                help="comma-separated method ids"),
        Setting("upsampling", "Display upsampling of MI maps", "choice", "paper", choices=UPSAMPLING,
                help="; ".join(f"{mode}: {how}" for mode, how in UPSAMPLING_MODES.items())),
        Setting("threshold", "Region threshold (map >= threshold)", "float", 0.5, 0.0, 1.0, 0.05,
                help="pixels where a map is at least this value form its region", stage="counterfactual"),
        Setting("fill", "Fill of masked pixels", "choice", "black", choices=FILLS, stage="counterfactual"),
        Setting("steps", "Deletion/insertion steps", "int", 32, 2, 100, 2,
                help="each step costs two forward passes per map", stage="counterfactual"),
        Setting("protocol", "Evaluation protocol", "choice", DEFAULT_PROTOCOL, choices=tuple(PROTOCOLS),
                help="; ".join(f"{p.name}: {p.label}" for p in PROTOCOLS.values()), stage="counterfactual"),
        Setting("cmap", "Colour map", "choice", "jet", choices=COLORMAPS, stage="display"),
        Setting("opacity", "Map opacity", "float", 0.5, 0.0, 1.0, 0.05, stage="display"),
    ]
    records += [s for method in REGISTRY.values() for s in method.settings()]
    return {s.name: s for s in records}


SETTINGS: dict[str, Setting] = _build()
DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}


def validate(name: str, value: Any, missing_ok: bool = True) -> Any:
    """``value`` parsed and checked for setting ``name``; :class:`SettingError` with a sentence if bad.

    ``None`` and empty strings give the default, or are refused when ``missing_ok`` is false.
    """
    return SETTINGS[name].parse(value, missing_ok)


def validate_all(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every known setting in ``values`` validated (missing ones get their default)."""
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise SettingError(f"Unknown setting(s): {shorten(', '.join(unknown))}.")
    return {name: validate(name, values.get(name)) for name in SETTINGS}
