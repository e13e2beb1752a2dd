"""The summary's verdict block, its statistics against hand-computed values, and `micam evaluate --sanity`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from micam_core.cli import main
from micam_core.evaluation.metrics import holm, wilson
from micam_core.evaluation.rows import BASELINE_IDS
from micam_core.evaluation.store import ResultStore
from micam_core.evaluation.summary import summarize


def test_holm_and_wilson_against_hand_computed_values():
    # sorted 0.01, 0.03, 0.04 (3 defined): 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, 0.04, 0.03, float("nan")])[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    lo, hi = wilson(0, 4)  # p = 0: [0, z^2 / (n + z^2)]
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(1.959964**2 / (4 + 1.959964**2))
    lo, hi = wilson(5, 10)
    assert (lo + hi) / 2 == pytest.approx(0.5)


def _rows(n: int = 6) -> list[dict]:
    """Hand-made rows: MI CAM's deletion AUC 0.01 below Grad-CAM's on every image but one."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        base = {"model": "m", "image_id": f"im{i}", "status": "ok", "target": 1, "top1": 1, "seconds": 0.1,
                "target_source": "top1", "increase": False, "flipped": None,
                "deletion_curve": [0.5, 0.2, 0.0], "insertion_curve": [0.1, 0.3, 0.5],
                "rand_units": ["fc", "layer4"], "rand_target_step": 2}
        for method, shift, rho, same in (("micam", 0.0, 0.9, True), ("gradcam", 0.01, 0.2, False),
                                         ("random", 0.02, 1.0, True), ("centre", 0.0, 1.0, True)):
            auc = 0.1 + 0.01 * rng.random() + (shift if i else 0.0)
            rows.append({**base, "method": method, "deletion_auc": auc if method != "centre" else None,
                         "insertion_auc": 0.3, "rand_spearman": [1.0 if method != "gradcam" else 0.5, rho],
                         "rand_ssim": [1.0, rho], "rand_passed": rho < 0.9, "logit_class": 5,
                         "logit_spearman": 1.0 if same else 0.3, "logit_ssim": 1.0 if same else 0.4,
                         "logit_identical": same})
    return rows


@pytest.mark.slow
def test_the_summary_opens_with_one_sentence_per_metric_and_comparison(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_rows())
    (tmp_path / "run.json").write_text('{"settings": {"threshold": 0.5, "fill": "black", "steps": 2, '
                                       '"target": "label", "sanity": true}}')
    report = summarize(tmp_path, resamples=200)
    md = report.markdown
    assert md.index("## Verdict") < md.index("| method |")
    assert "target: top-1 (no label names a class of the model)" in md and "target label" not in md
    deletion = [v for v in report.verdicts if v.startswith("Deletion AUC (lower is better): MI CAM")]
    assert len(deletion) == 3  # Grad-CAM and the random map; the centred map has no value: a sentence says so
    ref = pd.DataFrame(_rows()).query("method in ('micam', 'gradcam')").pivot(
        index="image_id", columns="method", values="deletion_auc")
    d = (ref["micam"] - ref["gradcam"]).to_numpy()
    p = wilcoxon(d).pvalue
    pair = report.paired.set_index(["other", "metric"]).loc[("gradcam", "deletion_auc")]
    assert pair["wilcoxon_p"] == pytest.approx(p) and pair["family"] == 2
    assert pair["p_holm"] == pytest.approx(holm([p, report.paired.set_index(["other", "metric"]).loc[
        ("random", "deletion_auc"), "wilcoxon_p"]])[0])
    sentence = next(v for v in deletion if "Grad-CAM" in v)
    assert sentence.startswith(f"Deletion AUC (lower is better): MI CAM {ref['micam'].mean():.3f} vs Grad-CAM "
                               f"{ref['gradcam'].mean():.3f}, difference {d.mean():+.3f} [")
    assert f"MI CAM better on {np.sum(d < 0)} of 6 images, Grad-CAM on {np.sum(d > 0)}," in sentence
    assert np.sum(d < 0) > 3 and "tied" not in sentence
    assert f"p = {pair['p_holm']:.2g} (Holm-adjusted over 2 comparisons)" in sentence
    assert sentence.endswith(": MI CAM better.") == (pair["p_holm"] < 0.05)
    assert any("no image has both values" in v and "Centred" in v for v in deletion)
    same = next(v for v in report.verdicts
                if v.startswith("Insertion AUC (higher is better): MI CAM") and "Grad-CAM" in v)
    assert "MI CAM better on 0 of 6 images, Grad-CAM on 0, tied on 6, p undefined (all 6 differences are zero): " \
           "identical on every image." in same
    assert "Random logit, MI CAM: identical map for a random class on 6 of 6 images (computed): " \
           "class-agnostic by construction." in report.verdicts
    rand = next(v for v in report.verdicts if v.startswith("Cascading randomisation, Grad-CAM"))
    assert "Spearman 0.20" in rand and "once fc, layer4 are random; passes on 6 of 6 images" in rand
    assert any(v.startswith("Cascading randomisation, Random map (baseline) (a baseline") for v in report.verdicts)
    assert {p.name for p in report.files} >= {"metrics_m.png", "curves_m.png"}
    flips = report.per_method.set_index(["method", "metric"])
    assert ("micam", "flipped") not in flips.index  # no values at all: not reported
    inc = flips.loc[("micam", "increase")]
    assert inc["mean"] == 0 and inc["interval"] == "Wilson" and inc["ci_high"] > 0


@pytest.mark.slow
def test_evaluate_sanity_writes_rows_that_summarize_turns_into_verdicts(tmp_path):
    from conftest import EXAMPLES

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea_cat", "coffee"):
        (photos / f"{name}.jpg").write_bytes((EXAMPLES / f"{name}.jpg").read_bytes())
    out = tmp_path / "run"
    assert main(["evaluate", "--images", str(photos), "--methods", "micam,gradcam", "--steps", "4",
                 "--sanity", "--out", str(out), "--no-progress", "--no-summary"]) == 0
    rows = ResultStore(out).read().to_pandas()
    assert set(rows["method"]) == {"micam", "gradcam", *BASELINE_IDS} and (rows["status"] == "ok").all()
    assert rows["rand_spearman"].map(len).eq(2).all() and (rows["rand_target_step"] == 2).all()
    assert rows.loc[rows["method"] == "micam", "logit_identical"].all()
    assert not rows.loc[rows["method"].isin(BASELINE_IDS), "rand_passed"].any()
    report = summarize(out, resamples=100)
    assert any(v.startswith("Cascading randomisation, MI CAM") for v in report.verdicts)
    assert "sanity checks (seed 0)" in report.markdown and "### Sanity" in report.markdown


def _decided_rows(n: int = 12) -> list[dict]:
    """MI CAM deletes better than Grad-CAM and worse than the random map on every image; the centred map
    inserts better; MI-Grad-CAM differs by symmetric noise; insertion is otherwise equal everywhere."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        base = {"model": "m", "image_id": f"im{i}", "status": "ok", "target": 1, "top1": 1, "seconds": 0.1,
                "target_source": "top1"}
        auc = 0.1 + 0.01 * rng.random()
        noise = 0.001 * (1 if i % 2 else -1) * (1 + i)
        for method, deletion, insertion in (("micam", auc, 0.3), ("gradcam", auc + 0.02, 0.3),
                                            ("migradcam", auc + noise, 0.3 - noise),
                                            ("random", auc - 0.02, 0.3), ("centre", auc + 0.03, 0.35 + 0.001 * i)):
            rows.append({**base, "method": method, "deletion_auc": deletion, "insertion_auc": insertion})
    return rows


@pytest.mark.parametrize("recorded, named", [("", "Protocol rise (deletion to black and insertion from blur, 32 "
                                                    "steps; region map >= 0.5, filled black)"),
                                             ('"protocol": "road", ', "Protocol road (ROAD MoRF/LeRF at 9 "
                                                                      "fractions, noise 0.01; region map >= 0.5")])
def test_the_verdict_answers_the_question_per_map_and_names_the_protocol(tmp_path, recorded, named):
    ResultStore(tmp_path).write(_decided_rows())
    (tmp_path / "run.json").write_text('{"settings": {' + recorded + '"threshold": 0.5, "fill": "black", '
                                       '"steps": 32, "target": "top1"}}')
    report = summarize(tmp_path, resamples=200, plots=False)
    assert report.markdown.splitlines()[2].startswith(named)  # run.json leaves the default protocol out
    assert list(report.answers) == ["On the protocol's curves (Deletion AUC and Insertion AUC)"]
    assert report.answers["On the protocol's curves (Deletion AUC and Insertion AUC)"] == [
        "Is MI CAM more faithful than Grad-CAM? Yes: MI CAM is better on Deletion AUC; not distinguishable on "
        "the other metric.",
        "Is MI CAM more faithful than MI-Grad-CAM? Not shown: the two are not distinguishable on any of the 2 "
        "metrics (Holm-adjusted p >= 0.05 or undefined).",
        "Is MI CAM more faithful than Random map (baseline)? No: Random map (baseline) is better on Deletion AUC; "
        "not distinguishable on the other metric.",
        "Is MI CAM more faithful than Centred Gaussian (baseline)? Mixed: MI CAM is better on Deletion AUC, "
        "Centred Gaussian (baseline) on Insertion AUC."]
    md = report.markdown
    assert md.index("**Is MI CAM more faithful?**") < md.index("On the protocol's curves") < md.index(
        "Per metric:") < md.index("- Deletion AUC")
    pairs = report.paired.set_index(["other", "metric"])
    assert tuple(pairs.loc[("gradcam", "deletion_auc"), ["wins", "losses", "ties"]]) == (12, 0, 0)
    assert tuple(pairs.loc[("gradcam", "insertion_auc"), ["wins", "losses", "ties"]]) == (0, 0, 12)
    assert pairs.loc[("random", "deletion_auc"), "p_holm"] < 0.05
