"""The summary of a ROAD run with sanity checks: answers on ROAD's own metrics first, readable curve panels."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import test_evaluate

from micam_core.evaluation.metrics import derive
from micam_core.evaluation.store import ResultStore
from micam_core.evaluation.summary import summarize
from micam_core.evaluation.summary_plots import _curves_figure, _slug

matplotlib.use("Agg")
tiny_spec = test_evaluate.tiny_spec  # the fixture: a 64-pixel ResNet-10t with 10 classes


def _road_rows(n: int = 8) -> list[dict]:
    """ROAD rows with sanity columns: MI CAM's MoRF curve falls faster than the random map's on every image;
    the curves are spread widely, so a normal band would leave [0, 1]."""
    rng = np.random.default_rng(2)
    rows = []
    for i in range(n):
        base = {"model": "m", "image_id": f"im{i}", "status": "ok", "target": 1, "top1": 1, "seconds": 0.1,
                "target_source": "top1", "protocol": "road", "average_drop": 50.0,
                "rand_units": ["classifier", "bn2"], "rand_target_step": 2}
        start = 0.01 if i % 2 else 0.99  # half the images start near 0, half near 1
        for method, fall in (("micam", 0.5), ("random", 0.1), ("centre", 0.2)):
            morf = start * (1 - fall) ** np.arange(9) + 0.001 * rng.random(9)
            lerf = np.full(9, start)
            rows.append({**base, "method": method, "road_morf_curve": morf.tolist(), "road_lerf_curve": lerf.tolist(),
                         "road_morf": float(morf.mean()), "road_lerf": float(lerf.mean()),
                         "road_combined": float(lerf.mean() - morf.mean()) / 2,
                         "rand_spearman": [1.0, 0.4 if method == "micam" else 1.0],
                         "rand_ssim": [1.0, 0.5 if method == "micam" else 1.0],
                         "rand_passed": (method == "micam") if i else None,  # image 0: a constant map
                         "logit_class": 3, "logit_spearman": 1.0,
                         "logit_ssim": 1.0, "logit_identical": True})
    return rows


def test_a_road_run_answers_on_roads_metrics_first(tmp_path):
    ResultStore(tmp_path).write(_road_rows())
    (tmp_path / "run.json").write_text('{"settings": {"protocol": "road", "threshold": 0.5, "fill": "black", '
                                       '"steps": 32, "target": "top1", "sanity": true}}')
    report = summarize(tmp_path, resamples=200)
    road = "On the protocol's curves (ROAD MoRF, ROAD LeRF and ROAD combined)"
    assert list(report.answers) == [road, "On the keep/remove counterfactual (Average Drop %)"]
    assert report.answers[road][0] == ("Is MI CAM more faithful than Random map (baseline)? Yes: MI CAM is better "
                                       "on ROAD MoRF and ROAD combined; not distinguishable on the other metric.")
    assert report.answers["On the keep/remove counterfactual (Average Drop %)"][0] == (
        "Is MI CAM more faithful than Random map (baseline)? Not shown: the two are not distinguishable on "
        "Average Drop % (Holm-adjusted p >= 0.05 or undefined).")  # equal on every image
    assert report.verdicts[0].startswith("ROAD MoRF (lower is better): MI CAM ")
    rand = next(v for v in report.verdicts if v.startswith("Cascading randomisation, MI CAM"))
    assert rand.endswith("passes on 7 of 7 images (100%, 95% CI 65-100%); undefined on 1 (the randomised map "
                         "was constant).")
    assert report.markdown.splitlines()[2].startswith("Protocol road (ROAD MoRF/LeRF at 9 fractions")
    assert "sanity checks (seed 0)" in report.markdown.splitlines()[2]
    assert {p.name for p in report.files} >= {"metrics_m.png", "curves_m.png"}


def test_curve_panels_name_their_axis_and_keep_probability_bands_in_0_1():
    import matplotlib.pyplot as plt

    ok = derive(pd.DataFrame(_road_rows(4)))
    fig = _curves_figure(plt, ok)
    titles = [ax.get_title() for ax in fig.axes]
    assert {"ROAD MoRF: target probability", "ROAD LeRF: target probability"} <= set(titles)
    assert any(t.startswith("Cascading randomisation") for t in titles)
    bands = [c for ax in fig.axes for c in ax.collections if hasattr(c, "get_paths") and c.get_paths()]
    ys = np.concatenate([path.vertices[:, 1] for band in bands for path in band.get_paths()])
    spread = np.stack(ok.loc[ok["method"] == "micam", "road_morf_curve"].map(np.asarray).to_list())
    assert (spread.mean(0) - 1.96 * spread.std(0, ddof=1) / np.sqrt(len(spread)) < 0).any()  # the band would leave
    assert len(bands) >= 6 and ys.min() >= 0.0 and ys.max() <= 1.0
    plt.close(fig)


@pytest.mark.slow
def test_evaluate_road_with_sanity_writes_rows_that_summarize_turns_into_the_verdict_and_plots(tmp_path, tiny_spec):
    import shutil

    from conftest import EXAMPLES
    from micam_core.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea_cat", "coffee"):
        shutil.copy(EXAMPLES / f"{name}.jpg", photos / f"{name}.jpg")
    out = tmp_path / "run"
    assert main(["evaluate", "--images", str(photos), "--models", tiny_spec, "--protocol", "road", "--sanity",
                 "--methods", "micam,gradcam", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    rows = ResultStore(out).read().to_pandas()
    assert (rows["protocol"] == "road").all() and rows["road_combined"].notna().all()
    assert rows["deletion_auc"].isna().all() and rows["rand_spearman"].map(len).gt(0).all()
    md = (out / "summary.md").read_text()
    assert md.splitlines()[2].startswith("Protocol road (ROAD MoRF/LeRF at 9 fractions")
    assert "On the protocol's curves (ROAD MoRF, ROAD LeRF and ROAD combined):" in md
    assert "- Is MI CAM more faithful than Grad-CAM? " in md and "- ROAD MoRF (lower is better): MI CAM " in md
    assert "- Cascading randomisation, Grad-CAM: Spearman " in md and "- Random logit, MI CAM: identical" in md
    assert {p.name for p in out.glob("*.png")} == {f"{kind}_{_slug(tiny_spec)}.png" for kind in ("metrics", "curves")}


def test_the_panels_curves_image_is_the_canvas_as_a_png_would_hold_it():
    """render.figure_image takes the canvas's pixels; a PNG round trip (the old way, 0.05-0.1 s slower) gives the
    same image."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from micam_core.render import figure_image

    def drawn() -> plt.Figure:
        fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
        ax.plot([0, 0.5, 1], [1, 0.2, 0.1], label="map")
        ax.legend()
        fig.tight_layout()
        return fig

    fig = drawn()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    expected = np.asarray(Image.open(buffer).convert("RGB"))
    image = figure_image(drawn())
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), expected)
