"""Memory: RSS over many requests cycling through several models, and the peak of hostile requests.

    python bench/memory.py [--requests 200] [--max-models 2] [--steps 4]
    python bench/memory.py --cases [--steps 32]

The first form builds four random-weight timm CNNs in Hub layout in a temporary folder (no
network), then runs requests (explain + counterfactual analysis, every tenth one with a broken
image) cycling through them and the bundled model with a ModelCache of ``--max-models``; it
prints the RSS curve. ``--cases`` starts the app in this process (offline, empty Hugging Face
cache) and prints, per request sent through its API (thin images, uncached large models, a
decompression bomb, ...), the steady RSS before it, the peak RSS during it and the difference.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
from timm.models._hub import save_for_hf  # noqa: E402

from micam_core import MicamError, ModelCache, analyse, explain  # noqa: E402

ARCHITECTURES = ("resnet18", "efficientnet_b0", "mobilenetv3_large_100", "densenet121")
BUNDLED = "bundled:efficientnet_lite0"
# Large models that are not in the (test) Hugging Face cache: offline they must be refused unbuilt.
UNCACHED_MODELS = (
    "convnext_xxlarge.clip_laion2b_soup_ft_in1k",
    "hf-hub:timm/convnext_xxlarge.clip_laion2b_soup_ft_in1k",
    "timm/convnextv2_huge.fcmae_ft_in22k_in1k_512",
    "convnextv2_huge",
)


def _status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else 0.0


def rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    return _status_mb("VmRSS")


def steady_rss_mb() -> float:
    """Resident memory once garbage is collected and freed heap pages are handed back (MB)."""
    from micam_core.models import release_memory

    gc.collect()
    release_memory()
    return rss_mb()


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Peak:
    """The peak RSS (MB) seen while the ``with peak_rss()`` block ran."""

    def __init__(self) -> None:
        self.mb = rss_mb()


@contextmanager
def peak_rss(interval: float = 0.005) -> Iterator[Peak]:
    """Track this process's peak RSS: the kernel's VmHWM after a reset, and a sampling thread as a floor.

    The sampler also works where VmHWM cannot be reset (then VmHWM would be the all-time peak).
    """
    peak, done = Peak(), threading.Event()
    exact = _reset_peak()

    def sample() -> None:
        while not done.wait(interval):
            peak.mb = max(peak.mb, rss_mb())

    thread = threading.Thread(target=sample, name="peak-rss", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak.mb = max(peak.mb, rss_mb(), _status_mb("VmHWM") if exact else 0.0)


def measure(request: Callable[[], object]) -> tuple[float, float, str]:
    """``(steady MB, peak MB, outcome)`` of one request; outcome is ``ok`` or the error message on one line."""
    steady = steady_rss_mb()
    with peak_rss() as peak:
        try:
            request()
            outcome = "ok"
        except Exception as err:
            outcome = " ".join(str(err).split())
    return steady, peak.mb, outcome


def image_cases(folder: Path) -> dict[str, Path]:
    """Hostile and odd images written to ``folder``: thin strips, a decompression bomb, a large photo, ..."""
    from PIL import Image

    cat = Image.open(ROOT / "examples" / "chelsea_cat.jpg").convert("RGB")
    images = {
        "thin_1x20000.png": Image.new("RGB", (1, 20000)),
        "thin_20000x1.png": Image.new("RGB", (20000, 1)),
        "thin_1x2000.png": Image.new("RGB", (1, 2000)),
        "bomb_30000x30000.png": Image.new("1", (30000, 30000)),
        "large_6000x4000.jpg": cat.resize((6000, 4000)),
        "one_pixel.png": Image.new("RGB", (1, 1), (120, 80, 40)),
        "cmyk.jpg": cat.convert("CMYK"),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / name
        options = {"optimize": True} if name.endswith(".png") else {"quality": 80}
        image.save(paths[name], **options)
    return paths


def request_cases(folder: Path) -> dict[str, tuple[Path, str]]:
    """``case -> (image, model spec)``: a normal request, the odd images, the uncached large models."""
    photo = ROOT / "examples" / "chelsea_cat.jpg"
    cases = {"normal photo": (photo, BUNDLED)}
    cases.update({name: (path, BUNDLED) for name, path in image_cases(folder).items()})
    cases.update({f"model {spec}": (photo, spec) for spec in UNCACHED_MODELS})
    return cases


def start_app() -> str:
    """Launch the Gradio app in this process on a free local port; returns its URL."""
    import socket

    import app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.demo.queue(default_concurrency_limit=4).launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH_KWARGS)
    return f"http://127.0.0.1:{port}/"


def run_cases(steps: int) -> None:
    """Print steady RSS, peak RSS and their difference for every case of :func:`request_cases`."""
    from gradio_client import Client, handle_file

    client = Client(start_app(), verbose=False)

    def send(image: Path, spec: str) -> object:
        return client.predict(handle_file(str(image)), spec, api_name="/explain", steps=steps)

    send(ROOT / "examples" / "chelsea_cat.jpg", BUNDLED)  # the bundled model loaded: the steady state
    print("| case | steady RSS MB | peak RSS MB | delta MB | seconds | outcome |")
    print("|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case, (image, spec) in request_cases(Path(tmp)).items():
            start = time.perf_counter()
            steady, peak, outcome = measure(lambda image=image, spec=spec: send(image, spec))
            print(f"| {case} | {steady:.0f} | {peak:.0f} | {peak - steady:+.0f} | "
                  f"{time.perf_counter() - start:.1f} | {outcome[:70]} |")


def build_models(folder: Path) -> list[str]:
    specs = [BUNDLED]
    for arch in ARCHITECTURES:
        target = folder / arch
        save_for_hf(timm.create_model(arch, pretrained=False), target, safe_serialization=True)
        specs.append(f"local-dir:{target}")
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-models", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cases", action="store_true", help="peak RSS per hostile request through the app")
    args = parser.parse_args()
    if args.cases:
        run_cases(args.steps)
        return
    photos = sorted((ROOT / "examples").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        specs = build_models(Path(tmp))
        cache = ModelCache(max_models=args.max_models)
        print(f"start: RSS {rss_mb():.0f} MB; {len(specs)} models, cache of {args.max_models}")
        print("| requests | RSS MB | models cached | seconds |")
        print("|---:|---:|---|---:|")
        start = time.perf_counter()
        failures = 0
        for i in range(1, args.requests + 1):
            loaded = cache.get(specs[i % len(specs)], device="cpu")
            image = b"broken" if i % 10 == 0 else photos[i % len(photos)]
            try:
                exp = explain(loaded, image, target=i % 1000)
                analyse(loaded, exp, steps=args.steps)
            except MicamError:
                failures += 1
            if i % 20 == 0 or i == 1:
                names = ", ".join(s.split("/")[-1] for s in cache.specs())
                print(f"| {i} | {rss_mb():.0f} | {names} | {time.perf_counter() - start:.0f} |")
        print(f"failed requests (broken images, as intended): {failures}")


if __name__ == "__main__":
    main()
