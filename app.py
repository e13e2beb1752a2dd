"""MI CAM Explorer: a Gradio app for MI CAM and the CAM methods it is compared with, with counterfactual checks.

``python app.py`` starts the server. The page lives in ``micam_app`` (UI only: text, views, handlers,
layout); every computation goes through ``micam_core``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "20")
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")  # both before huggingface_hub is imported

import logging
import threading
from typing import Any

try:
    import gradio as gr
except ModuleNotFoundError as missing:  # the library alone was installed (pip install .)
    raise SystemExit(f"python app.py needs {missing.name}, which is not installed here: "
                     "pip install -r requirements.txt (or pip install '.[app]').") from None

from micam_app import work
from micam_app.layout import build_demo
from micam_app.page import CSS
from micam_core import BUNDLED_SPEC, MicamError
from micam_core.models import normalize_spec

log = logging.getLogger("micam_app")

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="sky")
# Gradio 6 takes theme and CSS at launch. Uploads above max_file_size are cut off by Gradio itself;
# between the image limit and that, micam_core refuses the file with its own message.
LAUNCH_KWARGS: dict[str, Any] = {"theme": THEME, "css": CSS, "max_file_size": "25mb"}
demo, UI, HANDLERS = build_demo()


def _warm(spec: str) -> None:
    try:
        work.load(normalize_spec(spec))
    except MicamError as err:
        log.warning("could not preload %s: %s", spec, err)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    threading.Thread(target=lambda: _warm(BUNDLED_SPEC), daemon=True).start()
    demo.queue(default_concurrency_limit=4).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), mcp_server=True, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
