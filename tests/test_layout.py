"""The page as users meet it, at 1366 x 900 and on a 390 px phone: Explain above the fold, nothing cut or
covered, toasts that go, one status bar, stale results marked, links that say what they lack, Copy link that
confirms, a phone page at most half the old 10,583 px. Screenshots go to tests/artifacts/ for review."""

from __future__ import annotations

import re

import pytest
from test_browser import CAT, CHROMIUM, CHROMIUM_ARGS, SCREENSHOT, page_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

OLD_PHONE_PAGE_PX = 10_583
ARTIFACTS = SCREENSHOT.parent  # for review; docs/'s screenshots come from tools/screenshots.py (ROAD, sanity checks)
# Visible text that its box cuts off (ellipsis or hidden overflow), except screen-reader-only labels.
TRUNCATED_JS = """() => {
  const out = [];
  for (const e of document.querySelectorAll('label, label span, .panel-title, .method-title, button, '
                                             + '[data-testid="block-info"], #downloads a, #figure-files a')) {
    if (!e.offsetParent || e.closest('.sr-only, .hide, [aria-hidden="true"]')) continue;
    const s = getComputedStyle(e);
    const clips = s.textOverflow === 'ellipsis' || s.overflow === 'hidden' || s.overflowX === 'hidden';
    if (clips && e.scrollWidth > e.clientWidth + 1) out.push(e.textContent.trim().slice(0, 60));
  }
  return out;
}"""
# Gradio's floating label tags over pictures and plots (the old "title covers the legend"); titles sit above.
TAGS_JS = """() => [...document.querySelectorAll(
  '#curves [data-testid="block-label"], #sanity-plot [data-testid="block-label"]')]
  .filter(e => e.offsetParent && !e.classList.contains('sr-only') && !e.classList.contains('hide'))
  .map(e => e.textContent.trim())"""


def launch(p, width: int, height: int, **options):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    context = browser.new_context(viewport={"width": width, "height": height}, **options)
    return browser, context.new_page()


def explain_cat(page, image=CAT) -> None:
    from playwright.sync_api import expect

    page.locator("#input-image input[type=file]").set_input_files(str(image))
    expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
    page.locator("#explain-btn").click()
    expect(page.locator("#status")).to_be_visible(timeout=30_000)  # the one progress indicator, with Cancel
    expect(page.locator("#cancel-btn")).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("Centred Gaussian", timeout=180_000)
    expect(page.locator("#metrics")).not_to_contain_text("scoring", timeout=180_000)
    expect(page.locator("#status")).to_be_hidden(timeout=60_000)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")  # lazy pictures load
    page.wait_for_timeout(1200)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)


@pytest.mark.slow
def test_desktop_page(page_url, tmp_path):  # noqa: F811
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    upload = tmp_path / "my_cat.png"  # not one of the examples: it cannot travel in a link
    Image.open(CAT).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(upload)

    with sync_playwright() as p:
        browser, page = launch(p, 1366, 900, permissions=["clipboard-read", "clipboard-write"])
        try:
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.locator("#explain-btn")).to_be_visible(timeout=60_000)
            box = page.locator("#explain-btn").bounding_box()
            assert box["y"] + box["height"] <= 900, f"Explain is below the fold at 1366 x 900: {box}"
            expect(page.locator("#layer input")).to_have_value(re.compile(r"^auto: "), timeout=1_000)
            page.wait_for_timeout(1_000)
            busy = page.evaluate("() => [...document.querySelectorAll('.progress-text, .eta-bar, .meta-text')]"
                                 ".filter(e => e.offsetParent && !e.closest('.hide')).map(e => e.textContent)")
            assert busy == [] and "Loading the model" not in page.locator("body").inner_text(), busy

            page.locator("#explain-btn").click()  # no image yet: a toast that closes itself
            toast = page.locator(".toast-body").first
            expect(toast).to_contain_text("Add an image first", timeout=30_000)
            expect(toast).to_be_hidden(timeout=20_000)

            explain_cat(page, upload)
            assert page.evaluate(TRUNCATED_JS) == []
            assert page.evaluate(TAGS_JS) == []
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "layout-1366x900-page.png"), full_page=True)
            page.screenshot(path=str(ARTIFACTS / "layout-1366x900.png"))

            # an upload cannot travel in a link: the box says so and links the same settings
            expect(page.locator("#link-note")).to_contain_text("cannot travel in a link")
            link = page.locator("#link textarea, #link input").first
            expect(link).to_have_value(re.compile(r"methods=micam,gradcam,migradcam"), timeout=30_000)
            assert "example=" not in link.input_value()
            page.locator("#copy-link").click()
            expect(page.locator("#copy-link")).to_contain_text("Copied", timeout=5_000)
            assert page.evaluate("navigator.clipboard.readText()") == link.input_value()
            expect(page.locator("#copy-link")).to_have_text("Copy link", timeout=10_000)

            # a control changed: what is on screen is marked out of date at once
            page.locator("#methods input[name=\"gradcampp\"]").check()
            expect(page.locator("#maps-panel")).to_have_class(re.compile(r"\bpending\b"), timeout=2_000)
            expect(page.locator("#counterfactuals")).to_have_class(re.compile(r"\bpending\b"))

            url = link.input_value()
            other = page.context.new_page()
            other.goto(url, wait_until="domcontentloaded")
            expect(other.locator("#link-alert")).to_contain_text("This link holds no image", timeout=60_000)
            expect(other.locator("#methods")).to_be_visible()
        finally:
            browser.close()


@pytest.mark.slow
def test_phone_page(page_url):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = launch(p, 390, 844, is_mobile=True, has_touch=True, device_scale_factor=1)
        try:
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.locator("#explain-btn")).to_be_visible(timeout=60_000)
            explain_cat(page)
            height = page.evaluate("document.documentElement.scrollHeight")
            print(f"\nphone page height after an explanation: {height} px")
            assert height <= OLD_PHONE_PAGE_PX / 2, height
            assert page.evaluate(TRUNCATED_JS) == []
            assert page.evaluate(TAGS_JS) == [], "no label tag over a picture or a plot"
            expect(page.locator("#metrics-hint")).to_be_visible()  # the table scrolls, and says so
            assert page.locator("#metrics").evaluate(  # some box in the table scrolls sideways
                "e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 2 && "
                "['auto', 'scroll'].includes(getComputedStyle(x).overflowX))")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "layout-phone.png"), full_page=True)
            page.get_by_text("Downloads and a figure for a paper").click()
            files = page.locator("#downloads")
            expect(files).to_contain_text(re.compile(r"explanation_overlays\s*\.png"), timeout=30_000)
            assert "..." not in files.inner_text() and "…" not in files.inner_text()
            assert page.evaluate(TRUNCATED_JS) == []
        finally:
            browser.close()
