"""Latency of the app as a visitor sees it: issue 18's three targets, then the everyday actions.

    OMP_NUM_THREADS=1 python bench/app_latency.py [--runs 3] [--loads 9] [--image PATH] [--no-browser] [--no-actions]

Launches the app in this process on a free port (bundled model, loaded before timing; the three default
methods; CPU). The targets, each side of a ratio measured in the same run:

* maps -> first keep/remove predictions, against the 6 forward passes they need (3 maps x keep, remove);
* the whole counterfactual panel (pairs, metrics map by map, curves), against its forward-pass floor;
* the page's controls (Target layer, Target class, Methods) ready, against the page's first paint (median of
  ``--loads`` loads at 1366 x 900, each in a fresh browser context: a single load is noisy).

The panel is timed twice: through the app's staged handler (``Handlers.on_counterfactuals``, what the
server does per click) and in headless Chromium (Playwright; the Gradio round trips, image files and
rendering included). The forward-pass floor is the time spent inside the model's forward calls, read from
the stages the handler ran. The image is a mirrored copy of ``--image``: an upload, never served from the
example cache.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
from bench.speed import median_time  # noqa: E402
from micam_app import blocks, work  # noqa: E402
from micam_core import BUNDLED_SPEC, DEFAULT_METHODS  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
TARGETS = {"first": 1.2, "panel": 1.1, "controls": 1.0}
DISPLAY = {"cmap": "jet", "opacity": 0.5}
# In the page: when the maps, every method's keep/remove predictions, the curves and the controls are there.
TIMING_JS = """(methods) => {
  window.__t = {};
  const t = window.__t;
  const text = (sel) => (document.querySelector(sel) || {textContent: ''}).textContent;
  const controls = () => {
    const layer = document.querySelector('#layer input'), target = document.querySelector('#target input');
    const boxes = [...document.querySelectorAll('#methods input[type=checkbox]')];
    const busy = [...document.querySelectorAll('#layer, #target, #methods')].some(
      (e) => e.querySelector('.progress-text, .eta-bar, .meta-text') || /Loading/.test(e.textContent));
    return layer && !layer.disabled && layer.value.startsWith('auto: ') && target && target.value
      && boxes.some((b) => b.checked && !b.disabled) && !busy;
  };
  const check = () => {
    const now = performance.now();
    if (!t.controls && controls()) t.controls = now;
    if (!t.maps && document.querySelector('#overlay-micam img[src]')) t.maps = now;
    if (t.maps && !t.first && methods.every((m) => text('#keep-top-' + m).includes('Kept')
                                               && text('#remove-top-' + m).includes('Removed'))) t.first = now;
    if (t.first && !t.panel && document.querySelector('#curves img[src]')) t.panel = now;
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true,
                                                 characterData: true});
  const frame = () => { check(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
}"""
PAINT_JS = """() => Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])
  .concat([['domcontentloaded', performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd]]))"""


class Floor:
    """The forward-pass seconds of the panel's stages, read from what the GPU functions return."""

    def __init__(self) -> None:
        self.first = self.total = 0.0
        self._keep_remove, self._score = work.gpu_keep_remove, work.gpu_score

    def keep_remove(self, *args):
        stage = self._keep_remove(*args)
        self.first = stage.forward_seconds
        self.total += stage.forward_seconds
        return stage

    def score(self, *args):
        stage = self._score(*args)
        self.total += stage.forward_seconds
        return stage

    def reset(self) -> None:
        self.first = self.total = 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def last(updates) -> dict:
    """The streaming handlers' updates, merged (what the page shows at the end)."""
    out: dict = {}
    for update in updates:
        out.update(update)
    return out


def handler_panel(session: dict, floor: Floor) -> dict[str, tuple[float, float]]:
    """One panel through the staged handler: wall and floor seconds to the first pairs and to the curves."""
    h, ui = app.HANDLERS, app.UI
    floor.reset()
    start, first = time.perf_counter(), None
    for update in h.on_counterfactuals(session, **DISPLAY):
        if first is None and all(blocks.has_photos(update.get(ui.c["pairs"]), m) for m in DEFAULT_METHODS):
            first = time.perf_counter() - start
        if update.get(ui.c["curves"]) is not None:
            return {"first": (first, floor.first), "panel": (time.perf_counter() - start, floor.total)}
    raise RuntimeError("the panel ended without curves")


def opened(browser, url: str, height: int):
    """A page of ``url`` in a fresh browser context at 1366 x ``height``, timed by TIMING_JS, its controls ready."""
    page = browser.new_page(viewport={"width": 1366, "height": height})
    page.add_init_script(f"({TIMING_JS})({list(DEFAULT_METHODS)!r})")
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function("() => window.__t && window.__t.controls", timeout=60_000)
    return page


def page_loads(url: str, loads: int) -> dict[str, list[tuple[float, float]]]:
    """Page loads only (a fresh browser context each, so nothing cached): controls ready after the first
    contentful paint and after DOMContentLoaded. One load is cheap and noisy; the target is their median."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[tuple[float, float]]] = {"controls": [], "controls_dcl": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(loads):
                page = opened(browser, url, 900)
                paint, t = page.evaluate(PAINT_JS), page.evaluate("window.__t")
                first_paint = paint.get("first-contentful-paint", paint.get("first-paint"))
                out["controls"].append(((t["controls"] - first_paint) / 1000, 1.0))
                out["controls_dcl"].append(((t["controls"] - paint["domcontentloaded"]) / 1000, 1.0))
                page.close()
        finally:
            browser.close()
    return out


def browser_runs(url: str, image: Path, runs: int, floor: Floor) -> dict[str, list[tuple[float, float]]]:
    """The page in Chromium: Explain and the panel, in a window tall enough to hold all of it."""
    from playwright.sync_api import expect, sync_playwright

    out: dict[str, list[tuple[float, float]]] = {"first": [], "panel": [], "click_maps": [], "click_first": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(runs):
                page = opened(browser, url, 3000)  # everything in view
                page.locator("#input-image input[type=file]").set_input_files(str(image))
                expect(page.locator("#input-image img").first).to_be_visible(timeout=30_000)
                floor.reset()
                clicked = page.evaluate("performance.now()")
                page.locator("#explain-btn").click()
                page.wait_for_function("() => window.__t.panel", timeout=300_000)
                t = page.evaluate("window.__t")
                out["click_maps"].append(((t["maps"] - clicked) / 1000, 1.0))
                out["click_first"].append(((t["first"] - clicked) / 1000, 1.0))
                out["first"].append(((t["first"] - t["maps"]) / 1000, floor.first))
                out["panel"].append(((t["panel"] - t["maps"]) / 1000, floor.total))
                page.close()
        finally:
            browser.close()
    return out


def target_rows(handler: list[dict], browser: dict | None) -> list[str]:
    """The targets table: median wall, median floor, median ratio (of each run's own two sides)."""
    rows = ["| target (bundled model, micam, gradcam, migradcam, CPU) | measured where | wall (median) "
            "| against (median) | ratio | target | met |", "|---|---|---:|---:|---:|---:|---|"]
    names = {"first": "maps -> first keep/remove predictions (6 forward passes)",
             "panel": "maps -> whole panel: pairs, metrics, curves (forward-pass floor)"}

    def row(what: str, where: str, pairs: list[tuple[float, float]], against: str, target: float) -> str:
        wall = statistics.median(w for w, _ in pairs)
        base = statistics.median(f for _, f in pairs)
        ratio = statistics.median(w / f for w, f in pairs)
        met = "yes" if ratio <= target else "**no**"
        return (f"| {what} | {where} | {wall:.2f} s | {against.format(base)} | {ratio:.2f}x | <= {target}x "
                f"| {met} |")

    for key, what in names.items():
        rows.append(row(what, "staged handler", [r[key] for r in handler], "{:.2f} s forward", TARGETS[key]))
        if browser:
            rows.append(row(what, "Chromium", browser[key], "{:.2f} s forward", TARGETS[key]))
    if browser:
        for key, since in (("controls", "first contentful paint"), ("controls_dcl", "DOMContentLoaded")):
            pairs = browser[key]
            wall = statistics.median(w for w, _ in pairs)
            judged = key in TARGETS  # (after DOMContentLoaded: for reference, no target)
            target = f"<= {TARGETS[key]:g} s" if judged else "-"
            met = ("yes" if wall <= TARGETS[key] else "**no**") if judged else "-"
            rows.append(f"| controls ready (layer, class, methods) after the {since} ({len(pairs)} loads) "
                        f"| Chromium | {wall:.2f} s | - | - | {target} | {met} |")
        for key, what in (("click_maps", "maps"), ("click_first", "every method's keep/remove predictions")):
            wall = statistics.median(w for w, _ in browser[key])
            rows.append(f"| Explain clicked -> {what} on screen (no target) | Chromium | {wall:.2f} s "
                        "| - | - | - | - |")
    return rows


def action_rows(client, image: Path, session: dict, runs: int) -> list[str]:
    """Everyday actions: a full Explain through the API, restyle, upsampling, threshold."""
    from gradio_client import handle_file

    h = app.HANDLERS

    def full_explain():
        return client.predict(handle_file(str(image)), BUNDLED_SPEC, api_name="/explain")

    full_explain()  # warms up the endpoint
    t_full = median_time(full_explain, runs, warmup=0)
    t_restyle = median_time(lambda: h.on_restyle(session, cmap="viridis", opacity=0.3), runs, warmup=0)
    t_upsample = median_time(lambda: h.on_upsampling(session, "bilinear", **DISPLAY), runs, warmup=0)
    cf = {"threshold": 0.6, "fill": "black", "steps": 32, **DISPLAY}
    t_threshold = median_time(lambda: last(h.on_counterfactuals(session, **cf)), runs, warmup=0)
    example = {**session, "example": "chelsea_cat", "view": session["view"].replace(example="chelsea_cat")}  # the key
    t_cached = median_time(lambda: last(h.on_counterfactuals(example, **cf)), runs, warmup=1)
    return ["| action (bundled model, loaded) | median |", "|---|---:|",
            f"| full Explain through the API (maps, counterfactuals, metrics, report; 32 steps) | {t_full:.2f} s |",
            f"| opacity or colour map changed (re-render only, no forward pass) | {t_restyle * 1000:.0f} ms |",
            f"| display upsampling changed (maps re-derived; no explain pass) | {t_upsample * 1000:.0f} ms |",
            f"| threshold or fill changed (counterfactuals only, no explain pass) | {t_threshold:.2f} s |",
            f"| the same on an example photo, second time (lazy example cache) | {t_cached * 1000:.0f} ms |"]


def main() -> None:
    from gradio_client import Client
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    parser.add_argument("--loads", type=int, default=9,
                        help="page loads for the controls target (default 9; their median is the target)")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium rows")
    parser.add_argument("--no-actions", action="store_true", help="the targets only")
    args = parser.parse_args()
    image = Path(tempfile.mkdtemp(prefix="micam_bench_")) / "upload.png"  # an upload: no example cache
    Image.open(args.image).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    floor = Floor()
    work.gpu_keep_remove, work.gpu_score = floor.keep_remove, floor.score
    port = free_port()
    app.demo.queue(default_concurrency_limit=4).launch(prevent_thread_lock=True, server_name="127.0.0.1",
                                                       server_port=port, quiet=True, **app.LAUNCH_KWARGS)
    url = f"http://127.0.0.1:{port}/"
    try:
        out = last(app.HANDLERS.on_explain(str(image), BUNDLED_SPEC, "", "auto", "top-1", None, None,
                                           methods=list(DEFAULT_METHODS), upsampling="paper", **DISPLAY))
        session = out[app.UI.c["session"]]
        handler_panel(session, floor)  # warm-up
        handler: list[dict] = []
        browser: dict[str, list] | None = None
        if not args.no_browser and Path(CHROMIUM).is_file():
            browser_runs(url, image, 1, floor)  # warm-up (first page load, first upload)
            browser = {}
        for _ in range(args.runs):  # the two ways interleaved, so a busy machine moves both alike
            handler.append(handler_panel(session, floor))
            if browser is not None:
                for key, pairs in browser_runs(url, image, 1, floor).items():
                    browser.setdefault(key, []).extend(pairs)
        if browser is not None:
            browser.update(page_loads(url, args.loads))
        print("\n".join(target_rows(handler, browser)))
        if not args.no_actions:
            print()
            print("\n".join(action_rows(Client(url, verbose=False), image, session, args.runs)))
    finally:
        app.demo.close()


if __name__ == "__main__":
    main()
