"""Paper figure export: no text overlaps text or a picture at 1-8 methods, every text >= 7 pt at a single
column's width, caption beside (and inside only on request), named files, BibTeX of paper and tool."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from conftest import EXAMPLES
from micam_core import METHODS, analyse, explain
from micam_core.citation import BIBTEX
from micam_core.cli import main
from micam_core.figure import FONT_PT, PNG_DPI, WIDTHS_IN, caption_tex, figure_stem, make_figure
from micam_core.figure import export_figure as export

pdfplumber = pytest.importorskip("pdfplumber", reason="pdfplumber (requirements-dev.txt) reads the PDF's text")
EIGHT = tuple(m for m in METHODS if m != "scorecam")[:8]


@pytest.fixture(scope="module")
def view(bundled, cat_path):
    exp = explain(bundled, cat_path, methods=EIGHT)
    return exp, analyse(bundled, exp, steps=2)


def overlaps(a, b, slack: float = 0.3) -> bool:
    """Whether boxes ``(x0, top, x1, bottom)`` overlap by more than ``slack`` points each way."""
    return (min(a[2], b[2]) - max(a[0], b[0]) > slack) and (min(a[3], b[3]) - max(a[1], b[1]) > slack)


def check_pdf(path, width_in: float) -> list[str]:
    """Page width, font sizes, and no word box over another word or a picture; returns the page's words."""
    with pdfplumber.open(path) as pdf:
        page = pdf.pages[0]
        assert page.width == pytest.approx(width_in * 72, abs=0.5)
        # the font size: a char box's height, or its width for text turned by 90 degrees
        sizes = {round(c["bottom"] - c["top"] if c["upright"] else c["x1"] - c["x0"], 2) for c in page.chars}
        assert sizes and min(sizes) >= FONT_PT - 0.01, sizes
        words = page.extract_words(keep_blank_chars=False, use_text_flow=True)
        boxes = [(w["x0"], w["top"], w["x1"], w["bottom"]) for w in words]
        for i, a in enumerate(boxes):
            assert min(a[0], a[1]) >= 0 and a[2] <= page.width and a[3] <= page.height, words[i]["text"]
            for j in range(i + 1, len(boxes)):
                assert not overlaps(a, boxes[j]), (words[i]["text"], words[j]["text"])
        pictures = [(im["x0"], im["top"], im["x1"], im["bottom"]) for im in page.images]
        assert pictures
        for word, box in zip(words, boxes):
            for picture in pictures:
                assert not overlaps(box, picture), (word["text"], picture)
        return [w["text"] for w in words]


@pytest.mark.slow
@pytest.mark.parametrize("width", ["single", "double"])
def test_no_text_overlaps_at_one_to_eight_methods(view, tmp_path, width):
    exp, faith = view
    for n in range(1, 9):
        pdf = export(exp, tmp_path, f"n{n}", methods=EIGHT[:n], faith=faith, formats=["pdf"], width=width)[0]
        words = " ".join(check_pdf(pdf, WIDTHS_IN[width]))
        assert "Deletion" in words and "Counterfactuals:" in words
        assert "Made with micam_core" not in words, "the caption is beside the figure unless asked for"


def test_full_figure_files_names_caption_and_bib(view, bundled, tmp_path):
    exp, faith = view
    stem = figure_stem(bundled.spec, "chelsea_cat.jpg", EIGHT[:3])
    assert stem == "micam_efficientnet_lite0_chelsea_cat_micam-gradcam-migradcam"
    paths = export(exp, tmp_path, stem, methods=EIGHT[:3], model=bundled.spec, revision=bundled.revision, faith=faith)
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"{stem}.{x}" for x in ("pdf", "svg", "png", "txt", "tex", "bib")]
    root = ET.parse(tmp_path / f"{stem}.svg").getroot()
    assert root.tag.endswith("svg") and root.get("width") == f"{WIDTHS_IN['single'] * 72:g}pt"
    images = root.findall(".//{http://www.w3.org/2000/svg}image")
    assert len(images) == 1 + 3 + 6 + 1  # input, maps, keep/remove per map, colour bar
    with Image.open(tmp_path / f"{stem}.png") as png:
        assert png.info["dpi"] == pytest.approx((PNG_DPI, PNG_DPI), abs=0.1)
        assert png.width == round(WIDTHS_IN["single"] * PNG_DPI)
    caption = (tmp_path / f"{stem}.txt").read_text()
    for fact in (bundled.spec, f"layer {exp.layer}", exp.target_label, "MI CAM", "Grad-CAM", "MI-Grad-CAM",
                 f"map >= {faith.threshold:g}", f"{faith.steps} steps", "opacity 0.50", "colour map jet"):
        assert fact in caption, fact
    tex = (tmp_path / f"{stem}.tex").read_text()
    assert tex.startswith("\\caption{") and "efficientnet\\_lite0" in tex and "$\\geq$" in tex
    assert f"\\label{{fig:{stem}}}" in tex
    bib = (tmp_path / f"{stem}.bib").read_text()
    assert bib.strip() == BIBTEX.strip()
    assert "Iyer, Ram S. and Iyer, Narayan S. and {Rugmini Ammal P}" in bib and "others" not in bib
    assert "@software{micam_explorer" in bib


def test_caption_inside_only_on_request(view, tmp_path):
    exp, faith = view
    pdf = export(exp, tmp_path, "with_caption", methods=EIGHT[:2], faith=faith, formats=["pdf"], caption=True)[0]
    assert "micam_core" in " ".join(check_pdf(pdf, WIDTHS_IN["single"]))
    fig, text = make_figure(exp, methods=EIGHT[:2], faith=faith)
    assert "Made with micam_core" in text
    assert all("Made with" not in t.get_text() for t in fig.texts)


def test_tex_caption_escapes_specials():
    assert caption_tex("50% of a_b & {x} >= 0.5 #1 $2", "s") == (
        "\\caption{50\\% of a\\_b \\& \\{x\\} $\\geq$ 0.5 \\#1 \\$2}\n\\label{fig:s}\n")


def test_maps_only_figure_is_shorter_and_follows_the_chosen_methods(view, tmp_path):
    exp, faith = view
    export(exp, tmp_path / "a", "two", methods=["gradcam", "micam"], labels={"micam": "Ours"}, cmap="viridis",
           formats=["svg"])
    root = ET.parse(tmp_path / "a" / "two.svg").getroot()
    assert len(root.findall(".//{http://www.w3.org/2000/svg}image")) == 1 + 2 + 1
    text = " ".join(t for t in root.itertext())
    assert "Ours" in text and "Grad-CAM" in text and "MI-Grad-CAM" not in text
    full = float(ET.parse(export(exp, tmp_path / "b", "full", methods=["gradcam", "micam"], faith=faith,
                                 formats=["svg"])[0]).getroot().get("height").removesuffix("pt"))
    assert float(root.get("height").removesuffix("pt")) < full


def test_bad_requests_are_refused(view, tmp_path):
    exp, _ = view
    with pytest.raises(ValueError, match="format"):
        export(exp, tmp_path, "x", formats=["gif"])
    with pytest.raises(ValueError, match="No maps"):
        make_figure(exp, methods=["nonesuch"])
    with pytest.raises(ValueError, match="colour map"):
        make_figure(exp, cmap="rainbow")
    with pytest.raises(ValueError, match="width"):
        make_figure(exp, width="triple")


def test_cli_figure_flag(tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(EXAMPLES / "coffee.jpg"), "--out", str(out), "--figure", "--methods", "micam,gradcam"]
    assert main(args) == 0
    stem = "micam_efficientnet_lite0_coffee_micam-gradcam"
    for suffix in ("pdf", "svg", "png", "txt", "tex", "bib"):
        assert (out / f"{stem}.{suffix}").stat().st_size > 0, suffix
    with Image.open(out / f"{stem}.png") as png:
        assert round(png.info["dpi"][0]) == PNG_DPI
    assert f"{stem}.pdf" in json.loads((out / "coffee.json").read_text())["figure"]


@pytest.mark.parametrize("protocol, panels, absent", [("road", ("MoRF", "LeRF"), "Deletion"),
                                                      ("paper", ("Deletion",), "Insertion")])
@pytest.mark.slow
def test_figure_draws_the_protocols_curves_and_names_it(bundled, cat_path, tmp_path, protocol, panels, absent):
    exp = explain(bundled, cat_path, methods=EIGHT[:2])
    faith = analyse(bundled, exp, protocol=protocol, steps=2 if protocol == "paper" else None)  # baselines: long labels
    for width in WIDTHS_IN:
        pdf = export(exp, tmp_path, f"{protocol}_{width}", methods=EIGHT[:2], faith=faith, formats=["pdf"],
                     width=width)[0]
        words = " ".join(check_pdf(pdf, WIDTHS_IN[width]))
        assert all(p in words for p in panels) and absent not in words, words
    caption = make_figure(exp, methods=EIGHT[:2], faith=faith)[1]
    assert f"Protocol {protocol} (" in caption
