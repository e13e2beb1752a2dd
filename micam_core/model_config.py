"""Bounds on what a model's config.json may ask for, checked before the model is built.

A config drives memory and time: ``input_size`` sets every activation, ``crop_pct`` how large the image
is resized before the crop, ``mean``/``std`` the input's scale, ``num_classes`` and the label names what
the server holds. Anyone can publish a repository, so each field must lie within the ranges in
:mod:`micam_core.policy`; a refusal names the field and its allowed range. The same check runs on the
Hub precheck (:mod:`micam_core.hub`), before building Hub and local models (:mod:`micam_core.sources`)
and on the data config of every built model (:func:`micam_core.models.load_model`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from . import policy
from .errors import ModelLoadError, shorten

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
CROP_MODES = ("center", "squash", "border")


def pretrained_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """The effective ``pretrained_cfg`` of a timm ``config.json`` (legacy single-dict form and top-level overrides)."""
    inner = config.get("pretrained_cfg")
    cfg = dict(inner) if isinstance(inner, Mapping) else ({} if "pretrained_cfg" in config else dict(config))
    for key in ("num_classes", "label_names", "label_descriptions"):
        if key in config:
            cfg[key] = config[key]
    if "labels" in cfg and "label_names" not in cfg:
        cfg["label_names"] = cfg["labels"]
    args = config.get("model_args")
    if isinstance(args, Mapping) and args.get("img_size") is not None:
        cfg["model_args.img_size"] = args["img_size"]
    if isinstance(args, Mapping) and args.get("in_chans") is not None:
        cfg["model_args.in_chans"] = args["in_chans"]
    return cfg


def check_config(config: Mapping[str, Any], shown: str) -> None:
    """Refuse (:class:`ModelLoadError`, naming the field and its range) a ``config.json`` outside the bounds."""
    if not isinstance(config, Mapping):
        raise ModelLoadError(f"{shorten(shown)}: config.json is not a JSON object.")
    check_data_config(pretrained_view(config), shown)


def check_data_config(cfg: Mapping[str, Any], shown: str) -> None:
    """The bounds on a (pretrained or resolved data) config: input size, crop, mean/std, classes, labels."""
    where = shorten(shown)
    lo, hi = policy.INPUT_SIDE
    for key in ("input_size", "test_input_size", "model_args.img_size"):
        if cfg.get(key) is not None:
            _check_size(cfg[key], key, where, lo, hi)
    if cfg.get("model_args.in_chans") not in (None, 3):
        _refuse(where, "model_args.in_chans", cfg["model_args.in_chans"], "3 (RGB)")
    if cfg.get("crop_pct") is not None:
        _check_number(cfg["crop_pct"], "crop_pct", where, *policy.CROP_PCT)
    for key, bounds in (("mean", policy.MEAN_RANGE), ("std", policy.STD_RANGE)):
        if cfg.get(key) is not None:
            _check_triple(cfg[key], key, where, *bounds)
    if cfg.get("interpolation") not in (None, "", *INTERPOLATIONS):
        _refuse(where, "interpolation", cfg["interpolation"], "one of " + ", ".join(INTERPOLATIONS))
    if cfg.get("crop_mode") not in (None, *CROP_MODES):
        _refuse(where, "crop_mode", cfg["crop_mode"], "one of " + ", ".join(CROP_MODES))
    if cfg.get("num_classes") is not None:
        _check_number(cfg["num_classes"], "num_classes", where, 0, policy.MAX_CLASSES, whole=True)
    for key in ("label_names", "label_descriptions"):
        if cfg.get(key) is not None:
            _check_labels(cfg[key], key, where)


def _refuse(where: str, field: str, value: Any, allowed: str) -> None:
    raise ModelLoadError(f"{where}: its config gives {field} = {shorten(repr(value), 60)}; "
                         f"this server allows {allowed}.")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _check_number(value: Any, field: str, where: str, lo: float, hi: float, whole: bool = False) -> None:
    number = _number(value)
    if number is None or not lo <= number <= hi or (whole and number != int(number)):
        _refuse(where, field, value, f"{'a whole number' if whole else 'a number'} from {lo:g} to {hi:g}")


def _check_size(value: Any, field: str, where: str, lo: int, hi: int) -> None:
    """``[3, H, W]`` (or ``[H, W]`` / ``S`` for ``img_size``) with each side from ``lo`` to ``hi``."""
    sides = [value] if not isinstance(value, (list, tuple)) else list(value)
    if len(sides) == 3:
        if _number(sides[0]) != 3:
            _refuse(where, field, value, "3 channels (RGB)")
        sides = sides[1:]
    allowed = f"[3, H, W] with H and W whole numbers from {lo} to {hi} px"
    if not 1 <= len(sides) <= 2:
        _refuse(where, field, value, allowed)
    for side in sides:
        number = _number(side)
        if number is None or number != int(number) or not lo <= number <= hi:
            _refuse(where, field, value, allowed)


def _check_triple(value: Any, field: str, where: str, lo: float, hi: float) -> None:
    numbers = [_number(v) for v in value] if isinstance(value, (list, tuple)) else [None]
    if len(numbers) != 3 or any(n is None or not lo <= n <= hi for n in numbers):
        _refuse(where, field, value, f"three finite numbers from {lo:g} to {hi:g}")


def _check_labels(value: Any, field: str, where: str) -> None:
    names = list(value.values()) if isinstance(value, Mapping) else value
    if not isinstance(names, (list, tuple)):
        _refuse(where, field, type(value).__name__, "a list of class names")
    if len(names) > policy.MAX_CLASSES:
        _refuse(where, field, f"{len(names)} names", f"at most {policy.MAX_CLASSES:,} names")
    longest = max((len(str(n)) for n in names), default=0)
    if longest > policy.MAX_LABEL_CHARS:
        _refuse(where, field, f"a name of {longest} characters",
                f"names of at most {policy.MAX_LABEL_CHARS} characters")
