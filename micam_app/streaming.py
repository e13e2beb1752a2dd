"""Streaming updates that cost only what they change.

A handler here returns a dict naming the components it updates. Gradio (6.x) fills every other output of the
event with ``gr.skip()`` and then treats each skip as a property update: it rebuilds that component from its
constructor arguments and regenerates its config, JSON schema included (about 3 ms an image component on a busy
2-core CPU). Explain's event has over 200 outputs (every method's overlay and counterfactual column) and streams
a dozen updates, so this took about 300 ms an update, ahead of each next stage. Here only the named outputs are
postprocessed; the others get the bare update that Gradio would have sent for them, and the page is unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import gradio as gr
from gradio.blocks import Block, postprocess_update_dict

_SKIPPED: dict[type, dict] = {}


def skipped(block: Block) -> dict | None:
    """What Gradio sends for ``block`` left out of a dict return (None for a State), as it works it out."""
    if block.stateful:
        return None
    kind = type(block)
    if kind not in _SKIPPED:
        _SKIPPED[kind] = postprocess_update_dict(block, gr.skip(), postprocess=False)
    return copy.deepcopy(_SKIPPED[kind])


def named_outputs_only(demo: gr.Blocks) -> None:
    """Make ``demo`` postprocess only the outputs a handler's dict names (see the module's docstring)."""
    original = demo.postprocess_data

    async def postprocess_data(block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        outputs = list(getattr(block_fn, "outputs", []))
        if not (isinstance(predictions, dict) and predictions and len(outputs) > 1
                and all(isinstance(key, Block) for key in predictions)):
            return await original(block_fn, predictions, state)
        named = {key._id for key in predictions}
        kept = [block for block in outputs if block._id in named]
        if len(kept) != len(named) or len(kept) == len(outputs):  # a key that is no output: Gradio says so
            return await original(block_fn, predictions, state)
        part = copy.copy(block_fn)
        part.outputs = kept
        values = iter(await original(part, predictions, state))
        return [next(values) if block._id in named else skipped(block) for block in outputs]

    demo.postprocess_data = postprocess_data  # type: ignore[method-assign]
