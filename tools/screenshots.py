"""The README's and docs/app.md's screenshots: the page at 1366 x 900 and on a 390 px phone, after one
Explain of the cat photo, with the counterfactual panel under ROAD and the sanity checks run.

    OMP_NUM_THREADS=1 python tools/screenshots.py [--out docs]

Launches the app in this process (bundled model, offline) and drives headless Chromium (Playwright,
/usr/bin/chromium). Writes screenshot.png (desktop, whole page), screenshot-1366x900.png (desktop, first
screen) and screenshot-phone.png (phone, whole page). The phone's run reads the desktop run's results from
the example cache, so ROAD's imputations run once.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SIZES = {"desktop": ({"width": 1366, "height": 900}, {}),
         "phone": ({"width": 390, "height": 844}, {"is_mobile": True, "has_touch": True, "device_scale_factor": 1})}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def explained_with_road(page, url: str) -> None:
    """Open the page, click the cat example, Explain, switch the panel to ROAD, run the sanity checks."""
    from playwright.sync_api import expect

    page.goto(url, wait_until="domcontentloaded")
    expect(page.locator("#explain-btn")).to_be_visible(timeout=60_000)
    page.locator("#examples img").nth(1).click()  # Chelsea the cat
    expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
    page.locator("#explain-btn").click()
    expect(page.locator("#metrics")).to_contain_text("Centred Gaussian", timeout=300_000)
    expect(page.locator("#status")).to_be_hidden(timeout=600_000)
    page.locator("#protocol label").filter(has_text="road:").click()
    expect(page.locator("#status")).to_be_visible(timeout=30_000)
    expect(page.locator("#status")).to_be_hidden(timeout=900_000)
    page.get_by_text("Sanity checks: parameter randomisation").click()
    page.locator("#sanity-btn").click()
    expect(page.locator("#sanity-plot img").first).to_be_attached(timeout=600_000)
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")  # lazy pictures load
    page.wait_for_timeout(1500)
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(500)


def main() -> None:
    from playwright.sync_api import sync_playwright

    import app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    port = free_port()
    app.demo.queue(default_concurrency_limit=4).launch(prevent_thread_lock=True, server_name="127.0.0.1",
                                                       server_port=port, quiet=True, **app.LAUNCH_KWARGS)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                for name, (viewport, options) in SIZES.items():
                    page = browser.new_context(viewport=viewport, **options).new_page()
                    explained_with_road(page, url)
                    if name == "desktop":
                        page.screenshot(path=str(args.out / "screenshot-1366x900.png"))
                        page.screenshot(path=str(args.out / "screenshot.png"), full_page=True)
                    else:
                        page.screenshot(path=str(args.out / "screenshot-phone.png"), full_page=True)
                    print(f"{name}: page {page.evaluate('document.documentElement.scrollHeight')} px tall")
            finally:
                browser.close()
    finally:
        app.demo.close()


if __name__ == "__main__":
    main()
