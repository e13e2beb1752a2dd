"""Speed and memory of micam_core against a plain forward pass and the reference implementations.

    python bench/speed.py [--repeats 15] [--models resnet50,bundled,vit_small_patch16_224] [--image ...]

Prints one table per model (CPU, 224 px; the ViT's default layer holds tokens, see micam_core/tokens.py).
Everything in a table is measured in the same run, so compare ratios, not absolute times (shared machines
are noisy). Peak memory is measured in fresh
subprocesses (ru_maxrss) that differ only in the operation they repeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from micam_core import explain, from_module, load_model, mutual_information  # noqa: E402
from micam_core.capture import capture  # noqa: E402
from micam_core.layers import get_module  # noqa: E402
from micam_core.tokens import Layout, to_map  # noqa: E402


def build(name: str):
    if name == "bundled":
        return load_model("bundled:efficientnet_lite0", device="cpu")
    torch.manual_seed(0)
    return from_module(timm.create_model(name, pretrained=False), spec=f"{name} (random weights)", device="cpu")


def median_time(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sklearn_loop(gray: np.ndarray, acts: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    up = F.interpolate(torch.as_tensor(acts)[None], size=gray.shape, mode="nearest")[0].numpy()
    return np.array([mutual_info_score(gray.ravel(), up[k].ravel()) for k in range(acts.shape[0])])


def pytorch_grad_cam_fn(loaded, x):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    info = next(i for i in loaded.layers if i.name == loaded.default_layer)
    layout = Layout(info.layout, (), info.channels, info.height, info.width, info.prefix)
    reshape = None if info.layout == "NCHW" else (lambda t: to_map(t, layout))  # tokens / channels-last
    cam = GradCAM(model=loaded.model, target_layers=[get_module(loaded.model, loaded.default_layer)],
                  reshape_transform=reshape)
    return lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(0)])


def time_table(name: str, image: Path, repeats: int) -> list[tuple[str, float, str]]:
    loaded = build(name)
    crop = loaded.crop(__import__("micam_core").load_image(image))
    x = loaded.to_input([crop])
    gray = np.array(crop.convert("L"))
    cap = capture(loaded.model, loaded.default_layer, x, lambda lg: lg.argmax(1).tolist(),
                  want_logit_grad=False, want_prob_grad=False)
    acts = cap.activations[0].numpy()

    def forward():
        with torch.no_grad():
            loaded.model(x)

    def predict():  # what a plain classifier does with the same image: preprocess + forward + softmax
        with torch.no_grad():
            torch.softmax(loaded.model(loaded.to_input([loaded.crop(__import__("micam_core").load_image(image))])), 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        ref = sklearn_loop(gray, acts)
        t_sklearn = time.perf_counter() - start
    ours = mutual_information(gray, acts)
    assert np.allclose(ours, ref, rtol=1e-9, atol=0), "MI must equal the sklearn loop"
    t_mi = median_time(lambda: mutual_information(gray, acts), repeats)
    t_fwd = median_time(forward, repeats)
    rows = [("plain forward pass (tensor in, no grad)", t_fwd, "1.00x"),
            ("plain prediction (image in: preprocess + forward)", median_time(predict, repeats), None),
            (f"MI weights, sklearn loop ({acts.shape[0]} channels)", t_sklearn, None),
            ("MI weights, micam_core (exact, same values)", t_mi, f"{t_sklearn / t_mi:.0f}x faster than sklearn")]
    for label, methods in [("MI CAM end to end (image in)", ("micam",)),
                           ("Grad-CAM end to end (image in)", ("gradcam",)),
                           ("all three methods end to end (image in)", ("micam", "gradcam", "migradcam"))]:
        rows.append((label, median_time(lambda m=methods: explain(loaded, image, methods=m), repeats), None))
    rows.append(("pytorch-grad-cam GradCAM (tensor in; reshape_transform for tokens)",
                 median_time(pytorch_grad_cam_fn(loaded, x), repeats), None))
    return [(label, t, note or f"{t / t_fwd:.2f}x forward") for label, t, note in rows]


MEMORY_SNIPPET = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, {root!r})
sys.argv = ["x"]
from bench.speed import build
from micam_core import explain, load_image
import torch
loaded = build({name!r})
image = load_image({image!r})
x = loaded.to_input([loaded.crop(image)])
with torch.no_grad():
    loaded.model(x)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
for _ in range(5):
    if {mode!r} == "forward":
        with torch.no_grad():
            torch.softmax(loaded.model(loaded.to_input([loaded.crop(image)])), 1)
    else:
        explain(loaded, image)
status = open("/proc/self/status").read()
print(int(status.split("VmHWM:")[1].split()[0]))
"""


def peak_rss_mb(name: str, image: Path, mode: str) -> float:
    """Peak RSS (MB) while repeating ``mode`` after a warm-up, in a fresh process."""
    code = MEMORY_SNIPPET.format(root=str(ROOT), name=name, image=str(image), mode=mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def print_table(title: str, rows: list[tuple[str, float, str]]) -> None:
    print(f"\n### {title}\n")
    print("| operation | median time | ratio |")
    print("|---|---:|---:|")
    for label, seconds, note in rows:
        print(f"| {label} | {seconds * 1000:.1f} ms | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,bundled,vit_small_patch16_224")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, image {args.image.name}")
    for name in args.models.split(","):
        rows = time_table(name, args.image, args.repeats)
        forward_mb = peak_rss_mb(name, args.image, "forward")
        explain_mb = peak_rss_mb(name, args.image, "explain")
        print_table(f"{name} at 224 px", rows)
        print(f"\npeak RSS while repeating: prediction {forward_mb:.0f} MB, explain (all three) "
              f"{explain_mb:.0f} MB, difference {explain_mb - forward_mb:+.0f} MB")


if __name__ == "__main__":
    main()
