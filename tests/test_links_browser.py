"""Permalinks in a real browser (Chromium): a link restores and explains its view; hostile links are refused."""

from __future__ import annotations

import re
import time

import pytest
from test_browser import CAT, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT, page_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

VIEW = ("example=coffee&methods=micam,eigencam&target=968&threshold=0.4&steps=8&cmap=viridis&opacity=0.6"
        "&upsampling=bilinear&fill=mean")


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def normal_visit(page, url: str) -> float:
    """Seconds from opening the page to maps on screen for a visitor who uploads the cat and presses Explain."""
    from playwright.sync_api import expect

    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#input-image input[type=file]").set_input_files(str(CAT))
    expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
    expect(page.locator("#model-info")).to_contain_text("default layer", timeout=120_000)
    page.locator("#explain-btn").click()
    expect(page.locator("#overlay-micam img").first).to_be_visible(timeout=180_000)
    seconds = time.perf_counter() - start
    expect(page.locator("#metrics")).not_to_contain_text("scoring", timeout=180_000)  # its panel done: no work
    return seconds  # left running on the server to slow the next timing


@pytest.mark.slow
def test_permalink_restores_and_explains_its_view(page_url):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            normal_visit(page, page_url)  # warm-up: the model is loaded and cached for both timings
            start = time.perf_counter()
            page.goto(f"{page_url}?{VIEW}", wait_until="domcontentloaded")
            for method in ("micam", "eigencam"):
                expect(page.locator(f"#overlay-{method} img").first).to_be_visible(timeout=180_000)
            t_link = time.perf_counter() - start
            expect(page.locator("#overlay-gradcam")).to_be_hidden()
            expect(page.locator("#upsampling-note")).to_contain_text("target class 968", timeout=30_000)
            expect(page.locator("#upsampling-note")).to_contain_text("bilinear")
            expect(page.locator("#metrics")).to_contain_text("Eigen-CAM", timeout=180_000)
            expect(page.locator("#keep-eigencam img").first).to_be_visible(timeout=30_000)
            link = page.locator("#link textarea, #link input").first
            expect(link).to_have_value(re.compile(r"example=coffee.*target=968.*threshold=0\.4"),
                                       timeout=30_000)
            assert link.input_value().startswith(page_url.rstrip("/"))
            assert "fill=mean" in link.input_value() and "cmap=viridis" in link.input_value()
            page.screenshot(path=str(SCREENSHOT.with_name("permalink.png")), full_page=True)

            t_click = normal_visit(page, page_url)
            print(f"\nmaps on screen: permalink {t_link:.1f} s after opening; open + upload + Explain {t_click:.1f} s")
            assert t_link <= 1.5 * t_click + 5.0
        finally:
            browser.close()


@pytest.mark.slow
def test_hostile_link_is_refused_in_words(page_url):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    hostile = ("example=../../etc/passwd&target=%3Cscript%3Ewindow.pwned%3D1%3C/script%3E&steps=1e308"
               "&model=local-dir:/etc&methods=micam,%3Cimg%20src=x%3E&opacity=nan&layer=a%3Cb%3Ec&colour=red")
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{page_url}?{hostile}", wait_until="domcontentloaded")
            alert = page.locator("#link-alert")
            expect(alert).to_contain_text("Some link parameters were ignored", timeout=120_000)
            for words in ("name of an example", "steps", "local folders", "Methods (methods)", "opacity", "colour"):
                expect(alert).to_contain_text(words)
            assert page.locator("#link-alert script, #link-alert img, #link-alert b").count() == 0
            assert page.evaluate("() => window.pwned === undefined")
            expect(page.locator("#model-info")).to_contain_text("default layer", timeout=60_000)
            page.wait_for_timeout(1500)
            assert page.locator("#overlay-micam img").count() == 0, "a hostile link must not explain anything"
            assert not dialogs
        finally:
            browser.close()


@pytest.mark.slow
def test_figure_export_from_the_page(page_url):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{page_url}?example=chelsea_cat&steps=4", wait_until="domcontentloaded")
            expect(page.locator("#link-alert")).to_contain_text("Not in the link, so the defaults are used: model",
                                                                timeout=60_000)
            expect(page.locator("#metrics")).to_contain_text("MI-Grad-CAM", timeout=180_000)
            expect(page.locator("#metrics")).not_to_contain_text("scoring", timeout=180_000)
            page.get_by_text("Downloads and a figure for a paper").click()
            page.locator("#figure-btn").click()
            expect(page.locator("#figure-preview img").first).to_be_visible(timeout=60_000)
            files = page.locator("#figure-files")
            stem = r"micam_efficientnet_lite0_chelsea_cat_micam-gradcam-migradcam"
            for suffix in ("pdf", "svg", "png", "txt", "tex", "bib"):  # the file list shows "name .pdf"
                expect(files).to_contain_text(re.compile(rf"{stem}\s*\.{suffix}"), timeout=30_000)
        finally:
            browser.close()


@pytest.mark.slow
def test_egyptian_cat_sentence_in_browser(page_url):  # noqa: F811
    """Target 285 on the cat (top-1 is tiger cat): removing Grad-CAM's region raises it; never called a flip."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{page_url}?example=chelsea_cat&methods=gradcam&target=285&steps=4",
                      wait_until="domcontentloaded")
            flip = page.locator("#flip-gradcam")
            expect(flip).to_contain_text("raises Egyptian cat from 34% to 63%", timeout=240_000)
            expect(flip).to_contain_text("Target not top-1")
            assert "flip" not in flip.inner_text().lower()
            expect(page.locator("#metrics")).to_contain_text("n/a: target not top-1", timeout=30_000)
        finally:
            browser.close()


@pytest.mark.slow
def test_method_parameters_travel_in_a_link(page_url):  # noqa: F811
    """A method's parameters: restored from a link into their widgets (shown only for chosen methods that have
    any), used by Explain, and written back into the link."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.locator("#explain-btn")).to_be_visible(timeout=60_000)
            expect(page.locator("#method-params")).to_be_hidden()  # the default methods have no parameters
            page.goto(f"{page_url}?example=chelsea_cat&methods=gradcam,finercam&finercam_comparisons=2"
                      "&finercam_strength=0.7&steps=4", wait_until="domcontentloaded")
            expect(page.locator("#overlay-finercam img").first).to_be_visible(timeout=180_000)
            link = page.locator("#link textarea, #link input").first
            expect(link).to_have_value(re.compile(r"finercam_strength=0\.7&finercam_comparisons=2"), timeout=60_000)
            expect(page.locator("#method-params")).to_be_visible()
            page.get_by_text("Parameters of the chosen methods").click()
            box = page.locator("#param-finercam_comparisons input")
            expect(box).to_have_value("2", timeout=10_000)
            expect(page.locator("#params-sscam")).to_be_hidden()
            box.fill("4")
            box.press("Tab")
            page.locator("#explain-btn").click()
            expect(link).to_have_value(re.compile(r"finercam_comparisons=4"), timeout=180_000)
        finally:
            browser.close()
