"""Model downloads from the stand-in Hub (tests/hub_stub.py): streamed, capped, deadline-bound, cached as
huggingface_hub caches them.

Round 3: weights declared as 1000 B but served as 400 MB were refused only after the download, and
419 MB stayed in the HF cache. Here a file that passes its declared size is stopped at once and deleted,
a Hub that hangs or drips gives up within the load deadline, and a good model loads online and then
offline from the same cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from hub_stub import MB, StubHub, _drip, _flood, _hang, add_weights_repo
from safetensors.torch import save

from conftest import ROOT

CHILD = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    import httpx, huggingface_hub.constants, timm  # imported before the clocks start
    from micam_core import load_model, hubhttp

    out = {}
    def load(spec):
        start = time.perf_counter()
        try:
            loaded = load_model(spec, device="cpu")
            result = {"ok": True, "revision": loaded.revision, "classes": len(loaded.class_names),
                      "sum": float(sum(p.double().sum() for p in loaded.model.parameters()))}
        except Exception as err:
            result = {"ok": False, "message": f"{type(err).__name__}: {err}"}
        out[spec] = {**result, "seconds": time.perf_counter() - start}
    threads = [threading.Thread(target=load, args=(spec,)) for spec in sys.argv[1].split(",")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hubhttp._POOL.shutdown(wait=True)  # every download worker has ended: what is on disk now stays
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE)
    out["cache"] = {str(p.relative_to(cache)): p.stat().st_size for p in cache.rglob("*")
                    if p.is_file() and not p.is_symlink()}
    out["links"] = [str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_symlink()]
    print(json.dumps(out))
""")
DECLARED = 1000
FAKE_SHA = hashlib.sha256(b"x" * DECLARED).hexdigest()
CONFIG = {"architecture": "test_resnet", "num_classes": 5, "pretrained_cfg": {"input_size": [3, 160, 160]}}
HOSTILE = {"evil/weights-lie": _flood(50 * MB, declared=False), "evil/weights-lie-declared": _flood(50 * MB, True),
           "evil/weights-hang": _hang, "evil/weights-drip": _drip,
           "evil/weights-checksum": lambda handler: handler._send(200, b"y" * DECLARED, "text/plain", False)}
LOAD_LIMIT_S = 30.0


def _weights(num_classes: int) -> tuple[bytes, float]:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=num_classes)
    return save(model.state_dict()), float(sum(p.detach().double().sum() for p in model.parameters()))


def _run(specs: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, ",".join(specs)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    good, good_sum = _weights(5)
    named, named_sum = _weights(1000)
    add_weights_repo("ok/tiny-weights", CONFIG, {"model.safetensors": good, "pytorch_model.bin": _other_weights()})
    add_weights_repo("timm/test_resnet.r160_in1k", {"architecture": "test_resnet", "num_classes": 1000},
                     {"model.safetensors": named})
    for repo, handler in HOSTILE.items():
        add_weights_repo(repo, {**CONFIG, "architecture": "resnet18"},
                         {"model.safetensors": (DECLARED, FAKE_SHA, handler)})
    home = tmp_path_factory.mktemp("hf")
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": "", "PYTHONPATH": str(ROOT)}
    with StubHub() as hub:
        online = _run(["hf-hub:ok/tiny-weights", "test_resnet.r160_in1k", *("hf-hub:" + r for r in HOSTILE)],
                      {**env, "HF_ENDPOINT": hub.url})
        requests = list(hub.requests)
    offline = _run(["hf-hub:ok/tiny-weights", "test_resnet.r160_in1k"], {**env, "HF_HUB_OFFLINE": "1"})
    return {"online": online, "offline": offline, "requests": requests, "sums": (good_sum, named_sum)}


def _other_weights() -> bytes:
    """A .bin next to the safetensors: never downloaded (safetensors come first, as in timm)."""
    buffer = io.BytesIO()
    torch.save({"x": torch.zeros(1)}, buffer)
    return buffer.getvalue()


@pytest.mark.slow
def test_a_good_model_downloads_into_the_cache_and_loads_offline_from_it(downloads):
    good_sum, named_sum = downloads["sums"]
    for run in ("online", "offline"):
        hub = downloads[run]["hf-hub:ok/tiny-weights"]
        assert hub["ok"], (run, hub)
        assert hub["sum"] == pytest.approx(good_sum) and hub["classes"] == 5
        named = downloads[run]["test_resnet.r160_in1k"]
        assert named["ok"] and named["sum"] == pytest.approx(named_sum), (run, named)
    assert downloads["online"]["hf-hub:ok/tiny-weights"]["revision"] == downloads["offline"][
        "hf-hub:ok/tiny-weights"]["revision"]
    cache = downloads["online"]["cache"]
    assert "models--ok--tiny-weights/refs/main" in cache
    links = downloads["online"]["links"]
    assert any(p.startswith("models--ok--tiny-weights/snapshots/") and p.endswith("/model.safetensors") for p in links)
    assert not any("pytorch_model.bin" in p for p in [*cache, *links])  # only the file timm reads was fetched
    assert not any(r.startswith("HEAD") for r in downloads["requests"])  # huggingface_hub downloaded nothing


@pytest.mark.slow
@pytest.mark.parametrize("repo, words, seconds", [
    ("evil/weights-lie", "the Hub sent more than the 1000 B declared for model.safetensors", 5),
    ("evil/weights-lie-declared", "the Hub sent more than the 1000 B declared for model.safetensors", 5),
    ("evil/weights-checksum", "model.safetensors from the Hub does not match its checksum", 5),
    ("evil/weights-hang", "the Hub did not answer in 10 s", LOAD_LIMIT_S),
    ("evil/weights-drip", "the Hub did not send model.safetensors in", LOAD_LIMIT_S)])
def test_hostile_weights_are_refused_in_time_with_a_sentence(downloads, repo, words, seconds):
    load = downloads["online"]["hf-hub:" + repo]
    assert not load["ok"] and load["message"].startswith("ModelLoadError") and words in load["message"], load
    assert load["seconds"] < seconds, load


@pytest.mark.slow
def test_nothing_over_the_cap_stays_in_the_cache(downloads):
    cache = downloads["online"]["cache"]
    for repo in HOSTILE:
        folder = "models--" + repo.replace("/", "--") + "/"
        files = {p: size for p, size in cache.items() if p.startswith(folder)}
        assert all(size <= DECLARED for size in files.values()), files
        assert not any(p.endswith(".incomplete") for p in files), files
        assert not any(p.startswith(folder) and p.endswith("model.safetensors") for p in downloads["online"]["links"])
    assert sum(cache.values()) < 5 * MB, sorted(cache.items(), key=lambda kv: -kv[1])[:5]


def test_partial_files_are_deleted_when_a_download_is_cut(tmp_path):
    """The unit under the test above: a download over its cap raises and leaves no file (no Hub needed)."""
    from micam_core.hubhttp import HubError, download

    with StubHub() as hub:
        add_weights_repo("evil/unit-flood", CONFIG, {"model.safetensors": (DECLARED, FAKE_SHA, _flood(8 * MB, False))})
        path = Path(tmp_path) / "blob.incomplete"
        with pytest.raises(HubError, match="too big"):
            download(f"{hub.url}/evil/unit-flood/resolve/main/model.safetensors", path, deadline_s=10,
                     max_bytes=DECLARED, too_large="too big", late="late {s}")
    assert not path.exists()


def test_the_file_list_is_read_as_untrusted():
    """Names that are not plain paths are dropped; odd sizes and checksums are unknown, not believed."""
    from micam_core.hubfiles import _repo_file

    for name in ("../../etc/passwd", "/abs", "a/../../b", "a\\b", "", 5):
        assert _repo_file({"rfilename": name, "size": 1}) is None, name
    odd = _repo_file({"rfilename": "model.safetensors", "size": -1, "blobId": "<script>",
                      "lfs": {"sha256": "not-hex", "size": True}})
    assert (odd.size, odd.blob, odd.sha256) == (None, None, None)
    sha = "ab" * 32
    good = _repo_file({"rfilename": "model.safetensors", "size": 7, "lfs": {"sha256": sha.upper(), "size": 1000}})
    assert (good.size, good.blob, good.sha256) == (1000, sha, sha)


def test_the_weights_chosen_are_the_ones_timm_reads_first():
    from micam_core.hubfiles import Listing, RepoFile

    def listing(*names: str) -> Listing:
        return Listing("a/b", "main", "0" * 40, {n: RepoFile(n, 1, None, None) for n in names}, 0.0)

    assert listing("pytorch_model.bin", "model.safetensors").weights().name == "model.safetensors"
    assert listing("z.pth", "a.pth", "x.bin").weights().name == "a.pth"
    assert listing("README.md").weights() is None
    assert listing("open_clip_model.safetensors", "model.safetensors").weights(
        ("open_clip_model.safetensors",)).name == "open_clip_model.safetensors"
