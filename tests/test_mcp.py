"""The app as an MCP server (gradio[mcp]): the explain tool is listed and one call returns the maps."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import EXAMPLES, ROOT, free_port

pytest.importorskip("mcp", reason="gradio[mcp] (requirements.txt) brings the mcp client")
pytestmark = pytest.mark.slow  # every test here launches the app as an MCP server (about 14 s)

LAUNCH = """
import sys, threading
import app
app.demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=int(sys.argv[1]),
    mcp_server=True, prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
print("ready", flush=True)
threading.Event().wait()
"""


@pytest.fixture(scope="module")
def mcp_url():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False",
           "MICAM_ALLOW_PRIVATE_URLS": "1"}  # the photo server below is on loopback
    env.pop("SPACE_ID", None)  # on a Space, tool names get the Space's name as a prefix
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/gradio_api/mcp"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{base}/schema", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the app did not start with mcp_server=True:\n" + proc.stdout.read()[-3000:])
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_schema_lists_the_explain_tool_with_documented_arguments(mcp_url):
    with urllib.request.urlopen(f"{mcp_url}/schema", timeout=30) as response:
        schema = json.loads(response.read())
    tools = {tool["name"]: tool for tool in schema if tool["meta"]["mcp_type"] == "tool"}
    assert "explain" in tools, list(tools)
    assert set(tools) == {"explain"}, "only the API endpoint is a tool; UI handlers are private"
    tool = tools["explain"]
    props = tool["inputSchema"]["properties"]
    assert {"image", "model", "layer", "target", "upsampling", "threshold", "fill", "steps", "methods"} <= set(props)
    assert "data:" in props["image"].get("description", "") and "http" in props["image"]["description"]
    assert "MI CAM" in tool["description"]
    assert "class name" in props["target"].get("description", ""), props["target"]


def _call(mcp_url: str, arguments: dict, with_progress: bool):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    progress: list[str] = []

    async def on_progress(step: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def call():
        async with streamable_http_client(f"{mcp_url}/") as (read, write, *_):  # noqa: SIM117 - needs read, write
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                assert [tool.name for tool in listed.tools] == ["explain"], listed.tools
                return await session.call_tool("explain", arguments,
                                                progress_callback=on_progress if with_progress else None)

    return asyncio.run(asyncio.wait_for(call(), timeout=300)), progress


def _cat_uri() -> str:
    return "data:image/jpeg;base64," + base64.b64encode((EXAMPLES / "chelsea_cat.jpg").read_bytes()).decode()


@pytest.mark.parametrize("with_progress", [True, False])
def test_one_mcp_call_answers_json(mcp_url, with_progress):
    arguments = {"image": _cat_uri(), "model": "bundled:efficientnet_lite0", "steps": "4"}
    result, progress = _call(mcp_url, arguments, with_progress)
    assert not result.isError, result.content
    assert [item.type for item in result.content] == ["text"], result.content
    report = json.loads(result.content[0].text)  # JSON, not a Python repr
    assert {"micam", "gradcam", "migradcam", "random", "centre"} <= set(report["methods"])
    assert 0.0 <= report["methods"]["micam"]["deletion_auc"] <= 1.0
    assert report["target"]["label"] and len(report["predictions"]) == 5
    if with_progress:
        assert progress, "no progress notifications arrived"


def test_an_http_url_is_fetched(mcp_url, photo_server):
    result, _ = _call(mcp_url, {"image": f"{photo_server}/coffee.jpg", "steps": "2", "methods": "gradcam"}, False)
    assert not result.isError, result.content
    assert json.loads(result.content[0].text)["target"]["label"] == "espresso"


@pytest.mark.parametrize("image,sentence", [
    (str(EXAMPLES / "coffee.jpg"), "a file path on your machine cannot reach this server"),
    ("http://127.0.0.1:9/nothing-listens-here.jpg", "Could not fetch the image"),
    ("data:image/jpeg;base64,@@not base64@@", "not valid base64"),
])
def test_a_refused_image_gets_our_sentence(mcp_url, image, sentence):
    result, _ = _call(mcp_url, {"image": image, "steps": "2"}, False)
    assert result.isError
    text = " ".join(item.text for item in result.content if item.type == "text")
    assert sentence in text, text
    assert "upstream Gradio app" not in text


@pytest.fixture(scope="module")
def photo_server():
    """The example photos over HTTP on loopback (the app under test allows private URLs for this)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
