"""Speed and memory of micam_core against a plain forward pass and the reference implementations.

    python bench/speed.py [--repeats 15] [--scorecam-repeats 1] [--models resnet50,bundled,vit_small_patch16_224]
    [--image ...]

Prints one table per model (CPU, 224 px). Everything in a table is measured in the same run, so
compare ratios, not absolute times (shared machines are noisy). Peak memory is measured in fresh
subprocesses (ru_maxrss) that differ only in the operation they repeat.

What is compared (``--paired``, the form the targets are checked in): per method, ours *image in* (JPEG
decoding and resizing included), ours *crop in* (the decoded model-input crop: the shared pass and the
method's map), each peer *tensor in* (its whole call on the prepared tensor, its forward pass included),
and the *own work* of both on tensors already captured (ours: the record's map and its upsampling and
min-max; pytorch-grad-cam: its per-layer CAM and scaling; torchcam's CAM: its weights and map). The
last rows time sets of methods in one call against a plain forward pass: the single-pass methods *at the
layer* (``AT_LAYER``: one forward pass, and a backward pass that stops at the target layer: the set the
2.0x target is about) and every method the shared pass serves (adding FullGrad and Guided Grad-CAM,
whose backward runs to the input, RefineCAM, to the shallowest of its layers, and LeGrad on ViTs).
"""

from __future__ import annotations

import argparse
import gc
import itertools
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

from micam_core import METHOD_LABELS, METHODS, REGISTRY, explain, from_module, load_model, mutual_information  # noqa: E402
from micam_core.capture import capture  # noqa: E402
from micam_core.layers import get_module  # noqa: E402
from micam_core.maps import render_map  # noqa: E402
from micam_core.methods import capture_inputs, explain_crops  # noqa: E402
from micam_core.registry import AT_LAYER, SINGLE_PASS, compute_maps, display_mode  # noqa: E402

CLOCK = time.perf_counter  # --clock cpu: time.process_time (the process's CPU time, blind to other processes)
AT_LAYER_TARGET = 2.0  # all single-pass methods at the layer together, x a plain forward pass
OWN_PASS_TARGETS = {"shapleycam": 3.0, "fullgrad": 3.0}  # x a plain forward pass
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
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return statistics.median(times)


def sklearn_loop(gray: np.ndarray, acts: np.ndarray) -> np.ndarray:
    from sklearn.metrics import mutual_info_score

    up = F.interpolate(torch.as_tensor(acts)[None], size=gray.shape, mode="nearest")[0].numpy()
    return np.array([mutual_info_score(gray.ravel(), up[k].ravel()) for k in range(acts.shape[0])])


PGC_CLASSES = {"gradcam": "GradCAM", "gradcampp": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
               "layercam": "LayerCAM", "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
               "gradcamew": "GradCAMElementWise", "eigengradcam": "EigenGradCAM", "kpcacam": "KPCA_CAM", "fem": "FEM",
               "shapleycam": "ShapleyCAM", "finercam": "FinerCAM", "fullgrad": "FullGrad",
               "guidedgradcam": "GuidedBackpropReLUModel"}
TORCHCAM_CLASSES = {"gradcam": "GradCAM", "gradcampp": "GradCAMpp", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
                    "scorecam": "ScoreCAM", "finercam": "FinerCAM", "cam": "CAM"}


def pytorch_grad_cam_fn(loaded, x, method: str = "gradcam", layer: str | None = None):
    """pytorch-grad-cam's implementation of ``method`` (tensor in, same layer and target)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method == "guidedgradcam":
        return guided_gradcam_fn(loaded, x, layer)
    cls = getattr(pytorch_grad_cam, PGC_CLASSES[method])
    layers = [] if method == "fullgrad" else [get_module(loaded.model, layer or loaded.default_layer)]
    cam = cls(model=loaded.model, target_layers=layers,
              reshape_transform=token_reshape(loaded, layer or loaded.default_layer))
    if method == "scorecam":
        cam.batch_size = 32
    if method == "finercam":
        return lambda: cam(x, targets=None, target_idx=0)
    if method not in ("shapleycam", "fullgrad"):  # (FullGrad's own work reads the input's .grad of its call)
        targets = [ClassifierOutputTarget(0)]
        run = lambda: cam(input_tensor=x, targets=targets)  # noqa: E731
        # its own work after its pass: the per-layer CAM from the kept tensors, scaled and aggregated
        run.own = lambda: cam.aggregate_multi_layers(cam.compute_cam_per_layer(x, targets, False))
        return run
    if method == "shapleycam":
        def run():  # its kept gradients are views its release() cannot detach: drop them (else hooks stay)
            try:
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(0)])
            finally:
                cam.activations_and_grads.gradients, cam.activations_and_grads.activations = [], []
        return run
    return lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(0)])


def guided_gradcam_fn(loaded, x, layer: str | None = None):
    """pytorch-grad-cam's Guided Grad-CAM recipe: GradCAM times GuidedBackpropReLUModel (on a copy of the
    model, whose ReLUs it swaps)."""
    import copy

    from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = layer or loaded.default_layer
    cam = GradCAM(model=loaded.model, target_layers=[get_module(loaded.model, layer)],
                  reshape_transform=token_reshape(loaded, layer))
    guided = GuidedBackpropReLUModel(copy.deepcopy(loaded.model), device="cpu")

    def run():
        grey = cam(input_tensor=x, targets=[ClassifierOutputTarget(0)])[0]
        return (np.abs(guided(x, target_category=0)) * grey[..., None]).sum(-1)
    return run


def token_reshape(loaded, layer: str):
    """pytorch-grad-cam's ``reshape_transform`` for a token or channels-last layer (None for CNN maps)."""
    info = next((i for i in loaded.layers if i.name == layer), None)
    if info is None or info.layout == "NCHW":
        return None
    layout = Layout(info.layout, (), info.channels, info.height, info.width, info.prefix)
    return lambda t: to_map(t, layout)


def torchcam_fn(loaded, x, method: str):
    """torchcam 0.5's implementation of ``method`` (tensor in, same layer and target); ``run.cleanup()`` removes
    its hooks (left on, they would slow every later pass on the model)."""
    import torchcam.methods

    cls = getattr(torchcam.methods, TORCHCAM_CLASSES[method])
    kwargs = {"fc_layer": loaded.model.get_classifier()} if method == "cam" else {}
    extractor = cls(loaded.model, target_layer=loaded.default_layer, **kwargs)

    def run():
        if method == "finercam":
            return extractor(class_idx=0, scores=loaded.model(x))
        if method == "cam":
            with torch.no_grad():
                loaded.model(x)
            return extractor(0)
        if method == "scorecam":
            with torch.no_grad():
                return extractor(0, loaded.model(x))
        return extractor(0, loaded.model(x))
    run.cleanup = extractor.remove_hooks
    if method == "cam":
        run.own = lambda: extractor(0)  # its weights and map from the activations its hook kept
    return run


def method_rows(loaded, image: Path, x, t_fwd: float, repeats: int, scorecam_repeats: int,
                methods: tuple[str, ...] = METHODS):
    """Ours end to end (image in) per method, next to pytorch-grad-cam and torchcam on the same layer."""
    for method in methods:
        reason = REGISTRY[method].why_not(loaded)
        if reason:
            yield (f"{METHOD_LABELS[method]}: refused here", float("nan"), reason.split(";")[0][:60])
            continue
        n = scorecam_repeats if method == "scorecam" else repeats
        warm = 1 if method == "scorecam" else 3
        ours = median_time(lambda m=method: explain(loaded, image, methods=(m,), target=0), n, warm)
        yield (f"{METHOD_LABELS[method]}: micam_core end to end (image in)", ours, None)
        for peer, builder, names in (("pytorch-grad-cam", pytorch_grad_cam_fn, PGC_CLASSES),
                                     ("torchcam 0.5", torchcam_fn, TORCHCAM_CLASSES)):
            if method in names and not (peer.startswith("torchcam") and token_reshape(loaded, loaded.default_layer)):
                try:
                    fn = builder(loaded, x, method)
                    t = median_time(fn, n, warm)
                    getattr(fn, "cleanup", lambda: None)()
                    del fn  # pytorch-grad-cam releases its hooks when its object goes
                except (RuntimeError, ValueError) as error:  # e.g. pytorch-grad-cam's ShapleyCAM on tokens
                    yield (f"{METHOD_LABELS[method]}: {peer} (tensor in)", float("nan"),
                           f"fails: {str(error).splitlines()[0][:60]}")
                    continue
                yield (f"{METHOD_LABELS[method]}: {peer} (tensor in)", t,
                       f"{t / t_fwd:.2f}x forward; ours {t / ours:.2f}x faster")
    runnable = tuple(m for m in SINGLE_PASS if REGISTRY[m].why_not(loaded) is None)
    together = median_time(lambda: explain(loaded, image, methods=runnable), repeats)
    yield (f"all {len(runnable)} single-pass methods together, end to end", together, None)


def ours_own_work(loaded, crop, method: str, upsample: bool = True):
    """Ours on an already captured pass: the record's map (the MI recomputed), then, with ``upsample``, its
    upsampling and min-max (as pytorch-grad-cam's own work ends; torchcam's ends at feature resolution)."""
    REGISTRY[method].why_not(loaded)  # as explain() asks first (CAM then knows its layer fits)
    _, inputs = capture_inputs(loaded, [crop], lambda lg: [0], loaded.default_layer, (method,))
    size = crop.size[::-1]

    def run():
        inputs.__dict__.pop("mi", None)
        lowres = compute_maps((method,), inputs)[method][0][0].cpu().numpy()
        return render_map(lowres, size, display_mode(method, "paper")) if upsample else lowres
    return run


def paired_rows(loaded, image: Path, x, methods: tuple[str, ...], repeats: int):
    """For each method, ours (image in, crop in), each peer (tensor in) and the plain forward, called in turn in
    every round, then both sides' own work: a busy machine slows all of them alike. Rows give medians and the
    median of the per-round ratios."""
    def forward():
        with torch.no_grad():
            loaded.model(x)

    crop = loaded.crop(__import__("micam_core").load_image(image))
    for method in methods:
        if REGISTRY[method].why_not(loaded):
            continue
        fns = {"ours": lambda m=method: explain(loaded, image, methods=(m,), target=0),
               "crop": lambda m=method: explain_crops(loaded, [crop], lambda lg: [0], loaded.default_layer, (m,)),
               "forward": forward}
        for peer, builder, names in (("pytorch-grad-cam", pytorch_grad_cam_fn, PGC_CLASSES),
                                     ("torchcam 0.5", torchcam_fn, TORCHCAM_CLASSES)):
            if method in names and not (peer.startswith("torchcam") and token_reshape(loaded, loaded.default_layer)):
                fns[peer] = builder(loaded, x, method)
        times, failed = interleaved(fns, repeats)
        owns = {k: fn.own for k, fn in fns.items() if hasattr(fn, "own") and k not in failed}
        own_times = {}
        for peer, own in owns.items():  # one peer at a time: ours ends where that peer's own work ends
            mine = ours_own_work(loaded, crop, method, upsample=peer == "pytorch-grad-cam")
            own_times[peer] = interleaved({"peer": own, "ours": mine}, repeats)[0]
        for fn in fns.values():
            getattr(fn, "cleanup", lambda: None)()
        del fns, owns
        gc.collect()  # a peer that raised may hold its hooks until collected
        yield from method_result(method, times, failed, own_times)
    yield from together_rows(loaded, image, forward, repeats)


def interleaved(fns: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each function once per round, in turn, for ``repeats`` rounds after one warm-up round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    failed: dict[str, str] = {}
    for round_ in range(repeats + 1):
        for key, fn in fns.items():
            if key in failed:
                continue
            start = CLOCK()
            try:
                fn()
            except (RuntimeError, ValueError) as error:  # e.g. pytorch-grad-cam's ShapleyCAM on tokens
                failed[key] = str(error).splitlines()[0][:60]
                continue
            if round_:  # the first round warms up
                times[key].append(CLOCK() - start)
    return times, failed


def ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios ``a / b``."""
    return statistics.median([x / y for x, y in zip(a, b)])


def method_result(method: str, times: dict, failed: dict, own: dict):
    label = METHOD_LABELS[method]
    if "ours" in failed:
        yield f"{label}: micam_core", float("nan"), f"fails: {failed['ours']}"
        return
    ours, crop, fwd = times.pop("ours"), times.pop("crop"), times.pop("forward")
    target = OWN_PASS_TARGETS.get(method)
    verdict = f" (target <= {target:.1f}x: {'met' if ratio(ours, fwd) <= target else 'MISSED'})" if target else ""
    yield f"{label}: ours, image in", statistics.median(ours), f"{ratio(ours, fwd):.2f}x forward{verdict}"
    yield f"{label}: ours, crop in", statistics.median(crop), f"{ratio(crop, fwd):.2f}x forward"
    for peer, reason in failed.items():
        yield f"{label}: {peer} (tensor in)", float("nan"), f"fails: {reason}"
        times.pop(peer)
    for peer, ts in times.items():
        yield (f"{label}: {peer} (tensor in)", statistics.median(ts),
               f"{ratio(ts, fwd):.2f}x forward; ours {ratio(ts, crop):.2f}x faster crop in, "
               f"{ratio(ts, ours):.2f}x image in")
    for peer, ts in own.items():
        what = "map, upsampling, min-max" if peer == "pytorch-grad-cam" else "map at feature resolution"
        mine = statistics.median(ts["ours"])
        whole = statistics.median(times[peer]) / mine if peer in times else float("nan")
        yield (f"{label}: own work on captured tensors ({what}): {peer}", statistics.median(ts["peer"]),
               f"ours {mine * 1000:.2f} ms, {ratio(ts['peer'], ts['ours']):.1f}x faster; added to a shared pass, "
               f"ours costs {whole:.0f}x less than {peer}'s whole call")


def together_rows(loaded, image: Path, forward, repeats: int):
    """Sets of methods in one call, interleaved with the plain forward pass."""
    at_layer = tuple(m for m in AT_LAYER if REGISTRY[m].why_not(loaded) is None)
    shared = tuple(m for m in SINGLE_PASS if REGISTRY[m].why_not(loaded) is None)
    below = [m for m in shared if m not in at_layer]
    sets = {f"all {len(at_layer)} single-pass methods at the layer together (one forward, backward to the layer "
            f"only: {', '.join(at_layer)})": at_layer,
            f"all {len(shared)} methods of the shared pass together (adds {', '.join(below)}: "
            "backward below the layer)": shared}
    fns = {name: (lambda chosen=chosen: explain(loaded, image, methods=chosen, target=0))
           for name, chosen in sets.items()}
    times, _ = interleaved({**fns, "forward": forward}, repeats)
    fwd = times.pop("forward")
    for i, (name, ts) in enumerate(times.items()):
        verdict = (f" (target <= {AT_LAYER_TARGET:.1f}x: {'met' if ratio(ts, fwd) <= AT_LAYER_TARGET else 'MISSED'})"
                   if i == 0 else "")
        yield f"{name}, image in", statistics.median(ts), f"{ratio(ts, fwd):.2f}x forward{verdict}"


def time_table(name: str, image: Path, repeats: int, scorecam_repeats: int = 1, methods: tuple[str, ...] = METHODS,
               mi_loop: bool = True, paired: bool = False):
    """Rows ``(label, seconds, ratio note)``, yielded as they are measured (``mi_loop``: time sklearn's loop)."""
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

    t_fwd = median_time(forward, repeats)
    rows = [("plain forward pass (tensor in, no grad)", t_fwd, "1.00x"),
            ("plain prediction (image in: preprocess + forward)", median_time(predict, repeats), None)]
    if mi_loop:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = CLOCK()
            ref = sklearn_loop(gray, acts)
            t_sklearn = CLOCK() - start
        assert np.allclose(mutual_information(gray, acts), ref, rtol=1e-9, atol=0), "MI must equal the sklearn loop"
        t_mi = median_time(lambda: mutual_information(gray, acts), repeats)
        rows += [(f"MI weights, sklearn loop ({acts.shape[0]} channels)", t_sklearn, None),
                 ("MI weights, micam_core (exact, same values)", t_mi, f"{t_sklearn / t_mi:.0f}x faster than sklearn")]
    per_method = (paired_rows(loaded, image, x, methods, repeats) if paired else
                  method_rows(loaded, image, x, t_fwd, repeats, scorecam_repeats, methods))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the peers warn about hooks and tqdm
        for label, t, note in itertools.chain(rows, per_method):
            yield label, t, note or f"{t / t_fwd:.2f}x forward"


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


def print_table(title: str, rows) -> None:
    """Print the rows as they come (a long run leaves a partial table, not nothing)."""
    print(f"\n### {title}\n")
    print("| operation | median time | ratio |")
    print("|---|---:|---:|", flush=True)
    for label, seconds, note in rows:
        print(f"| {label} | {seconds * 1000:.1f} ms | {note} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,bundled,vit_small_patch16_224")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "chelsea_cat.jpg")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--scorecam-repeats", type=int, default=1, help="Score-CAM runs K forward passes per call")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods to time (default: all)")
    parser.add_argument("--no-mi-loop", action="store_true", help="skip timing sklearn's MI loop (minutes)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--paired", action="store_true",
                        help="time ours, the peers and the forward pass in turn, round by round (busy machines)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: the process's CPU time (with OMP_NUM_THREADS=1, what one unshared core would take; "
                             "other processes' load does not count)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, image {args.image.name}, "
          f"{args.clock} clock")
    for name in args.models.split(","):
        methods = tuple(m for m in args.methods.split(",") if m)
        print_table(f"{name} at 224 px", time_table(name, args.image, args.repeats, args.scorecam_repeats, methods,
                                                    mi_loop=not args.no_mi_loop, paired=args.paired))
        if args.no_memory:
            continue
        forward_mb = peak_rss_mb(name, args.image, "forward")
        explain_mb = peak_rss_mb(name, args.image, "explain")
        print(f"\npeak RSS while repeating: prediction {forward_mb:.0f} MB, explain (the three default methods) "
              f"{explain_mb:.0f} MB, difference {explain_mb - forward_mb:+.0f} MB")


if __name__ == "__main__":
    main()
