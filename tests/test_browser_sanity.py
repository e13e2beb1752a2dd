"""The sanity-check accordion in a real browser: cost first, then verdicts in words and the figure."""

from __future__ import annotations

import pytest
from test_browser import CAT, SCREENSHOT, open_page, page_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


@pytest.mark.slow
def test_sanity_checks_in_browser(page_url):  # noqa: F811 (the imported fixture)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = open_page(p, page_url)
        try:
            page.locator("#input-image input[type=file]").set_input_files(str(CAT))
            expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
            page.locator("#explain-btn").click()
            expect(page.locator("#metrics")).to_contain_text("Centred Gaussian", timeout=180_000)
            page.locator("#sanity").get_by_text("Sanity checks", exact=False).first.click()
            expect(page.locator("#sanity-cost")).to_contain_text("3 forward and backward passes", timeout=60_000)
            expect(page.locator("#sanity-result")).to_be_empty()  # nothing has run yet
            page.locator("#sanity-btn").click()
            result = page.locator("#sanity-result")
            expect(result).to_contain_text("Grad-CAM passes", timeout=180_000)
            expect(result).to_contain_text("MI CAM: maps for")
            expect(result).to_contain_text("by construction")
            expect(result).to_contain_text("Random map (baseline) ignores the model")
            expect(page.locator("#sanity-plot img").first).to_be_visible(timeout=30_000)
            page.locator("#sanity").scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#sanity").screenshot(path=str(SCREENSHOT.with_name("sanity.png")))
        finally:
            browser.close()
