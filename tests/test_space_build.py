"""The Space builds as the Hub builds it: a fresh venv from requirements.txt alone, then `python app.py`.

The venv gets nothing from the dev requirements (no test tools, no oracles); pip may reuse its cache.
The real `spaces` package is installed (the Hub provides it on a Space) to show that off ZeroGPU it
changes nothing: ``spaces.GPU`` hands the functions back unchanged. The app is started as the Space
starts it (``SPACE_ID`` set, ``GRADIO_SERVER_NAME=0.0.0.0``) and one example is explained through the
API with ``gradio_client``, from the venv, over loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port

DEV_ONLY = ("pytest", "ruff", "pytorch_grad_cam", "torchcam", "sklearn", "playwright")  # must not be in the venv

CLIENT = """
import json, sys
from gradio_client import Client, handle_file
client = Client(sys.argv[1], verbose=False)
out = client.predict(handle_file(sys.argv[2]), "bundled:efficientnet_lite0", "auto", "top-1", "paper", "0.5",
                     "black", "4", "jet", "0.5", "micam,gradcam", api_name="/explain")
report = next(o for o in out if isinstance(o, dict) and "methods" in o)
print("REPORT=" + json.dumps(report))
"""

PROBE = """
import json, sys, spaces
from micam_app import work
def task(x):
    return x
decorated = {name: getattr(work, name) for name in ("gpu_explain", "gpu_analyse")}
print("PROBE=" + json.dumps({
    "gpu_is_spaces_GPU": work.gpu is spaces.GPU,
    "GPU_returns_its_argument": spaces.GPU(task) is task and spaces.GPU(duration=lambda x: 5)(task) is task,
    # only our own cpu_result wraps the GPU functions: spaces.GPU added nothing around it
    "only_ours": {n: f.__code__ is work.cpu_result(task).__code__ and f.__wrapped__.__code__.co_name == n
                  and not hasattr(f.__wrapped__, "__wrapped__") for n, f in decorated.items()},
    "dev_tools": [m for m in sys.argv[1].split(",") if __import__("importlib.util").util.find_spec(m)],
}))
"""


def _space_checkout(dest: Path) -> None:
    """The files a Space gets: what git tracks (nothing untracked or ignored)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)


def _wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(2)
    pytest.fail(f"app.py did not answer within {seconds:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_space_builds_from_requirements_txt_and_explains_an_example(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files the Space gets")
    space, venv = tmp_path / "space", tmp_path / "venv"
    _space_checkout(space)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        started = time.monotonic()
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", "requirements.txt", "spaces"],
                                 cwd=space, capture_output=True, text=True, timeout=2400)
        assert install.returncode == 0, install.stderr[-4000:]
        print(f"venv from requirements.txt + spaces: {time.monotonic() - started:.0f} s")

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
               "SPACE_ID": "micam/space-build-test", "SYSTEM": "spaces", "GRADIO_SERVER_NAME": "0.0.0.0",
               "GRADIO_SERVER_PORT": str(free_port()), "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
        probe = subprocess.run([str(python), "-c", PROBE, ",".join(DEV_ONLY)], cwd=space, env=env,
                               capture_output=True, text=True, timeout=600)
        assert probe.returncode == 0, probe.stderr[-4000:]
        facts = json.loads(probe.stdout.split("PROBE=", 1)[1])
        assert facts["dev_tools"] == [], f"dev tools leaked into the Space's venv: {facts['dev_tools']}"
        assert facts["gpu_is_spaces_GPU"], "the app did not use the real spaces.GPU"
        assert facts["GPU_returns_its_argument"], "spaces.GPU wrapped a function off ZeroGPU"
        assert all(facts["only_ours"].values()), f"spaces.GPU changed the app's GPU functions: {facts}"

        log = tmp_path / "app.log"
        with log.open("w") as sink:
            proc = subprocess.Popen([str(python), "app.py"], cwd=space, env=env, stdout=sink,
                                    stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
            _wait_for(url + "gradio_api/info", proc, log, 600)
            client = subprocess.run([str(python), "-c", CLIENT, url, str(space / "examples" / "coffee.jpg")],
                                    cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
            assert client.returncode == 0, client.stderr[-4000:] + log.read_text()[-2000:]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        report = json.loads(client.stdout.split("REPORT=", 1)[1])
        assert report["model"]["spec"] == "bundled:efficientnet_lite0"
        assert {"micam", "gradcam", "random", "centre"} <= set(report["methods"])
        assert 0.0 <= report["methods"]["micam"]["deletion_auc"] <= 1.0
        assert report["versions"]["torch"].startswith(_pinned("torch"))
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB: never left behind in pytest's tmp folders


def _pinned(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("#")[0].strip().startswith(f"{name}=="):
            return line.split("==", 1)[1].split("#")[0].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")
