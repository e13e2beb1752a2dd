"""Paper figure export: PDF renders at the expected page size, SVG parses, PNG is 300 dpi."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES
from micam_core import analyse, explain
from micam_core.citation import BIBTEX
from micam_core.cli import main
from micam_core.figure import PNG_DPI, layout, make_figure
from micam_core.figure import export_figure as export


@pytest.fixture(scope="module")
def view(bundled, cat_path):
    exp = explain(bundled, cat_path)
    return exp, analyse(bundled, exp, steps=4)


def pdf_page(path, tmp_path) -> np.ndarray:
    """The PDF's first page rendered by poppler at 72 dpi (one pixel per point)."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (Debian poppler-utils) is not installed; .ci/run installs it")
    subprocess.run(["pdftoppm", "-r", "72", "-png", "-singlefile", str(path), str(tmp_path / "page")], check=True,
                   timeout=60)
    return np.asarray(Image.open(tmp_path / "page.png").convert("L"))


def test_full_figure_in_three_formats_with_caption_and_bib(view, bundled, tmp_path):
    exp, faith = view
    paths = export(exp, tmp_path, "cat_figure", model=bundled.spec, revision=bundled.revision, faith=faith)
    assert [p.rsplit("/", 1)[1] for p in paths] == [f"cat_figure.{x}" for x in ("pdf", "svg", "png", "txt", "bib")]
    geo = layout(3, 1.0, counterfactuals=True, curves=True, caption_lines=geo_lines(tmp_path / "cat_figure.txt"))
    page = pdf_page(tmp_path / "cat_figure.pdf", tmp_path)
    assert abs(page.shape[1] - geo.width * 72) <= 1 and abs(page.shape[0] - geo.height * 72) <= 1, page.shape
    assert page.shape[1] == 504  # 7 in: a two-column page width
    assert page.std() > 20, "the rendered page is blank"
    root = ET.parse(tmp_path / "cat_figure.svg").getroot()
    assert root.tag.endswith("svg") and root.get("width") == f"{geo.width * 72:g}pt"
    images = root.findall(".//{http://www.w3.org/2000/svg}image")
    assert len(images) == 1 + 3 + 6 + 1  # input, maps, keep/remove per map, colour bar
    with Image.open(tmp_path / "cat_figure.png") as png:
        assert png.info["dpi"] == pytest.approx((PNG_DPI, PNG_DPI), abs=0.1)
        assert png.width == round(geo.width * PNG_DPI) and abs(png.height - geo.height * PNG_DPI) <= 1
    caption = (tmp_path / "cat_figure.txt").read_text()
    for fact in (bundled.spec, f"layer {exp.layer}", exp.target_label, "MI CAM", "Grad-CAM", "MI-Grad-CAM",
                 f"map >= {faith.threshold:g}", f"{faith.steps} steps", "opacity 0.50", "colour map jet"):
        assert fact in caption, fact
    assert (tmp_path / "cat_figure.bib").read_text().strip() == BIBTEX.strip()
    assert "@article{iyer2025micam" in BIBTEX


def geo_lines(path) -> int:
    import textwrap

    from micam_core.figure import CAPTION_CHARS

    return len(textwrap.wrap(path.read_text().strip(), CAPTION_CHARS))


def test_maps_only_figure_is_shorter_and_follows_the_chosen_methods(view, tmp_path):
    exp, faith = view
    export(exp, tmp_path / "a", "two", methods=["gradcam", "micam"], labels={"micam": "Ours"}, cmap="viridis",
           formats=["svg"])
    root = ET.parse(tmp_path / "a" / "two.svg").getroot()
    assert len(root.findall(".//{http://www.w3.org/2000/svg}image")) == 1 + 2 + 1
    text = " ".join(t for t in root.itertext())
    assert "Ours" in text and "Grad-CAM" in text and "MI-Grad-CAM" not in text
    full = float(ET.parse(export(exp, tmp_path / "b", "full", faith=faith, formats=["svg"])[0]).getroot()
                 .get("height").removesuffix("pt"))
    assert float(root.get("height").removesuffix("pt")) < full


def test_bad_requests_are_refused(view, tmp_path):
    exp, _ = view
    with pytest.raises(ValueError, match="format"):
        export(exp, tmp_path, "x", formats=["gif"])
    with pytest.raises(ValueError, match="No maps"):
        make_figure(exp, methods=["nonesuch"])
    with pytest.raises(ValueError, match="colour map"):
        make_figure(exp, cmap="rainbow")


def test_cli_figure_flag(tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(EXAMPLES / "coffee.jpg"), "--out", str(out), "--figure", "--methods", "micam,gradcam"]
    assert main(args) == 0
    for suffix in ("pdf", "svg", "png", "txt", "bib"):
        assert (out / f"coffee_figure.{suffix}").stat().st_size > 0, suffix
    with Image.open(out / "coffee_figure.png") as png:
        assert round(png.info["dpi"][0]) == PNG_DPI
    assert "coffee_figure.pdf" in json.loads((out / "coffee.json").read_text())["figure"]
