"""The page in headless Chromium: upload the cat, press Explain, see maps and counterfactuals; screenshot."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
CAT = ROOT / "examples" / "chelsea_cat.jpg"
# Written on every run (tests/artifacts/); the layout test also writes the screenshots in docs/ for review.
SCREENSHOT = ROOT / "tests" / "artifacts" / "screenshot.png"
DOCS = ROOT / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_url(server_url):
    if not (Path(CHROMIUM).is_file() or shutil.which("chromium")):
        pytest.skip(f"{CHROMIUM} is not installed: the browser test needs Debian's chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return server_url


def image_src(page, elem_id: str) -> str | None:
    return page.locator(f"#{elem_id} img").first.get_attribute("src")


def overlay_changed(page, before: str | None, timeout: int) -> bool:
    """Whether MI CAM's overlay shows an image other than ``before`` within ``timeout`` ms."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            "([sel, old]) => { const i = document.querySelector(sel); return i && i.src && i.src !== old; }",
            arg=["#overlay-micam img", before], timeout=timeout)
    except PlaywrightTimeout:
        return False
    return True


def page_state(page) -> str:
    """The slider's value, the status bar and any toast, for a failure message."""
    value = page.locator("#opacity input[type=range]").input_value()
    toasts = " | ".join(page.locator(".toast-body").all_inner_texts())
    status = page.locator("#status").inner_text() if page.locator("#status").count() else ""
    return f"slider={value!r} status={status[:200]!r} toasts={toasts[:400]!r}"


def check_overlay_download_and_fullscreen(page, folder: Path) -> None:
    """A map block's button saves its overlay as a PNG named after the method; a click on it goes full screen."""
    from PIL import Image

    with page.expect_download() as download:
        page.locator("#overlay-col-micam .overlay-dl").click()
    assert download.value.suggested_filename == "micam_overlay.png"
    saved = folder / "saved.png"
    download.value.save_as(saved)
    assert Image.open(saved).format == "PNG" and Image.open(saved).size == (224, 224)
    page.locator("#overlay-micam img").click()
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.matches('img.zoomable')",
                           timeout=10_000)
    page.evaluate("() => document.exitFullscreen()")


@pytest.mark.slow
def test_explain_in_browser(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(page_url, wait_until="domcontentloaded")
            expect(page.locator("#explain-btn")).to_be_visible(timeout=60_000)
            expect(page.locator("#model-info")).to_contain_text("default layer", timeout=120_000)

            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
            page.locator("#explain-btn").click()

            for method in ("micam", "gradcam", "migradcam"):
                expect(page.locator(f"#overlay-{method} img").first).to_be_visible(timeout=120_000)
            expect(page.locator("#predictions")).to_contain_text("cat", timeout=30_000)
            check_overlay_download_and_fullscreen(page, tmp_path)
            for method in ("micam", "gradcam", "migradcam"):
                expect(page.locator(f"#keep-{method} img").first).to_be_visible(timeout=180_000)
                expect(page.locator(f"#remove-{method} img").first).to_be_visible(timeout=30_000)
                expect(page.locator(f"#flip-{method}")).to_contain_text("flipped", ignore_case=True, timeout=30_000)
            expect(page.locator("#metrics")).to_contain_text("Centred Gaussian", timeout=30_000)
            page.locator("#curves").scroll_into_view_if_needed()
            expect(page.locator("#curves img").first).to_be_visible(timeout=30_000)
            page.get_by_text("Downloads and a figure for a paper").click()
            expect(page.locator("#downloads")).to_contain_text(re.compile(r"explanation\s*\.json"), timeout=30_000)
            expect(page.locator("#upsampling-note")).to_contain_text("Gaussian", timeout=30_000)
            assert "Could not finish" not in page.locator("body").inner_text()

            # Opacity only: the overlays are redrawn from the stored maps (no model call).
            page.get_by_text("Display: map opacity").click()
            before = image_src(page, "overlay-micam")
            start = time.perf_counter()
            page.locator("#opacity input[type=range]").fill("0.8")
            if not overlay_changed(page, before, timeout=30_000):
                # Seen once in CI (passes alone): record what the page showed, then check a second change lands.
                warnings.warn(f"opacity 0.8 did not redraw #overlay-micam within 30 s: {page_state(page)}",
                              stacklevel=1)
                page.screenshot(path=str(SCREENSHOT.with_name("opacity-lost.png")), full_page=True)
                page.locator("#opacity input[type=range]").fill("0.7")
                assert overlay_changed(page, before, timeout=30_000), f"opacity never redraws: {page_state(page)}"
            print(f"\nopacity re-render in the browser: {1000 * (time.perf_counter() - start):.0f} ms")

            page.wait_for_timeout(500)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 50_000


def open_page(p, url: str):
    from playwright.sync_api import expect

    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(url, wait_until="domcontentloaded")
    expect(page.locator("#model-info")).to_contain_text("default layer", timeout=120_000)
    return browser, page


def custom_spec_box(page):
    """The box for any Hub id, inside the collapsed "Other models and limits" panel (opened here)."""
    page.get_by_text("Other models and limits").click()
    return page.locator("#custom-spec textarea, #custom-spec input").first


@pytest.mark.slow
def test_non_default_methods_in_browser(page_url):
    """Choose Eigen-CAM and LayerCAM instead of MI-Grad-CAM: their overlays and counterfactual columns appear."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
            methods = page.locator("#methods")
            methods.get_by_label("MI-Grad-CAM").uncheck()
            methods.get_by_label("Eigen-CAM").check()
            methods.get_by_label("LayerCAM").check()
            page.locator("#explain-btn").click()
            for method in ("micam", "gradcam", "eigencam", "layercam"):
                expect(page.locator(f"#overlay-{method} img").first).to_be_visible(timeout=120_000)
                expect(page.locator(f"#flip-{method}")).to_contain_text("flipped", ignore_case=True, timeout=180_000)
                page.locator(f"#keep-{method}").scroll_into_view_if_needed()  # the images load lazily, in view
                expect(page.locator(f"#keep-{method} img").first).to_be_visible(timeout=30_000)
            expect(page.locator("#overlay-migradcam")).to_be_hidden()
            expect(page.locator("#cf-migradcam")).to_be_hidden()
            expect(page.locator("#metrics")).to_contain_text("Eigen-CAM", timeout=30_000)
            expect(page.locator("#metrics")).to_contain_text("LayerCAM", timeout=30_000)
            expect(page.locator("#upsampling-note")).to_contain_text("MI CAM and Eigen-CAM are class-agnostic")
            page.wait_for_timeout(500)
            page.screenshot(path=str(SCREENSHOT.with_name("methods.png")), full_page=True)
        finally:
            browser.close()


MARKUP = ["<img src=x onerror=alert(1)>", "`</code><img src=x>", "<svg onload=alert(1)><b>bold</b>"]


@pytest.mark.slow
def test_markup_in_the_model_box_stays_text(page_url):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            alerts = []
            page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
            box = custom_spec_box(page)
            for markup in MARKUP:
                box.fill(markup)
                box.press("Enter")
                expect(page.locator("#model-info")).to_contain_text("Model not loaded", timeout=60_000)
                expect(page.locator("#model-info")).to_contain_text(markup[:12], timeout=30_000)
                for where in ("#model-info", "#alert", ".toast-body"):
                    assert page.locator(f"{where} img").count() == 0, (markup, where)
                    assert page.locator(f"{where} b").count() == 0, (markup, where)
                for where in ("#model-info", "#alert"):
                    assert page.locator(f"{where} svg").count() == 0, (markup, where)
            page.screenshot(path=str(SCREENSHOT.with_name("markup.png")), full_page=False)
            assert not alerts
        finally:
            browser.close()


@pytest.mark.slow
def test_vision_transformer_in_browser(page_url, hub_models):
    """A ViT (random weights, from the Hub-layout cache) typed into the model box: its maps appear."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            box = custom_spec_box(page)
            box.fill(f"hf-hub:{hub_models['vit']}")
            box.press("Enter")
            expect(page.locator("#model-info")).to_contain_text("VisionTransformer", timeout=120_000)
            expect(page.locator("#model-info")).to_contain_text("3 classes")
            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
            page.locator("#methods").get_by_label("Eigen-CAM").check()
            page.locator("#explain-btn").click()
            for method in ("micam", "gradcam", "migradcam", "eigencam"):
                expect(page.locator(f"#overlay-{method} img").first).to_be_visible(timeout=120_000)
                expect(page.locator(f"#flip-{method}")).not_to_be_empty(timeout=180_000)
                page.locator(f"#keep-{method}").scroll_into_view_if_needed()  # the images load lazily, in view
                expect(page.locator(f"#keep-{method} img").first).to_be_visible(timeout=30_000)
            expect(page.locator("#upsampling-note")).to_contain_text("blocks", timeout=30_000)
            assert "Could not finish" not in page.locator("body").inner_text()
            page.wait_for_timeout(500)
            page.screenshot(path=str(SCREENSHOT.with_name("vit.png")), full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_one_method_of_each_family_in_browser(page_url, hub_models):
    """One method of each family of the selector: its overlay and counterfactual column appear. On the CNN,
    the transformer-only LeGrad is listed greyed out with its reason; on a ViT it runs."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            methods = page.locator("#methods")
            legrad = methods.get_by_label("LeGrad")
            expect(legrad).to_be_disabled(timeout=30_000)
            expect(methods).to_contain_text(re.compile(r"Transformer-only › LeGrad · [^—]+ — unavailable: it reads the "
                                                       "attention maps of vision-transformer blocks"))
            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
            methods.get_by_label("MI-Grad-CAM").uncheck()
            methods.get_by_label("SmoothGrad-CAM++").check()  # perturbation (extra passes)
            methods.get_by_label("RefineCAM").check()  # multi-layer
            page.locator("#explain-btn").click()
            for method in ("micam", "gradcam", "smoothgradcampp", "refinecam"):  # free, gradient, and the two
                for part in ("overlay", "keep"):
                    image = page.locator(f"#{part}-{method} img").first
                    expect(image).to_be_attached(timeout=180_000)
                    image.scroll_into_view_if_needed()  # lazy images below the fold have no size yet
                    expect(image).to_be_visible(timeout=30_000)
            expect(page.locator("#metrics")).to_contain_text("RefineCAM", timeout=30_000)
            box = custom_spec_box(page)
            box.fill(f"hf-hub:{hub_models['vit']}")
            box.press("Enter")
            expect(page.locator("#model-info")).to_contain_text("VisionTransformer", timeout=120_000)
            expect(legrad).to_be_enabled(timeout=30_000)
            legrad.check()  # transformer-only
            # Explain again while the CNN's panel may still be scoring: that run is cancelled and the ViT's panel
            # follows (a run still going once dropped the new one, and LeGrad never got its keep/remove column).
            page.locator("#explain-btn").click()
            for part in ("overlay", "keep"):
                image = page.locator(f"#{part}-legrad img").first
                expect(image).to_be_attached(timeout=180_000)
                image.scroll_into_view_if_needed()
                expect(image).to_be_visible(timeout=30_000)
            for method in ("smoothgradcampp", "refinecam", "legrad"):  # the ViT's own verdicts (its classes)
                expect(page.locator(f"#flip-{method}")).to_contain_text("class ", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SCREENSHOT.with_name("families.png")), full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_legrad_counterfactual_column_after_switching_to_a_vit(page_url, hub_models):
    """LeGrad alone on a ViT typed into the model box: its keep/remove column appears."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            box = custom_spec_box(page)
            box.fill(f"hf-hub:{hub_models['vit']}")
            box.press("Enter")
            expect(page.locator("#model-info")).to_contain_text("VisionTransformer", timeout=120_000)
            page.locator("#methods").get_by_label("LeGrad").check()
            page.locator("#explain-btn").click()
            image = page.locator("#keep-legrad img").first
            expect(image).to_be_attached(timeout=120_000)
        finally:
            browser.close()
