"""A stand-in Hugging Face Hub: a loopback HTTP server answering with recorded API answers.

Serves what ``huggingface_hub`` asks for when searching and pre-checking models:
``GET /api/models?...`` (search; the ``search`` parameter picks a recorded answer),
``GET /api/models/{id}[/revision/{rev}]`` (file list with sizes) and
``HEAD``/``GET /{id}/resolve/{rev}/config.json`` (with ETag, X-Repo-Commit and Content-Length).
Some answers are hostile on purpose. Every request path is recorded in ``StubHub.requests``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
MB = 2**20


def _hit(repo_id, downloads, params=None):
    hit = {"_id": "x" * 24, "id": repo_id, "modelId": repo_id, "downloads": downloads,
           "pipeline_tag": "image-classification", "library_name": "timm"}
    if params is not None:
        hit["safetensors"] = {"parameters": params, "total": sum(params.values())}
    return hit


SEARCHES: dict[str, str] = {
    "resnet": json.dumps([
        _hit("timm/resnet50.a1_in1k", 1_234_567, {"F32": 25_557_032}),
        _hit("timm/resnet18.a1_in1k", 345_678, {"F32": 11_689_512}),
        _hit("timm/resnet34.a1_in1k", 12_345),  # no safetensors summary: size unknown
    ]),
    "hostile": (
        '[{"id": "<script>alert(1)</script>/x", "downloads": 5},'
        ' {"id": "evil/../../etc", "downloads": 5},'
        ' {"id": "ok/huge-numbers", "downloads": 1e400, "safetensors": {"parameters": {"F32": 1e300}, "total": 1e300}},'
        ' {"id": "ok/nan", "downloads": NaN, "safetensors": {"parameters": {"F32": -5}, "total": -5}},'
        ' {"id": "ok/strings", "downloads": "lots", "safetensors": {"parameters": {"WEIRD": 10}, "total": 10}},'
        ' {"id": "ok/missing-fields"},'
        ' {"id": 12345, "downloads": 1},'
        ' {"id": "ok/fine", "downloads": 7, "safetensors": {"parameters": {"F16": 1000}, "total": 1000}}]'
    ),
    "broken": '[{"id": "ok/x", "safetensors": {"parameters": {"F32": 1}}}]',  # "total" missing
    "garbage": "<html>not json</html>",
    "nothing": "[]",
    "slow": json.dumps([_hit("timm/resnet50.a1_in1k", 1_000, {"F32": 100})]),
}
SLOW_S = 0.3

REPOS: dict[str, dict] = {
    "timm/resnet18.a1_in1k": {
        "config": json.dumps({"architecture": "resnet18", "num_classes": 1000, "num_features": 512,
                              "pretrained_cfg": {"tag": "a1_in1k", "input_size": [3, 224, 224]}}),
        "files": {"config.json": 800, "model.safetensors": 46 * MB, "pytorch_model.bin": 47 * MB},
    },
    "evil/unknown-arch": {
        "config": json.dumps({"architecture": "<script>alert(1)</script>", "num_classes": 10}),
        "files": {"config.json": 100, "model.safetensors": MB},
    },
    "evil/huge-weights": {
        "config": json.dumps({"architecture": "resnet50", "num_classes": 1000}),
        "files": {"config.json": 100, "model.safetensors": 10 * 2**30},
    },
    "evil/absurd-config": {
        "config": json.dumps({"architecture": "resnet18", "num_classes": 1e308,
                              "pretrained_cfg": {"input_size": [3, -1, 1e9]}}),
        "files": {"config.json": 100, "model.safetensors": MB},
    },
    "evil/not-json": {"config": "<html>", "files": {"config.json": 6, "model.safetensors": MB}},
    "evil/no-weights": {
        "config": json.dumps({"architecture": "resnet18", "num_classes": 10}),
        "files": {"config.json": 100, "README.md": 10},
    },
    **{f"evil/{name}": {"config": json.dumps({"architecture": "resnet18", "num_classes": 10,
                                                "pretrained_cfg": pretrained}),
                         "files": {"config.json": 100, "model.safetensors": MB}}
       for name, pretrained in {
           "crop-tiny": {"crop_pct": 0.01}, "crop-1e-9": {"crop_pct": 1e-9},
           "input-2048": {"input_size": [3, 2048, 2048]}, "mean-nan": {"mean": [float("nan"), 0.5, 0.5]},
           "std-zero": {"std": [0.0, 0.2, 0.2]}, "labels-long": {"label_names": ["x" * 5000] * 10}}.items()},
    "evil/classes-many": {"config": json.dumps({"architecture": "resnet18", "num_classes": 10**7}),
                          "files": {"config.json": 100, "model.safetensors": MB}},
    "ok/at-the-bounds": {
        "config": json.dumps({"architecture": "resnet18", "num_classes": 10, "pretrained_cfg": {
            "input_size": [3, 448, 32], "crop_pct": 0.5, "mean": [0, 0, 1], "std": [0.01, 10, 1]}}),
        "files": {"config.json": 100, "model.safetensors": MB},
    },
    "evil/bert": {
        "config": json.dumps({"architectures": ["BertModel"], "model_type": "bert"}),
        "files": {"config.json": 100, "model.safetensors": MB},
    },
}


HANG_S = 60.0  # longer than any deadline


def _hang(handler) -> None:
    """Accept the connection, then say nothing."""
    time.sleep(HANG_S)


def _drip(handler) -> None:
    """Headers at once, then one byte a second."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(int(HANG_S)):
        try:
            handler.wfile.write(b" ")
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(1.0)


def _error(status: int):
    def answer(handler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")
    return answer


def _huge(declared: bool):
    """300 MB of JSON-looking bytes, with or without a Content-Length saying so."""
    def answer(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declared:
            handler.send_header("Content-Length", str(300 * MB))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            handler.wfile.write(b"[")
            for _ in range(300):
                handler.wfile.write(b" " * MB)
        except OSError:
            return
    return answer


def _flood(size: int, declared: bool):
    """``size`` bytes of weights, with or without a Content-Length saying so."""
    def answer(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        if declared:
            handler.send_header("Content-Length", str(size))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            for _ in range(size // MB):
                handler.wfile.write(b"\0" * MB)
        except OSError:
            return
    return answer


def add_weights_repo(repo_id: str, config: dict, files: dict) -> None:
    """Serve ``config`` and ``files`` (name -> bytes, or (declared size, sha256, handler) for a hostile file)."""
    listed, bodies = {"config.json": len(json.dumps(config))}, {}
    for name, body in files.items():
        if isinstance(body, bytes):
            listed[name], bodies[name] = (len(body), hashlib.sha256(body).hexdigest()), body
        else:
            listed[name], bodies[name] = body[:2], body[2]
    REPOS[repo_id] = {"config": json.dumps(config), "files": listed, "bodies": bodies}


HOSTILE_SEARCHES = {"hang": _hang, "drip": _drip, "error500": _error(500), "huge": _huge(True),
                    "huge-undeclared": _huge(False)}
HOSTILE_REPOS = {"evil/hang-config": _hang, "evil/drip-config": _drip, "evil/http-500": _error(500),
                 "evil/huge-config": _huge(False)}


class StubHub:
    """The server, on a free loopback port, in a daemon thread (``with StubHub() as hub: hub.url``)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: list[str] = []
        stub = self

        class Handler(_Handler):
            hub = stub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _sibling(repo: dict, name: str, size) -> dict:
    """A file-list entry: size, git blob id and, for weights, the LFS size and sha256 (as the Hub answers)."""
    if isinstance(size, tuple):  # weights: (declared size, sha256)
        size, sha256 = size
        return {"rfilename": name, "size": size, "blobId": hashlib.sha1(name.encode()).hexdigest(),
                "lfs": {"size": size, "sha256": sha256, "pointerSize": 134}}
    body = repo["config"].encode() if name == "config.json" else b""
    return {"rfilename": name, "size": size, "blobId": hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()}


class _Handler(BaseHTTPRequestHandler):
    hub: StubHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        return None

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        self.hub.requests.append(f"{self.command} {self.path}")
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        if path == "/api/models":
            search = query.get("search", [""])[0]
            if search == "slow":
                time.sleep(SLOW_S)
            if search in HOSTILE_SEARCHES:
                HOSTILE_SEARCHES[search](self)
                return
            self._send(200, SEARCHES.get(search, "[]").encode(), "application/json", head)
            return
        if path.startswith("/api/models/"):
            repo_id = path[len("/api/models/"):].split("/revision/")[0]
            self._model_info(repo_id, head)
            return
        if "/resolve/" in path:
            repo_id, _, rest = path.lstrip("/").partition("/resolve/")
            filename = rest.partition("/")[2]
            self._file(repo_id, filename, head)
            return
        self._send(404, b"{}", "application/json", head)

    def _model_info(self, repo_id: str, head: bool) -> None:
        if repo_id in HOSTILE_REPOS:
            HOSTILE_REPOS[repo_id](self)
            return
        repo = REPOS.get(repo_id)
        if repo is None:
            self._not_found(head)
            return
        siblings = [_sibling(repo, name, size) for name, size in repo["files"].items()]
        body = json.dumps({"_id": "x" * 24, "id": repo_id, "modelId": repo_id, "sha": COMMIT,
                           "library_name": "timm", "siblings": siblings}).encode()
        self._send(200, body, "application/json", head)

    def _file(self, repo_id: str, filename: str, head: bool) -> None:
        if repo_id in HOSTILE_REPOS:
            HOSTILE_REPOS[repo_id](self)
            return
        repo = REPOS.get(repo_id)
        if repo is None:
            self._not_found(head)
            return
        body = repo.get("bodies", {}).get(filename)
        if callable(body):
            body(self)
            return
        if body is not None:
            self._send(200, body, "application/octet-stream", head)
            return
        if filename != "config.json":  # a precheck must never fetch anything else
            self._send(403, b"weights are not served by the stub", "text/plain", head)
            return
        body = repo["config"].encode()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        self._send(200, body, "application/json", head, {"ETag": etag, "X-Repo-Commit": COMMIT})

    def _not_found(self, head: bool) -> None:
        self._send(404, b'{"error": "Repository not found"}', "application/json", head,
                   {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})

    def _send(self, status: int, body: bytes, ctype: str, head: bool, headers: dict | None = None) -> None:
        if self.hub.delay_s:
            time.sleep(self.hub.delay_s)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


if __name__ == "__main__":  # python tests/hub_stub.py: serve until interrupted
    with StubHub() as hub:
        print(hub.url, flush=True)
        threading.Event().wait()
