"""timm weights at a plain URL (``pretrained_cfg.url``, not the Hub): streamed, capped, deadline-bound.

Nineteen of timm's pretrained names (``legacy_seresnet18.in1k``, ``gcvit_tiny.in1k``, ...) have a URL and no
Hub id; timm fetches them with torch's downloader, whole and without a cap. Here ``test_resnet.r160_in1k``'s
registered config is pointed at the stand-in server (tests/hub_stub.py) instead of its Hub id.
"""

from __future__ import annotations

import io
import time

import pytest
import timm
import torch
from hub_stub import MB, StubHub, _error, _flood, add_weights_repo

from micam_core import load_model
from micam_core.errors import ModelLoadError

NAME = "test_resnet.r160_in1k"
LIMIT = 4 * MB  # test_resnet holds 1.8 MB of weights


def _weights() -> tuple[bytes, float]:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=1000)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue(), float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.fixture
def url_weights(monkeypatch, tmp_path):
    """``serve(file) -> load(**kwargs)``: the name's weights at ``{stub}/url/weights/resolve/main/{file}``."""
    from timm.models import _registry

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    cfg = _registry._model_pretrained_cfgs[NAME]
    monkeypatch.setattr(cfg, "hf_hub_id", None)
    with StubHub() as hub:
        def serve(file: str):
            monkeypatch.setattr(cfg, "url", f"{hub.url}/url/weights/resolve/main/{file}")
            return lambda: load_model(NAME, device="cpu", max_bytes=LIMIT)
        yield serve


def _checkpoints(tmp_path) -> dict[str, int]:
    folder = tmp_path / "torch_hub" / "checkpoints"
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}


def test_url_weights_download_into_torchs_cache_and_load_offline_from_it(url_weights, monkeypatch, tmp_path):
    body, total = _weights()
    add_weights_repo("url/weights", {}, {"test_resnet-good.pth": body})
    load = url_weights("test_resnet-good.pth")
    loaded = load()
    assert float(sum(p.double().sum() for p in loaded.model.parameters())) == pytest.approx(total)
    assert _checkpoints(tmp_path) == {"test_resnet-good.pth": len(body)}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load()  # offline: found where timm's own downloader would have put it
    assert float(sum(p.double().sum() for p in again.model.parameters())) == pytest.approx(total)


@pytest.mark.parametrize("file, handler, words", [
    ("flood.pth", _flood(12 * MB, declared=False), "127.0.0.1 sent more than the 4 MB allowed for flood.pth"),
    ("flood-declared.pth", _flood(12 * MB, declared=True),
     "127.0.0.1 sent more than the 4 MB allowed for flood-declared.pth"),
    ("error.pth", _error(500), "127.0.0.1 answered with an error (HTTP 500)")])
def test_oversized_or_failed_url_weights_are_refused_with_nothing_left(url_weights, tmp_path, file, handler, words):
    add_weights_repo("url/weights", {}, {file: (1000, "0" * 64, handler)})
    load = url_weights(file)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load()
    assert words in str(err.value) and NAME in str(err.value), str(err.value)
    assert time.perf_counter() - start < 10
    assert _checkpoints(tmp_path) == {}  # no partial file, nothing over the cap


def test_a_cached_url_file_over_the_limit_is_refused(url_weights, tmp_path):
    load = url_weights("big.pth")
    folder = tmp_path / "torch_hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "big.pth").write_bytes(b"\0" * (LIMIT + 1))
    with pytest.raises(ModelLoadError, match="the limit here is 4 MB"):
        load()
