"""Errors whose message is meant for the person using the tool (UI, API, command line)."""

from __future__ import annotations

import traceback

ECHO_LIMIT = 80


def shorten(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks a cut): for echoing user input."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class MicamError(Exception):
    """Base class: ``str(error)`` is a complete, readable sentence for the user."""


class ImageError(MicamError):
    """The image cannot be read or is outside the accepted limits."""


class ModelLoadError(MicamError):
    """The model spec cannot be resolved, fetched or loaded safely."""


class NotACNNError(ModelLoadError):
    """The model has no spatial or token grid at all, or is no image classifier (name kept for compatibility)."""


class LayerError(MicamError):
    """The requested target layer does not exist or has no ``K x h x w`` output."""


class TargetError(MicamError):
    """The requested target class is not one of the model's classes."""


def drop_frames(err: BaseException | None) -> None:
    """Clear the local variables of every finished frame in ``err``'s tracebacks (cause and context too).

    A traceback keeps every frame it passes through alive, with all their locals: after a failed
    model load that can be gigabytes of half-built module.
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        err = err.__cause__ or err.__context__


def fresh_error(err: MicamError) -> MicamError:
    """The same message and type as ``err``, without its traceback (whose frames are cleared)."""
    drop_frames(err)
    return type(err)(str(err))
