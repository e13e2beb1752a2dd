"""One image -> its rows: one per (method or baseline), every metric, the curves, the time taken.

This is the only place where an image is evaluated; the local and the Ray engine both call
:func:`image_rows`, so their rows are the same. A record that fails (bad image, bad label) gives
one failed row per method with the reason, and never raises.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa

from ..analysis import analyse
from ..counterfactual import BASELINES
from ..errors import MicamError
from ..images import load_image
from ..methods import class_index, explain
from ..models import LoadedModel
from ..settings import DEFAULTS
from ..view import View

log = logging.getLogger(__name__)

BASELINE_IDS = tuple(BASELINES)

SCHEMA = pa.schema([
    ("model", pa.string()), ("method", pa.string()), ("image_id", pa.string()),
    ("status", pa.string()), ("error", pa.string()),
    ("label", pa.string()), ("label_index", pa.int64()), ("target", pa.int64()), ("target_label", pa.string()),
    ("target_source", pa.string()), ("top1", pa.int64()), ("top1_correct", pa.bool_()), ("layer", pa.string()),
    ("p_original", pa.float64()), ("p_keep", pa.float64()), ("p_remove", pa.float64()),
    ("p_explanation", pa.float64()), ("average_drop", pa.float64()), ("increase", pa.bool_()),
    ("paper_drop", pa.float64()), ("paper_increase", pa.float64()), ("deletion_auc", pa.float64()),
    ("insertion_auc", pa.float64()), ("flipped", pa.bool_()), ("region_fraction", pa.float64()),
    ("target_rank_original", pa.int64()), ("target_rank_keep", pa.int64()), ("target_rank_remove", pa.int64()),
    ("deletion_curve", pa.list_(pa.float64())), ("insertion_curve", pa.list_(pa.float64())),
    ("protocol", pa.string()),
    # ROAD (protocol road; null otherwise): mean target probability over the removed fractions, MoRF (lower
    # better) and LeRF (higher better), combined = (LeRF - MoRF) / 2 (higher better), and the curves.
    ("road_morf", pa.float64()), ("road_lerf", pa.float64()), ("road_combined", pa.float64()),
    ("road_morf_curve", pa.list_(pa.float64())), ("road_lerf_curve", pa.list_(pa.float64())),
    ("road_removed", pa.list_(pa.float64())),  # the fractions removed: the curves' x positions
    ("seconds", pa.float64()),
    # --sanity (null without it): cascading randomisation, similarity to the original per step 1..depth
    ("rand_units", pa.list_(pa.string())), ("rand_target_step", pa.int64()),
    ("rand_spearman", pa.list_(pa.float64())), ("rand_ssim", pa.list_(pa.float64())), ("rand_passed", pa.bool_()),
    # --sanity: the map for a seeded random other class against the target's
    ("logit_class", pa.int64()), ("logit_spearman", pa.float64()), ("logit_ssim", pa.float64()),
    ("logit_identical", pa.bool_()), ("sanity_seconds", pa.float64()),
])
KEY = ("model", "method", "image_id")


def run_settings(view: View, target: str, sanity: bool = False) -> dict[str, Any]:
    """What decides the numbers (written to run.json, checked on --resume): the view's, the target mode, sanity.

    ``target``: ``"label"``, the image's label when it names a class of the model (else top-1), or ``"top1"``.
    ``sanity``: also run the sanity checks (cascading randomisation, random logit), seed 0.
    """
    out = {**view.computed(), "methods": list(view.methods), "target": target, "layer": view.layer, "sanity": sanity}
    # Runs recorded before --sanity and --upsampling existed resume unchanged.
    for name, default in (("sanity", False), ("upsampling", DEFAULTS["upsampling"]),
                          ("protocol", DEFAULTS["protocol"])):
        if out[name] == default:
            out.pop(name)
    return out


def row_names(view: View) -> tuple[str, ...]:
    """The rows every image gets: each method, then the baselines."""
    return tuple(view.methods) + BASELINE_IDS


def label_index(loaded: LoadedModel, label: str | None) -> int | None:
    """The model's class for a label (an index, or a class name), or None when it names none."""
    if label is None or str(label).strip() in ("", "-1"):
        return None
    try:
        return class_index(loaded, label)
    except MicamError:
        return None


def image_rows(loaded: LoadedModel, record: dict, view: View, target: str = "label",
               chunk: int | None = None, sanity: bool = False) -> list[dict]:
    """Explain + analyse one record; one row per method and baseline (failed rows on any error)."""
    start = time.perf_counter()
    base = {"model": loaded.spec, "image_id": record["image_id"], "label": record.get("label")}
    try:
        image = load_image(record["bytes"] if record.get("bytes") else record["path"])
        wanted = label_index(loaded, record.get("label"))
        use_label = target == "label" and wanted is not None
        exp = explain(loaded, image, target=wanted if use_label else None, layer=view.layer, methods=view.methods,
                      upsampling=view.upsampling, params=view.params())
        extra = {"chunk": chunk} if chunk else {}
        faith = analyse(loaded, exp, **view.stage("counterfactual"), **extra)
        checks = _sanity_columns(loaded, exp) if sanity else {}
    except Exception as err:  # any failure of one image becomes its failed rows; the run goes on
        log.warning("%s: %s failed: %s", loaded.spec, record.get("image_id"), err)
        reason = f"{type(err).__name__}: {err}"
        return [{**base, "method": name, "status": "failed", "error": reason} for name in row_names(view)]
    seconds = time.perf_counter() - start
    top1 = int(exp.probs.argmax())
    common = {**base, "status": "ok", "error": None, "label_index": wanted, "target": int(exp.target),
              "target_label": exp.target_label, "target_source": "label" if use_label else "top1",
              "top1": top1, "top1_correct": None if wanted is None else top1 == wanted, "layer": exp.layer,
              "seconds": seconds, "protocol": faith.protocol.name}
    rows = []
    for name in row_names(view):
        r = faith.results[name]
        rows.append({**common, "method": name, "p_original": r.p_original, "p_keep": r.p_keep,
                     "p_remove": r.p_remove, "p_explanation": r.p_explanation, "average_drop": r.average_drop,
                     "increase": bool(r.increase), "paper_drop": r.paper_drop, "paper_increase": r.paper_increase,
                     "deletion_auc": r.curves.deletion_auc, "insertion_auc": r.curves.insertion_auc,
                     "flipped": r.flipped, "region_fraction": r.region_fraction,
                     "target_rank_original": r.rank_original, "target_rank_keep": r.rank_keep,
                     "target_rank_remove": r.rank_remove,
                     **{f"{kind}_curve": curve for kind, curve in r.curves.as_lists().items()},
                     **(_road_columns(r.road) if r.road is not None else {}), **checks.get(name, {})})
    return rows


def _road_columns(road) -> dict:
    return {"road_morf": road.morf_score, "road_lerf": road.lerf_score, "road_combined": road.combined,
            "road_morf_curve": road.morf.tolist(), "road_lerf_curve": road.lerf.tolist(),
            "road_removed": list(road.removed)}


def _sanity_columns(loaded: LoadedModel, exp) -> dict[str, dict]:
    """The sanity columns of every method and baseline row (see :mod:`micam_core.sanity`)."""
    from ..sanity import sanity_checks

    start = time.perf_counter()
    checks = sanity_checks(loaded, exp, seed=0)
    rand, logit = checks.randomisation, checks.random_logit
    seconds = time.perf_counter() - start
    return {name: {"rand_units": rand.units[:rand.depth], "rand_target_step": rand.target_step,
                   "rand_spearman": [s.spearman for s in rand.similarity[name]],
                   "rand_ssim": [s.ssim for s in rand.similarity[name]], "rand_passed": rand.passed(name),
                   "logit_class": logit.other, "logit_spearman": logit.similarity[name].spearman,
                   "logit_ssim": logit.similarity[name].ssim, "logit_identical": logit.identical(name),
                   "sanity_seconds": seconds}
            for name in rand.similarity}


def to_table(rows: list[dict]) -> pa.Table:
    """Rows -> an Arrow table with :data:`SCHEMA` (missing fields are null)."""
    return pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names} for row in rows], schema=SCHEMA)
