"""Shared fixtures. Tests never use the network: the Hub is switched off before any import."""

from __future__ import annotations

import os
import tempfile
import time

os.environ["HF_HUB_OFFLINE"] = "1"  # must precede the first import of huggingface_hub
# An empty Hugging Face cache of the test session's own, filled by the fixtures below.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="micam_hf_home_")
os.environ["HF_HUB_CACHE"] = os.path.join(os.environ["HF_HOME"], "hub")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path

import pytest
import timm
import torch

from micam_core import from_module, load_model

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def bundled():
    """The bundled ImageNet EfficientNet-Lite0 (offline)."""
    return load_model("bundled:efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def resnet18_random():
    """A timm resnet18 with random (seeded) weights, 1000 classes, 224 px."""
    torch.manual_seed(0)
    return from_module(timm.create_model("resnet18", pretrained=False), spec="resnet18-random", device="cpu")


@pytest.fixture(scope="session")
def cat_path() -> Path:
    return EXAMPLES / "chelsea_cat.jpg"


@pytest.fixture(scope="session")
def coffee_path() -> Path:
    return EXAMPLES / "coffee.jpg"


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_hub_cache(repo_id: str, files: dict[str, bytes] | None = None, model=None) -> str:
    """Put a repository into the session's Hugging Face cache (offline), as the Hub client would."""
    from timm.models._hub import save_for_hf

    repo_dir = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    if model is not None:
        save_for_hf(model, str(snapshot), safe_serialization=True)
    for name, data in (files or {}).items():
        (snapshot / name).write_bytes(data)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return repo_id


@pytest.fixture(scope="session")
def hub_models() -> dict[str, str]:
    """Small random-weight models in the session's Hub cache: two CNNs, a ViT and a non-timm repo."""
    torch.manual_seed(0)
    return {
        "resnet": add_to_hub_cache("micam-test/tiny-resnet", model=timm.create_model("resnet10t", num_classes=10)),
        "mobilenet": add_to_hub_cache("micam-test/tiny-mobilenet",
                                      model=timm.create_model("mobilenetv3_small_050", num_classes=7)),
        "vit": add_to_hub_cache("micam-test/tiny-vit",
                                model=timm.create_model("vit_tiny_patch16_224", num_classes=3)),
        "bert": add_to_hub_cache("micam-test/bert-like", files={
            "config.json": b'{"architectures": ["BertModel"], "model_type": "bert"}',
            "model.safetensors": b"not really weights"}),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server_url():
    """The Gradio app, launched once in this process on a free local port (queue concurrency 4)."""
    import app

    port = free_port()
    app.demo.queue(default_concurrency_limit=4).launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH_KWARGS)
    yield f"http://127.0.0.1:{port}/"
    close(app.demo)


def close(demo, drain_s: float = 300.0) -> None:
    """``demo.close()`` once the queue's running jobs are done, and once more if it lost a race.

    A job still computing (a browser test's last panel, say) runs in one of Gradio's daemon threads; if the
    interpreter exits under it, the process can abort in its C++ teardown ("terminate called without an active
    exception", exit status 134 after every test passed: seen in 4 of 12 runs of the link browser tests).
    Gradio sets its asyncio stop event from this thread while the server's loop may be changing the event's
    waiters ("deque mutated during iteration", seen once in a full run); the flag is set by then, so the second
    call goes on to shut the server down."""
    queue, deadline = getattr(demo, "_queue", None), time.monotonic() + drain_s
    while queue is not None and any(job is not None for job in queue.active_jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        demo.close()
    except RuntimeError:
        demo.close()


@pytest.fixture(scope="session")
def client(server_url):
    from gradio_client import Client

    return Client(server_url, verbose=False)
