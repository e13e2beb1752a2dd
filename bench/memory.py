"""Memory: RSS over many requests cycling through several models, and the peak of hostile requests.

    python bench/memory.py [--requests 200] [--max-models 2] [--steps 4]
    python bench/memory.py --cases [--steps 32] [--only TEXT]
    python bench/memory.py --work-cases [--only TEXT]

The first form builds four random-weight timm CNNs in Hub layout in a temporary folder (no
network), then runs requests (explain + counterfactual analysis, every tenth one with a broken
image) cycling through them and the bundled model with a ModelCache of ``--max-models``; it
prints the RSS curve. ``--cases`` starts the app in this process (offline, empty Hugging Face
cache) and prints, per request sent through its API (thin images, uncached large models, a
decompression bomb, model configs at and beyond the bounds, Score-CAM at deep layers under
``MICAM_MAX_EXTRA_PASSES=100``, ...), the steady RSS before it, the peak RSS during it, the
difference and the seconds; then (``--work-cases`` alone: only these) the extra-pass methods, the
protocols and the sanity checks at their bounds, parsed as a link and run through the app's work
functions in this process (the API takes no method parameters, protocol or sanity request).
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
if {"--cases", "--work-cases"} & set(sys.argv):  # the cases' models go into a Hugging Face cache of this run's own
    os.environ.setdefault("HF_HUB_CACHE", tempfile.mkdtemp(prefix="micam_bench_hf_"))
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


# Model configs at and beyond the bounds (micam_core.policy), on a bundled-size random-weight model.
CONFIG_CASES = {
    "family default (224 px, crop 0.875)": {},
    "input 448 px (the bound)": {"input_size": (3, 448, 448)},
    "input 1024 px (measured +2.5 GB, 45x the time)": {"input_size": (3, 1024, 1024)},
    "crop_pct 0.5 (the bound)": {"crop_pct": 0.5},
    "crop_pct 0.01 (round 3: 2.5 GB)": {"crop_pct": 0.01},
    "input 2048 px (round 3: 5.9 GB)": {"input_size": (3, 2048, 2048)},
    "std 1e-300": {"std": (1e-300, 0.2, 0.2)},
}
MAX_EXTRA_PASSES = 100  # MICAM_MAX_EXTRA_PASSES for the layer cases (round 3 used this limit)
# Score-CAM at layers the picker does not list (two or more dots): counted, within or over the limit.
LAYER_CASES = {"scorecam at blocks.1.0.conv_pwl (deep, 24 channels)": "blocks.1.0.conv_pwl",
               "scorecam at blocks.6.0.conv_pw (deep, 1152 channels)": "blocks.6.0.conv_pw",
               "scorecam at blocks.6.0.conv_pwl (deep, 320 channels)": "blocks.6.0.conv_pwl",
               "scorecam at blocks.6.0.se (an identity)": "blocks.6.0.se"}


# The methods with extra passes or extra captures, the protocols and the sanity checks, at their bounds
# (the largest values a request may ask for, under the default MICAM_MAX_EXTRA_PASSES): the link's values,
# run in this process through the same work functions the app's link, API and sanity panel call.
WORK_CASES = {
    "ablationcam (1281 passes at bn2)": {"methods": "ablationcam"},
    # SS-CAM and IS-CAM at 100 samples (2400 passes) took too long here; their peak is one batch of 32 masked
    # inputs whatever the count, which 2 samples (48 passes) already reach.
    "sscam samples=2 at blocks.1 (48 passes)": {"methods": "sscam", "sscam_samples": "2", "layer": "blocks.1"},
    "iscam samples=2 at blocks.1 (49 passes)": {"methods": "iscam", "iscam_samples": "2", "layer": "blocks.1"},
    "smoothgradcampp samples=64": {"methods": "smoothgradcampp", "smoothgradcampp_samples": "64"},
    "refinecam layers=5": {"methods": "refinecam", "refinecam_layers": "5"},
    "fullgrad": {"methods": "fullgrad"},
    "guidedgradcam": {"methods": "guidedgradcam"},
    "every single-pass method at once": {"methods": "all-single"},
    "protocol road (3 default methods)": {"protocol": "road"},
    "protocol paper (100 steps)": {"protocol": "paper"},
    "protocol rise, steps=100": {"protocol": "rise", "steps": "100"},
    "sanity checks (3 default methods, first: builds the copies)": {"sanity": True},
    "sanity checks again (copies kept, counted by the model cache)": {"sanity": True},
    "sanity checks with scorecam at blocks.2 (41 passes x 8 maps)": {"methods": "scorecam", "layer": "blocks.2",
                                                                     "sanity": True},
    "sanity checks with sscam samples=2 at blocks.1 (48 passes x 9 maps)": {
        "methods": "sscam", "sscam_samples": "2", "layer": "blocks.1", "sanity": True},
    "vit: legrad": {"methods": "legrad", "model": "vit"},
    "vit: legrad + gradcam, protocol road": {"methods": "legrad,gradcam", "protocol": "road", "model": "vit"},
    "vit: sanity checks (legrad, gradcam)": {"methods": "legrad,gradcam", "model": "vit", "sanity": True},
}


def vit_model() -> str:
    """A random-weight ViT the size of the bundled model (vit_tiny, 5.7 M parameters) in the run's HF cache."""
    return _cached_model("micam-bench/vit-tiny", timm.create_model("vit_tiny_patch16_224", pretrained=False))


def _cached_model(repo: str, model) -> str:
    from huggingface_hub import constants

    commit = "0" * 40
    snapshot = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    save_for_hf(model, str(snapshot), safe_serialization=True)
    (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    return f"hf-hub:{repo}"


def work_request(query: dict, specs: dict[str, str]) -> Callable[[], object]:
    """One request of :data:`WORK_CASES`: parsed as a link is, explained, analysed, and sanity-checked if asked."""
    from micam_app import sanity_panel, work
    from micam_core.registry import REGISTRY
    from micam_core.view import parse

    query = dict(query)
    sanity = query.pop("sanity", False)
    query["model"] = specs.get(query.get("model", ""), BUNDLED)
    if query.get("methods") == "all-single":
        query["methods"] = ",".join(m for m, r in REGISTRY.items() if r.single_pass and r.family != "transformer")
    view, messages = parse(query, link=True)
    if messages:
        raise MicamError(" ".join(messages))
    photo = ROOT / "examples" / "chelsea_cat.jpg"

    def run() -> object:
        loaded = work.load(view.model)
        exp = work.explain_view(loaded, str(photo), view)
        work.analyse_view(loaded, exp, view)
        if not sanity:
            return exp
        steps = sanity_panel.bounded_plan(loaded, exp)  # as the panel's handler runs them
        return sanity_panel.gpu_sanity(loaded.spec, exp, sanity_panel.checks_seconds(loaded, exp, steps))
    return run


def run_work_cases(only: str | None) -> None:
    """Print steady RSS, peak RSS and their difference for every case of :data:`WORK_CASES`."""
    specs = {"vit": vit_model()}
    work_request({}, specs)()  # the bundled model loaded and warmed: the steady state
    work_request({"model": "vit"}, specs)()
    print("| case | steady RSS MB | peak RSS MB | delta MB | seconds | outcome |")
    print("|---|---:|---:|---:|---:|---|")
    for case, query in WORK_CASES.items():
        if only and only not in case:
            continue
        start = time.perf_counter()
        steady, peak, outcome = measure(work_request(query, specs))
        print(f"| {case} | {steady:.0f} | {peak:.0f} | {peak - steady:+.0f} | "
              f"{time.perf_counter() - start:.1f} | {outcome[:70]} |", flush=True)


def config_models() -> dict[str, str]:
    """``case -> hf-hub spec`` of efficientnet_lite0-sized models in the run's Hugging Face cache."""
    specs = {}
    for i, (case, pretrained) in enumerate(CONFIG_CASES.items()):
        model = timm.create_model("efficientnet_lite0", pretrained=False)
        model.pretrained_cfg = {**model.pretrained_cfg, **pretrained}
        specs[case] = _cached_model(f"micam-bench/config-{i}", model)
    return specs


def request_cases(folder: Path) -> dict[str, tuple[Path, str, dict]]:
    """``case -> (image, model spec, options)``: a normal request, the odd images, the uncached large
    models, the model-config cases and Score-CAM at deep layers."""
    photo = ROOT / "examples" / "chelsea_cat.jpg"
    cases = {"normal photo": (photo, BUNDLED, {})}
    cases.update({name: (path, BUNDLED, {}) for name, path in image_cases(folder).items()})
    cases.update({f"model {spec}": (photo, spec, {}) for spec in UNCACHED_MODELS})
    cases.update({f"config {case}": (photo, spec, {}) for case, spec in config_models().items()})
    cases.update({case: (photo, BUNDLED, {"layer": layer, "methods": "scorecam"})
                  for case, layer in LAYER_CASES.items()})
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


def run_cases(steps: int, only: str | None = None) -> None:
    """Print steady RSS, peak RSS and their difference for every case of :func:`request_cases`."""
    from gradio_client import Client, handle_file

    client = Client(start_app(), verbose=False)

    def send(image: Path, spec: str, **options) -> object:
        return client.predict(handle_file(str(image)), spec, api_name="/explain", steps=steps, **options)

    os.environ["MICAM_MAX_EXTRA_PASSES"] = str(MAX_EXTRA_PASSES)

    send(ROOT / "examples" / "chelsea_cat.jpg", BUNDLED)  # the bundled model loaded: the steady state
    print("| case | steady RSS MB | peak RSS MB | delta MB | seconds | outcome |")
    print("|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case, (image, spec, options) in request_cases(Path(tmp)).items():
            if only and only not in case:
                continue
            start = time.perf_counter()
            steady, peak, outcome = measure(lambda image=image, spec=spec, o=options: send(image, spec, **o))
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
    parser.add_argument("--work-cases", action="store_true",
                        help="peak RSS per request of the extra-pass methods, protocols and sanity checks")
    parser.add_argument("--only", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    if args.cases or args.work_cases:
        if args.cases:
            run_cases(args.steps, args.only)
        run_work_cases(args.only)
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
