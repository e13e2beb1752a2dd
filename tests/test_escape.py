"""Text reaches each target escaped, in one place per target: Markdown, CSV, matplotlib; control characters dropped.

Round 3: a class name with ``$...$`` broke the app's counterfactuals and figure and the CLI's
``--metrics --figure``; ``/?example=https://evil.example/login?session=expired`` rendered a link.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from test_model_config import _save

from conftest import EXAMPLES
from micam_core.cli import main
from micam_core.escape import csv_cell, markdown, write_csv
from micam_core.permalink import parse_query
from micam_core.render import curves_figure

MATH = ["$\\frac{a}{b}$", "$x^{2}$ and $", "${" + "{" * 150 + "x$", "$\\undefinedcommand{x}$"]
CAT = EXAMPLES / "chelsea_cat.jpg"


@pytest.mark.parametrize("text", ["https://evil.example/login?session=expired", "see www.evil.example now",
                                  "mail me: victim@evil.example", "HTTP://EVIL.EXAMPLE", "ftp://x.example/a"])
def test_markdown_never_auto_links(text):
    shown = markdown(text)
    for trigger in ("://", "www.", "WWW.", "@"):
        assert trigger not in shown


def test_markdown_drops_control_characters_and_escapes_markup():
    assert markdown("a\x00b\x1b[31mc\u202e$x$ <b>*y*</b>") == (
        "ab\\[31mc\\$x\\$ &lt;b&gt;\\*y\\*&lt;/b&gt;")


def test_a_link_with_a_url_as_example_shows_no_link():
    state, messages = parse_query({"example": "https://evil.example/login?session=expired"}, {})
    assert state["example"] is None and messages
    text = " ".join(messages)
    assert "evil" in text and "://" not in text and "https" in text


@pytest.mark.parametrize("value, cell", [("=1+2", "'=1+2"), ("+SUM(A1)", "'+SUM(A1)"), ("-2+3", "'-2+3"),
                                         ("@cmd", "'@cmd"), ("\tx", "x"), ("\t=1", "'=1"), ("micam", "micam"),
                                         (-1.5, -1.5), ("a\x07b", "ab")])
def test_csv_cells(value, cell):
    assert csv_cell(value) == cell


def test_write_csv_prefixes_formulas_and_keeps_numbers(tmp_path):
    frame = pd.DataFrame({"model": ["=HYPERLINK(\"http://x\")", "ok"], "mean": [-0.5, 1.0]})
    write_csv(frame, tmp_path / "t.csv")
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert rows[0]["model"].startswith("'=") and rows[1]["model"] == "ok" and rows[0]["mean"] == "-0.5"


def test_curves_never_fail_on_a_label():
    curves = {f"m{i}": {"deletion": [1.0, 0.5, 0.0], "insertion": [0.0, 0.5, 1.0]} for i in range(len(MATH))}
    image = curves_figure(curves, title="target " + MATH[0], labels={f"m{i}": t for i, t in enumerate(MATH)})
    assert image.size[0] > 0


@pytest.fixture(scope="module")
def dollar_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dollar")
    return _save(folder, input_size=(3, 64, 64), crop_pct=1.0, label_names=MATH[:3])


@pytest.mark.slow
def test_cli_metrics_and_figure_with_mathtext_class_names(dollar_model, tmp_path, capsys):
    code = main(["explain", str(CAT), "--model", f"local-dir:{dollar_model}", "--metrics", "--figure",
                 "--steps", "2", "--methods", "gradcam", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "chelsea_cat.json").read_text())
    assert manifest["target"]["label"] in MATH
    [svg] = [name for name in manifest["figure"] if name.endswith(".svg")]  # named by model, image and methods
    assert svg.endswith("_chelsea_cat_gradcam.svg")
    assert "$" in (tmp_path / svg).read_text()  # drawn as text, not as mathtext
    for suffix in ("pdf", "png", "txt"):
        assert (tmp_path / svg.replace(".svg", f".{suffix}")).stat().st_size > 1000 or suffix == "txt"


@pytest.mark.slow
def test_app_counterfactuals_and_figure_with_a_mathtext_class_name(monkeypatch):
    import app
    from micam_app import work

    loaded = work.load("bundled:efficientnet_lite0")
    names = list(loaded.class_names)
    names[:] = [MATH[i % len(MATH)] for i in range(len(names))]  # whatever the top class is, it has "$"
    monkeypatch.setattr(loaded, "class_names", names)
    work.EXAMPLE_CACHE.clear()

    def run(updates) -> dict:  # every update a streaming handler yields, merged
        out: dict = {}
        for update in updates:
            out.update(update)
        return out

    out = run(app.HANDLERS.on_explain(str(CAT), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                      methods=["gradcam"], upsampling="paper", cmap="jet", opacity=0.5))
    session = out[app.UI.c["session"]]
    assert "$" in session["exp"].target_label
    out = run(app.HANDLERS.on_counterfactuals(session, threshold=0.5, fill="black", steps=2, cmap="jet", opacity=0.5))
    session = out[app.UI.c["session"]]
    assert out[app.UI.c["curves"]] is not None
    from micam_app.paper import PaperHandlers  # the figure handler, around the page's handlers

    figure = PaperHandlers(app.HANDLERS).on_figure(session, True, cmap="jet", opacity=0.5)
    files = figure[app.UI.c["figure_files"]]["value"]
    pdf = next(f for f in files if f.endswith(".pdf"))
    assert Path(pdf).read_bytes().rstrip().endswith(b"%%EOF")
    work.EXAMPLE_CACHE.clear()


def test_a_link_whose_model_fails_to_load_explains_nothing_and_raises_nothing(monkeypatch, caplog):
    import app
    from micam_app import work
    from micam_app.paper import PaperHandlers
    from micam_core import ModelLoadError

    def refuse(spec):
        raise ModelLoadError("'evil/model' was not found on the Hugging Face Hub.")

    monkeypatch.setattr(work, "load", refuse)
    state = {"example": "chelsea_cat", "methods": ("gradcam",), "upsampling": "paper", "target": None, "layer": None}
    out = {}
    for update in PaperHandlers(app.HANDLERS).on_link_explain(state, str(CAT), "bundled:efficientnet_lite0",
                                                              "evil/model", cmap="jet", opacity=0.5):
        out.update(update)
    assert list(out.values()) and all(v is not None for v in out.values())
    assert "Traceback" not in caplog.text


HOSTILE = '<img src=x onerror="alert(1)"> & ${7*7} </td>'


def test_html_blocks_show_model_text_literally():
    """The counterfactual blocks and the metrics table are HTML, not Markdown: a class name is text there."""
    from types import SimpleNamespace

    from PIL import Image

    from micam_app import blocks, views
    from micam_core.escape import html_text

    assert html_text(HOSTILE) == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; ${7*7} &lt;/td&gt;"
    assert html_text("a\x00b\u202ec" * 3, limit=4) == "abca..."
    top = [(1, HOSTILE, 0.5), (2, "tabby", 0.25)]
    kept = SimpleNamespace(keep_image=Image.new("RGB", (8, 8)), remove_image=Image.new("RGB", (8, 8)),
                           top_keep=top, top_remove=top, region_fraction=0.3, p_original=0.6, p_remove=0.1,
                           p_keep=0.5, rank_original=1, rank_remove=3, rank_keep=1, flipped=True)
    block = blocks.pair_html("micam", kept, HOSTILE, 0.5)
    assert "<img src=x" not in block and "&lt;img src=x" in block and blocks.has_photos(block)
    assert block.count("<img ") == 2 and "onerror" not in block.replace("onerror=&quot;", "")
    table = views.metrics_html({}, ["micam"], None)
    assert table.count("<tr>") == 1 + 1 + 2  # the header, the method, the two baselines
