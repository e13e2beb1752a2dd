"""Errors whose message is meant for the person using the tool (UI, API, command line)."""

from __future__ import annotations


def shorten(text: object, limit: int = 80) -> str:
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
    """The model has no spatial feature map (a vision transformer, an MLP, ...)."""


class LayerError(MicamError):
    """The requested target layer does not exist or has no ``K x h x w`` output."""


class TargetError(MicamError):
    """The requested target class is not one of the model's classes."""
