"""Latency of the app as a visitor sees it: a full Explain through the API, and a restyle.

    python bench/app_latency.py [--runs 5] [--image examples/chelsea_cat.jpg]

Launches the app in this process on a free port (bundled model, loaded before timing), then
times the ``explain`` endpoint through gradio_client (maps + counterfactuals + metrics + report,
32 steps) and the handlers behind the opacity / colour map / threshold controls.
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

import app  # noqa: E402
from bench.speed import median_time  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    from gradio_client import Client, handle_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    args = parser.parse_args()
    port = free_port()
    app.demo.queue(default_concurrency_limit=4).launch(prevent_thread_lock=True, server_name="127.0.0.1",
                                                       server_port=port, quiet=True, **app.LAUNCH_KWARGS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def full_explain():
            return client.predict(handle_file(str(args.image)), "bundled:efficientnet_lite0", api_name="/explain")

        full_explain()  # loads the model and warms up
        t_full = median_time(full_explain, args.runs, warmup=0)
        h = app.HANDLERS

        def last(updates) -> dict:  # the streaming handlers' updates, merged (what the page shows at the end)
            out: dict = {}
            for update in updates:
                out.update(update)
            return out

        display = {"cmap": "jet", "opacity": 0.5}
        cf = {"threshold": 0.6, "fill": "black", "steps": 32, **display}
        out = last(h.on_explain(str(args.image), "bundled:efficientnet_lite0", "", "auto", "top-1", None, None,
                                methods=["micam", "gradcam", "migradcam"], upsampling="paper", **display))
        session = out[app.UI.c["session"]]
        t_restyle = median_time(lambda: h.on_restyle(session, cmap="viridis", opacity=0.3), args.runs, warmup=0)
        t_upsample = median_time(lambda: h.on_upsampling(session, "bilinear", **display), args.runs, warmup=0)
        uploaded = {**session, "example": None}  # as for an upload: never served from the example cache
        t_threshold = median_time(lambda: last(h.on_counterfactuals(uploaded, **cf)), args.runs, warmup=0)
        t_cached = median_time(lambda: last(h.on_counterfactuals(session, **cf)), args.runs, warmup=1)
    finally:
        app.demo.close()
    print("| action (bundled model, loaded, 2-core CPU) | median |")
    print("|---|---:|")
    print(f"| full Explain through the API (maps, counterfactuals, metrics, report; 32 steps) | {t_full:.2f} s |")
    print(f"| opacity or colour map changed (re-render only, no forward pass) | {t_restyle * 1000:.0f} ms |")
    print(f"| display upsampling changed (maps re-derived; no explain pass) | {t_upsample * 1000:.0f} ms |")
    print(f"| threshold or fill changed (counterfactuals only, no explain pass) | {t_threshold:.2f} s |")
    print(f"| the same on an example photo, second time (lazy example cache) | {t_cached * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
