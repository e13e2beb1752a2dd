"""The Gradio app, launched in this process and driven through gradio_client (offline)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # conftest sets it too; never reach the network here

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

import app  # noqa: E402
from micam_app import blocks, handlers, work  # noqa: E402
from micam_app.api import API_OVERLAYS_LAST  # noqa: E402
from micam_core import load_model, metrics_table  # noqa: E402
from micam_core.protocols import get_protocol  # noqa: E402
from micam_core.render import COLORMAPS, overlay  # noqa: E402

CAT = ROOT / "examples" / "chelsea_cat.jpg"
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
DEFAULT = ("micam", "gradcam", "migradcam")
METHODS = ("micam", "gradcam", "migradcam", "gradcampp", "xgradcam", "layercam", "hirescam", "eigencam")


def call_explain(client: Client, image: Path | str, model: str = "bundled:efficientnet_lite0", **kwargs):
    return client.predict(handle_file(str(image)), model, api_name="/explain", **kwargs)


def check_result(result, expect_cat: bool = True) -> dict:
    """Three readable overlay PNGs, top-5 predictions and a complete report; returns the report."""
    from PIL import Image

    assert len(result) == 5 + len(API_OVERLAYS_LAST)
    assert all(path is None for path in result[5:]), "methods that were not chosen have no overlay"
    sizes = set()
    for path in result[:3]:
        with Image.open(path) as im:
            assert im.mode == "RGB"
            sizes.add(im.size)
    assert len(sizes) == 1, "the three overlays must share one scale"
    labels = result[3]
    assert len(labels["confidences"]) == 5
    report = result[4]
    assert {"model", "layer", "target", "predictions", "methods"} <= set(report)
    assert len(report["predictions"]) == 5
    for name in (*DEFAULT, "random", "centre"):
        facts = report["methods"][name]
        for key in ("average_drop_pct", "paper_drop_pct", "paper_increase_pct", "deletion_auc", "insertion_auc",
                    "keep_predictions", "remove_predictions", "flipped_when_removed"):
            assert key in facts, (name, key)
        assert 0.0 <= facts["deletion_auc"] <= 1.0 and 0.0 <= facts["insertion_auc"] <= 1.0
    json.dumps(report)  # JSON-ready
    if expect_cat:
        top5 = {p["index"] for p in report["predictions"]}
        assert top5 & CAT_CLASSES, report["predictions"]
    return report


@pytest.mark.slow
def test_explain_endpoint_bundled_model(client):
    result = call_explain(client, CAT)
    report = check_result(result)
    assert report["model"]["spec"] == "bundled:efficientnet_lite0"
    assert report["target"]["index"] in CAT_CLASSES
    assert report["methods"]["micam"]["class_specific"] is False
    assert report["upsampling"]["micam"] == "paper"


@pytest.mark.slow
def test_explain_endpoint_options(client):
    """Target by name, explicit layer, bilinear display, blur fill: all honoured."""
    result = call_explain(client, CAT, layer="blocks.5", target="Egyptian cat", upsampling="bilinear",
                          threshold=0.3, fill="blur", steps=8, colormap="viridis", opacity=0.7)
    report = check_result(result)
    assert report["target"]["index"] == 285
    assert report["layer"] == "blocks.5"
    assert report["upsampling"]["micam"] == "bilinear"
    settings = report["methods"]["micam"]["settings"]
    assert settings == {**settings, "threshold": 0.3, "fill": "blur", "steps": 8}
    assert len(report["methods"]["micam"]["deletion_curve"]) == 9


def make_hub_cache(root: Path, repo_id: str) -> Path:
    """A Hugging Face cache (hub/models--org--name/{refs,snapshots}) holding a small random-weight timm CNN."""
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model("resnet10t", num_classes=10, pretrained=False)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_for_hf(model, str(snapshot), safe_serialization=True)
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return root / "hub"


@pytest.mark.slow
def test_other_hub_model_from_offline_cache(client, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    repo_id = "micam-test/tiny-resnet"
    hub_cache = make_hub_cache(tmp_path / "hf_home", repo_id)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)

    direct = load_model(f"hf-hub:{repo_id}", device="cpu")  # the cache layout works at all
    assert len(direct.class_names) == 10
    assert direct.revision == "0123456789abcdef0123456789abcdef01234567"

    result = call_explain(client, CAT, model=f"hf-hub:{repo_id}", steps=8)
    report = check_result(result, expect_cat=False)
    assert report["model"]["spec"] == f"hf-hub:{repo_id}"
    assert report["model"]["num_classes"] == 10
    assert report["model"]["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert report["layer"] == direct.default_layer
    # and the default model still answers afterwards
    check_result(call_explain(client, CAT, steps=8))


def error_message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "upstream Gradio app has raised an exception" not in message, message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize("spec, words", [
    ("timm/this-model-does-not-exist-xyz", "this-model-does-not-exist-xyz"),
    ("not a model!!", "neither a timm model name"),
])
@pytest.mark.slow
def test_bad_model_spec_gives_readable_error(client, spec, words):
    with pytest.raises(Exception) as excinfo:
        call_explain(client, CAT, model=spec, steps=8)
    assert words in error_message(excinfo)
    check_result(call_explain(client, CAT, steps=8))  # the server keeps serving


def cells(table: str) -> list[list[str]]:
    """The rows of the metrics table's HTML (the header first), each a list of its cells' text, unescaped."""
    import html
    import re

    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table)]


def photos(block: str) -> list:
    """The photos inside a map or counterfactual block's HTML (its data URIs, decoded)."""
    import base64
    import io
    import re

    from PIL import Image

    found = re.findall(r'src="data:image/(?:jpeg|png);base64,([^"]+)"', block)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_local_models_refused_for_visitors(client, tmp_path, monkeypatch):
    monkeypatch.delenv("MICAM_ALLOW_LOCAL_MODELS", raising=False)
    with pytest.raises(Exception) as excinfo:
        call_explain(client, CAT, model=f"local-dir:{tmp_path}", steps=8)
    assert "local folders is switched off" in error_message(excinfo)


@pytest.mark.slow
def test_non_image_upload_gives_readable_error(client, tmp_path):
    fake = tmp_path / "not_an_image.png"
    fake.write_text("This is text, not a PNG.")
    with pytest.raises(Exception) as excinfo:
        call_explain(client, fake, steps=8)
    assert "not an image" in error_message(excinfo)
    check_result(call_explain(client, CAT, steps=8))


def test_bad_option_gives_readable_error(client):
    with pytest.raises(Exception) as excinfo:
        call_explain(client, CAT, target="definitely not a class", steps=8)
    assert "not one of this model's class names" in error_message(excinfo)


# --- UI handlers: re-rendering must not recompute what it does not need -----------------------------
def forbid(monkeypatch, *names: str) -> None:
    def boom(*_args, **_kwargs):
        raise AssertionError("this change must not call the model")

    for name in names:
        monkeypatch.setattr(work, name, boom)


def run(updates) -> dict:
    """Every update a streaming handler yields, merged (later ones win): what the page shows at the end."""
    out: dict = {}
    for update in updates:
        out.update(update)
    return out


@pytest.fixture(scope="module")
def ui_session() -> dict:
    out = run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                      methods=list(METHODS), upsampling="paper", cmap="jet", opacity=0.5))
    session = out[app.UI.c["session"]]
    assert session["exp"] is not None and session["exp"].methods == METHODS
    return session


@pytest.mark.slow
def test_restyle_and_upsampling_reuse_the_explanation(ui_session, monkeypatch):
    forbid(monkeypatch, "gpu_explain", "gpu_analyse")
    for cmap in COLORMAPS:
        out = app.HANDLERS.on_restyle(ui_session, cmap=cmap, opacity=0.3)
        images = photos(out[app.UI.c["maps"]])
        assert len(images) == len(METHODS) and {im.size for im in images} == {ui_session["exp"].crop.size}
        exp = ui_session["exp"]  # the overlay travels losslessly (PNG), as drawn
        assert np.array_equal(np.asarray(images[0].convert("RGB")),
                              np.asarray(overlay(exp.crop, exp.maps[METHODS[0]], cmap, 0.3).convert("RGB")))
        assert "data:image/png" in out[app.UI.c["cbar"]]
        names = {Path(f).name for f in out[app.UI.c["files"]]}
        assert {"explanation_overlays.png", "explanation_micam.npy", "explanation.json"} <= names
    out = app.HANDLERS.on_upsampling(ui_session, "bilinear", cmap="jet", opacity=0.5)
    session = out[app.UI.c["session"]]
    assert "bilinear" in out[app.UI.c["note"]] and session["exp"].upsampling == "bilinear"
    assert session["exp"].lowres is ui_session["exp"].lowres


def test_restyle_rewrites_overlays_but_not_maps(ui_session):
    first = app.HANDLERS.on_restyle(ui_session, cmap="jet", opacity=0.5)[app.UI.c["files"]]
    stamp = {f: os.stat(f).st_mtime_ns for f in first}
    second = app.HANDLERS.on_restyle(ui_session, cmap="viridis", opacity=0.5)[app.UI.c["files"]]
    changed = {Path(f).name for f in second if os.stat(f).st_mtime_ns != stamp[f]}
    assert "explanation_micam.png" in changed and "explanation_micam.npy" not in changed


@pytest.mark.slow
def test_threshold_change_recomputes_only_counterfactuals(ui_session, monkeypatch):
    forbid(monkeypatch, "gpu_explain")
    out = run(app.HANDLERS.on_counterfactuals(ui_session, threshold=0.7, fill="mean", steps=8, cmap="jet",
                                              opacity=0.5))
    session = out[app.UI.c["session"]]
    assert session["faith"].threshold == 0.7 and session["faith"].fill == "mean"
    table = cells(out[app.UI.c["metrics"]])
    assert table[0] == metrics_table.headers(get_protocol(session["view"].protocol))  # its columns only
    rows = table[1:]
    assert [r[0] for r in rows][:3] == ["MI CAM", "Grad-CAM", "MI-Grad-CAM"] and len(rows) == len(METHODS) + 2
    files = out[app.UI.c["files"]]
    manifest = json.loads(Path([f for f in files if f.endswith("explanation.json")][0]).read_text())
    assert manifest["methods"]["gradcam"]["settings"]["threshold"] == 0.7
    assert manifest["schema_version"] == 2
    assert [p.size for p in photos(out[app.UI.c["pairs"]])] == [ui_session["exp"].crop.size] * 2 * len(METHODS)


def test_bad_ui_settings_are_refused_before_model_work(monkeypatch):
    forbid(monkeypatch, "gpu_explain", "gpu_analyse", "load")
    for methods, opacity, words in [([], 0.5, "Methods (methods)"), (["nope"], 0.5, "nope"),
                                    (list(METHODS[:1]), float("nan"), "Map opacity (opacity)")]:
        with pytest.raises(app.gr.Error) as excinfo:
            run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                        methods=methods, upsampling="paper", cmap="jet", opacity=opacity))
        assert words in str(excinfo.value.message)


def test_ui_model_error_is_shown_in_page(monkeypatch):
    warnings = []
    monkeypatch.setattr(handlers.gr, "Warning", lambda message, *a, **k: warnings.append(message))
    out = run(app.HANDLERS.on_model("bundled:efficientnet_lite0", "not a model!!", "auto", "top-1", ["micam"]))
    alert_box = out[app.UI.c["alert"]]
    assert alert_box["visible"] is True and "neither a timm model name" in alert_box["value"]
    assert warnings and out[app.UI.c["shown_spec"]] is None


def test_examples_are_cached_lazily_and_uploads_never(monkeypatch, tmp_path):
    import shutil

    work.EXAMPLE_CACHE.clear()
    calls = []
    original = work.gpu_explain
    monkeypatch.setattr(work, "gpu_explain", lambda *a, **k: calls.append(a) or original(*a, **k))
    upload = tmp_path / "my_photo.jpg"
    shutil.copyfile(ROOT / "examples" / "rocket.jpg", upload)  # an example's bytes under another name
    other = tmp_path / "other.png"
    from PIL import Image

    Image.open(CAT).rotate(90).save(other)
    for image in (CAT, CAT, upload, other, other):
        out = run(app.HANDLERS.on_explain(str(image), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                          methods=["micam"], upsampling="paper", cmap="jet", opacity=0.5))
        assert out[app.UI.c["session"]]["exp"].maps["micam"].shape == (224, 224)
    # the cat once (then cached), the rocket's bytes once (an example under any name), the other upload twice
    assert len(calls) == 4


@pytest.mark.slow
def test_counterfactuals_stream_pairs_first_then_rows_then_curves(ui_session):
    """Cleared at once; every method's keep/remove before any metric; rows fill in map by map; curves, then files."""
    c = app.UI.c
    session = {**ui_session, "example": None}  # as an upload: computed, not served from the example cache
    steps = list(app.HANDLERS.on_counterfactuals(session, threshold=0.55, fill="black", steps=4, cmap="jet",
                                                      opacity=0.5))
    first = steps[0]
    assert not blocks.has_photos(first[c["pairs"]]) and first[c["curves"]] is None
    assert first[c["status"]]["visible"] is True
    shown = next(i for i, s in enumerate(steps) if blocks.has_photos(s.get(c["pairs"])))
    assert all(blocks.has_photos(steps[shown][c["pairs"]], m) for m in METHODS)
    assert all(row[1] == "scoring ..." for row in cells(first[c["metrics"]])[1:])
    assert c["metrics"] not in steps[shown], "pairs come before any metric (the rows shown stay as they are)"
    scored = [sum(row[1] != "scoring ..." for row in cells(s[c["metrics"]])[1:]) for s in steps if c["metrics"] in s]
    assert scored[-1] == len(METHODS) + 2 and scored == sorted(scored) and len(set(scored)) == len(METHODS) + 3
    curves = next(i for i, s in enumerate(steps) if s.get(c["curves"]) is not None)
    assert curves > shown and steps[curves][c["status"]]["visible"] is False
    assert c["files"] in steps[-1] and steps[-1] is not steps[curves]


def test_controls_are_ready_when_the_page_opens():
    """The bundled model fills the layer, class and method pickers when the page is built (no load event)."""
    config = app.demo.get_config_file()
    by_id = {comp.get("props", {}).get("elem_id"): comp["props"] for comp in config["components"]}
    assert len(by_id["target"]["choices"]) == 1001 and len(by_id["layer"]["choices"]) > 3
    assert "default layer" in by_id["model-info"]["value"]


def test_the_page_stays_light_to_open():
    """Gradio builds every component at each page load, hidden or not, and fetches the code of every component
    type on the page (a Dataframe's alone cost about 0.17 s): the method grids are one block each, whatever the
    registry holds (docs/measurements.md)."""
    config = app.demo.get_config_file()
    types = {comp["type"] for comp in config["components"]}
    assert len(config["components"]) < 250 and not types & {"dataframe", "checkbox", "group"}
    explain = next(f for f in app.demo.fns.values() if f.name == "on_explain_all")
    assert len(explain.outputs) <= 25, "one output per panel, not per method"


@pytest.mark.slow
def test_a_newer_panel_run_stops_the_older_one_of_the_same_page():
    """Explain pressed again (or a threshold moved) while a panel is being scored: the older run of that browser
    session stops after its current stage, so it never writes its results or its session over the newer one.
    Runs of other sessions, and calls without a session, are left alone."""
    c = app.UI.c
    out = run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                      methods=["micam"], upsampling="paper", cmap="jet", opacity=0.5))
    session = {**out[c["session"]], "example": None}
    panel = {"fill": "black", "steps": 2, "cmap": "jet", "opacity": 0.5}
    page, other = SimpleNamespace(session_hash="page"), SimpleNamespace(session_hash="other")
    older = app.HANDLERS.on_counterfactuals(session, page, threshold=0.5, **panel)
    elsewhere = app.HANDLERS.on_counterfactuals(session, other, threshold=0.5, **panel)
    unnamed = app.HANDLERS.on_counterfactuals(session, threshold=0.5, **panel)
    for run_ in (older, elsewhere, unnamed):
        next(run_)  # cleared, status shown
        next(run_)  # keep/remove pairs
    app.HANDLERS.supersede(page)  # e.g. the Explain button: a newer run is coming
    assert list(older) == [], "the superseded run yields nothing more"
    for run_ in (elsewhere, unnamed):
        assert c["session"] in run(run_), "other sessions' runs finish"
    newer = run(app.HANDLERS.on_counterfactuals(session, page, threshold=0.6, **panel))
    assert newer[c["session"]]["faith"].threshold == 0.6


def test_every_setting_widget_is_read_by_explain_and_restored_by_a_link():
    """A setting's widget is read by name: what Explain takes and a link restores follows from the records."""
    from micam_core import SETTINGS

    c = app.UI.c
    widgets = handlers.setting_widgets(c)
    assert list(widgets) == list(SETTINGS)  # every setting has a widget, methods' parameters included
    blocks = {fn.name: fn for fn in app.demo.fns.values()}
    explain_in = set(blocks["on_explain_all"].inputs)
    assert {id(w) for w in widgets.values()} <= {id(w) for w in explain_in}
    cf_in = {id(w) for w in blocks["on_counterfactuals"].inputs}
    stages = {name for name, s in SETTINGS.items() if s.stage in ("counterfactual", "display")}
    assert {name for name, w in widgets.items() if id(w) in cf_in} == stages
    restored = {id(w) for w in blocks["on_link"].outputs}
    assert {id(w) for w in widgets.values()} <= restored


def test_method_parameters_flow_from_their_widgets_to_the_maps_and_the_link(monkeypatch):
    seen = []
    work.EXAMPLE_CACHE.clear()  # computed, not served from the example cache
    original = work.gpu_explain
    monkeypatch.setattr(work, "gpu_explain", lambda view, image: seen.append(view) or original(view, image))
    out = run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                      methods=["gradcam", "finercam"], upsampling="paper", cmap="jet", opacity=0.5,
                                      finercam_comparisons=2, finercam_strength=0.7, sscam_samples=5))
    view = out[app.UI.c["session"]]["view"]
    assert view.params() == {"finercam": {"strength": 0.7, "comparisons": 2}}
    assert seen and seen[0].params() == view.params()  # the GPU function got them
    query = out[app.UI.c["link_query"]]
    assert "finercam_comparisons=2" in query and "finercam_strength=0.7" in query and "sscam" not in query
    with pytest.raises(app.gr.Error, match=r"Finer-CAM comparisons \(finercam_comparisons\)"):
        run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                    methods=["finercam"], finercam_comparisons=99))
