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
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
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
    tools = {tool["name"]: tool for tool in schema}
    assert "explain" in tools, list(tools)
    assert set(tools) == {"explain"}, "only the API endpoint is a tool; UI handlers are private"
    tool = tools["explain"]
    props = tool["inputSchema"]["properties"]
    assert {"image", "model", "layer", "target", "upsampling", "threshold", "fill", "steps", "colormap",
            "opacity", "methods"} <= set(props)
    assert "MI CAM" in tool["description"]
    assert "class name" in props["target"].get("description", ""), props["target"]


def test_one_mcp_call_returns_the_maps(mcp_url):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    image = "data:image/jpeg;base64," + base64.b64encode((EXAMPLES / "chelsea_cat.jpg").read_bytes()).decode()
    progress: list[str] = []

    async def on_progress(step: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def call():
        async with streamable_http_client(f"{mcp_url}/") as (read, write, *_):  # noqa: SIM117 - needs read, write
            async with ClientSession(read, write) as session:
                await session.initialize()
                listed = await session.list_tools()
                arguments = {"image": image, "model": "bundled:efficientnet_lite0", "steps": "4"}
                # With a progress token Gradio 6.31 returns each output as its own content item (images as
                # images); without one it returns the whole output tuple as a single text item.
                result = await session.call_tool("explain", arguments, progress_callback=on_progress)
                return [t.name for t in listed.tools], result

    names, result = asyncio.run(asyncio.wait_for(call(), timeout=300))
    assert "explain" in names
    assert not result.isError, result.content
    kinds = [item.type for item in result.content]
    assert kinds.count("image") >= 3, result.content[:2]
    text = " ".join(item.text for item in result.content if item.type == "text")
    assert "micam" in text and "gradcam" in text and "deletion_auc" in text, text[:500]
    assert progress, "no progress notifications arrived"
