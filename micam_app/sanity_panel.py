"""The sanity-check panel: an accordion that runs the checks for the current explanation on demand.

Its cost (passes on the model, in words) is shown when the accordion opens and whenever the
explanation changes, before anything runs. The checks run through :func:`work.gpu` like the other
model work; the page gets sentences (who passes, who fails, what is identical by construction) and a
small figure.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from micam_core import LoadedModel, MicamError, policy
from micam_core.gpu import cpu_result, request_seconds
from micam_core.sanity import Sanity, plan, sanity_checks
from micam_core.sanity_plot import sanity_figure

from . import text, work
from .handlers import PRIVATE, UI, fail

log = logging.getLogger("micam_app")

INTRO = ("Does a map depend on what it claims to explain? *Cascading randomisation* (Adebayo et al. 2018) "
         "re-initialises the model from the top, the classifier first, down to the target layer, and "
         "recomputes every map: a map that stays the same once the target layer is random fails. *Random "
         "logit* compares the map for the target with the map for a random other class (seed 0). Similarity "
         "is Spearman's rank correlation and SSIM with the original map; the random and centred baselines "
         "run too. The model in use is never changed: the checks work on copies.")
NO_EXPLANATION = "Explain an image first; the checks run on the current explanation."


def panel(ui: UI) -> None:
    """The accordion (closed until asked for)."""
    c = ui.c
    with gr.Accordion("Sanity checks: parameter randomisation and random logit (on demand)", open=False,
                      elem_id="sanity") as accordion:
        gr.Markdown(INTRO, elem_classes="note")
        c["sanity_cost"] = gr.Markdown(NO_EXPLANATION, elem_id="sanity-cost")
        c["sanity_btn"] = gr.Button("Run the sanity checks", elem_id="sanity-btn")
        c["sanity_result"] = gr.Markdown(elem_id="sanity-result")
        c["sanity_plot"] = gr.Image(label="Similarity to the original map", show_label=False, type="pil",
                                    format="png", interactive=False, visible=False, elem_id="sanity-plot",
                                    buttons=["download", "fullscreen"])  # its own titles: no tag over them
    c["sanity_accordion"] = accordion


def wire(ui: UI) -> None:
    c = ui.c
    cost = {"fn": on_cost, "inputs": [c["session"]], "outputs": [c["sanity_cost"]], "show_progress": "hidden",
            **PRIVATE}
    c["sanity_accordion"].expand(**cost)
    c["link_query"].change(**cost)  # changes after every new explanation or setting
    c["sanity_btn"].click(on_run, [c["session"]], [c["sanity_result"], c["sanity_plot"]],
                          show_progress_on=[c["sanity_result"]], **PRIVATE)


def on_cost(session: dict | None) -> str:
    """What the checks will cost for the session's explanation, in words (nothing runs)."""
    if not session or session.get("exp") is None:
        return NO_EXPLANATION
    try:
        return f"**Cost:** {text.md(bounded_plan(work.load(session['spec']), session['exp']).describe(), 600)}"
    except MicamError as err:
        return text.md(str(err), 400)


def bounded_plan(loaded: LoadedModel, exp: Any) -> Any:
    """The checks' plan for ``exp``; refused with a sentence when its masked passes exceed the server's bound."""
    steps = plan(loaded, exp)
    limit = policy.max_extra_passes()
    if steps.extra_passes > limit:
        raise MicamError(f"With these maps the checks would need {steps.extra_passes} masked forward passes; this "
                         f"server allows {limit} per request. Explain without the multi-pass methods (or with fewer "
                         "samples, or on a smaller layer) to run them.")
    return steps


def checks_seconds(loaded: LoadedModel, exp: Any, steps: Any) -> int:
    """GPU seconds for the checks of ``exp``: one explanation's worth per pass."""
    return request_seconds((2 + len(exp.maps)) * steps.passes + steps.extra_passes, loaded.num_bytes)


def checks_duration(spec: str, exp: Any, seconds: int) -> int:
    """ZeroGPU duration for :func:`gpu_sanity`: worked out by the handler, which holds the loaded model."""
    return seconds


@work.gpu(duration=checks_duration)
@cpu_result
def gpu_sanity(spec: str, exp: Any, seconds: int) -> Sanity:
    """Both checks for the explanation. It takes the spec, not the model (its arguments cross to the GPU worker
    pickled), and finds the model in that process's cache, as :func:`work.gpu_explain` does."""
    return sanity_checks(work.load(spec), exp)


def on_run(session: dict | None) -> tuple[str, Any]:
    """Run the checks and tell the result in words, one sentence per map, with the figure.

    The model is loaded once; the bound and the GPU time are worked out from it before anything runs."""
    try:
        if not session or session.get("exp") is None:
            raise MicamError(NO_EXPLANATION)
        loaded, exp = work.load(session["spec"]), session["exp"]
        checks = gpu_sanity(loaded.spec, exp, checks_seconds(loaded, exp, bounded_plan(loaded, exp)))
        figure = sanity_figure(checks)
    except Exception as err:
        raise fail(err) from None
    return result_markdown(checks), gr.update(value=figure, visible=True)


def result_markdown(checks: Sanity) -> str:
    """The verdicts: randomisation first (passes and failures), then random logit."""
    rand, logit = checks.randomisation, checks.random_logit
    lines = [f"**Cascading randomisation** ({rand.seconds:.1f} s):", ""]
    lines += [f"- {text.md(rand.verdict(name), 600)}" for name in rand.similarity]
    lines += ["", f"**Random logit** ({logit.seconds:.1f} s):", ""]
    lines += [f"- {text.md(logit.verdict(name), 600)}" for name in logit.similarity]
    return "\n".join(lines)
